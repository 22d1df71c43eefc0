"""Per-epoch cost of the extras, measured interleaved in one process (1 thread) so that CPU contention hits all variants alike:
a training step with and without the EMA update, and evaluation of 1,000 images with and without flip TTA.
Writes results/bench_cost.json."""
import time, json, statistics, torch
torch.set_num_threads(1)
from vit_nbdev.model import ViTConfig, ViTForClassification
from vit_nbdev.train import make_recipe, load_cifar10, save_json
from fast_recipe import ModelEMA, train_batches, tta_logits

xs, ys, _ = load_cifar10('/work/shared/data/cifar10', train=True, download=False)
torch.manual_seed(0)
model = ViTForClassification(ViTConfig())
opt, loss_fn, sched = make_recipe(model, 'modern', 1e-2, 1e-2, 10, 196)
ema = ModelEMA(model, 0.999)
batches = train_batches(xs, ys, 256, 0, 0, 'rrc')
xe = next(train_batches(xs, ys, 1000, 1, 0, 'none'))[0]
t = {'step': [], 'step_ema': [], 'ema_update': [], 'eval1k': [], 'eval1k_tta': []}
def step(use_ema):
    x, y = next(batches)
    t0 = time.perf_counter()
    loss = loss_fn(model(x)[0], y); opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    t1 = time.perf_counter()
    if use_ema: ema.update(model)
    return t1 - t0, time.perf_counter() - t0
for r in range(12):
    a, _ = step(False); t['step'].append(a)
    a, b = step(True); t['step_ema'].append(b); t['ema_update'].append(b - a)
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter(); model(xe); t['eval1k'].append(time.perf_counter() - t0)
        t0 = time.perf_counter(); tta_logits(model, xe); t['eval1k_tta'].append(time.perf_counter() - t0)
    model.train()
med = {k: statistics.median(v[2:]) for k, v in t.items()}
base = 196 * med['step'] + 10 * med['eval1k']               # one vit_train epoch: 50k train + 10k test
full = 196 * (med['step'] + med['ema_update']) + 10 * med['eval1k_tta']
res = {'median_s': med, 'epoch_s_baseline': base, 'epoch_s_ema_tta': full, 'ratio': full / base, 'raw': t}
save_json('results/bench_cost.json', res)
print(json.dumps({k: v for k, v in res.items() if k != 'raw'}, indent=1))
