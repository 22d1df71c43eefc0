"""Images per second of a training step and of evaluation, batch 256, AdamW, for three models of the seed's shape.

    python bench/throughput.py [--device cpu|cuda] [--batch-size 256] [--rounds 5] [--steps 10] [--threads N] [--out F]

- `per-head`: vit_nbdev with the seed's per-head attention (`use_faster_attention=False`), run as the seed runs it
  (every token of every block), the reference's structure and work;
- `timm`: `timm.models.vision_transformer.VisionTransformer` of the same shape (a bench-only extra: `pip install timm`);
- `vit_nbdev, all tokens`: the fused model (fused qkv + `scaled_dot_product_attention`), also computing every token of
  every block: the same work as timm, a like-for-like comparison of the two implementations;
- `vit_nbdev fast path`: the fused model as `model(x)` runs it, the last block computing only the [CLS] token the head
  reads (same logits; chapter 4, "Only what the head reads").

The machine is shared, so the models are measured in interleaved rounds and the best round of each is reported
(the least disturbed one); the median is printed next to it. Each rate is given per wall-clock second and per CPU
second of this process: on a shared machine the wall clock also counts the time other processes held the cores.
It prints numbers, asserts nothing, and saves every number with the machine, the versions, the command and the load
average before and after in `bench/results/throughput.json`.
"""
import argparse
import statistics
import time

import torch
from torch import nn, optim

from vit_nbdev.model import ViTConfig, ViTForClassification

import record  # bench/ is on the path when this script runs


class AllTokens(nn.Module):
    "A vit_nbdev model run as the seed runs it: every token of every block (`forward_features`), then the head."
    def __init__(self, model: ViTForClassification):
        super().__init__()
        self.model = model
    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x)[0]), None


ROUNDS = 5   # the full run
# what is measured, per model and round: images per wall-clock second (what a user waits for) and per CPU second of
# this process (the work done, which other processes on a shared machine disturb far less)
KINDS = ('train_img_s', 'eval_img_s', 'train_img_per_cpu_s', 'eval_img_per_cpu_s')


def build_models(device):
    "The models to compare, by name, each freshly initialised on `device`."
    torch.manual_seed(0)
    models = {'per-head (seed structure)': AllTokens(ViTForClassification(ViTConfig(use_faster_attention=False)))}
    try:
        from timm.models.vision_transformer import VisionTransformer
        models['timm VisionTransformer'] = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=4,
                                                             num_heads=4, mlp_ratio=4, num_classes=10)
    except ImportError:
        print('timm is not installed (pip install timm): skipping it')
    models['vit_nbdev, all tokens (as timm)'] = AllTokens(ViTForClassification(ViTConfig()))
    models['vit_nbdev fast path'] = ViTForClassification(ViTConfig())
    return {k: m.to(device) for k, m in models.items()}


def logits_of(out):
    "vit_nbdev returns (logits, attentions); timm returns logits."
    return out[0] if isinstance(out, tuple) else out


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_train(model, x, y, steps, device):
    "Wall-clock and CPU seconds (a `record.Clock`) of `steps` AdamW training steps on the batch (x, y)."
    model.train()
    opt, loss_func = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2), nn.CrossEntropyLoss()
    def step():
        loss = loss_func(logits_of(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step(); step(); sync(device)                     # warm-up: allocations, optimizer state
    with record.Clock() as c:
        for _ in range(steps): step()
        sync(device)
    return c


@torch.inference_mode()
def time_eval(model, x, steps, device):
    "Wall-clock and CPU seconds (a `record.Clock`) of `steps` forward passes in inference mode."
    model.eval()
    logits_of(model(x)); sync(device)
    with record.Clock() as c:
        for _ in range(steps): logits_of(model(x)).argmax(1)
        sync(device)
    return c


def summary(rates: list) -> dict:
    "Best, median and every round of a list of images per second, to 0.1 image/s."
    return {'best': round(max(rates), 1), 'median': round(statistics.median(rates), 1),
            'rounds': [round(r, 1) for r in rates]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--rounds', type=int, default=ROUNDS,
                   help=f'interleaved rounds (default {ROUNDS}; fewer: a shorter run, marked so in the results)')
    p.add_argument('--steps', type=int, default=10, help='training steps per round (eval does 3x as many)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default: PyTorch\'s, one per core)')
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/throughput.json)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rec = record.header('throughput', device, record.load_average())
    t0 = time.perf_counter()
    models = build_models(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).to(device)   # (B, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch_size,), generator=g).to(device)  # (B,)
    rates = {kind: {k: [] for k in models} for kind in KINDS}
    for _ in range(a.rounds):   # interleaved, so a burst of load elsewhere hits every model alike
        for k, m in models.items():
            n_train, n_eval = a.batch_size * a.steps, a.batch_size * 3 * a.steps
            tc, ec = time_train(m, x, y, a.steps, device), time_eval(m, x, 3 * a.steps, device)
            for kind, v in zip(KINDS, (n_train / tc.wall, n_eval / ec.wall, n_train / tc.cpu, n_eval / ec.cpu)):
                rates[kind][k].append(v)
    load = rec['load_average']['before'][0], record.load_average()[0]
    print(f'load average (1 min) before: {load[0]:.2f}, after: {load[1]:.2f}')
    print(f"device: {rec['machine'].get('gpu') or rec['machine']['cpu']}, {rec['machine']['cores']} cores, "
          f"{torch.get_num_threads()} torch threads; torch {torch.__version__}; batch {a.batch_size}; "
          f"best (median) of {a.rounds} rounds")
    print("| model | params | train step img/s | eval img/s | train step img/CPU-s | eval img/CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for k, m in models.items():
        n = sum(p.numel() for p in m.parameters())
        print(f"| {k} | {n:,} | " + " | ".join(f"{max(rates[kind][k]):,.0f} ({statistics.median(rates[kind][k]):,.0f})"
                                             for kind in KINDS) + " |")
        rows.append({'model': k, 'params': n, **{kind: summary(rates[kind][k]) for kind in KINDS}})
    fast, names, ratios = 'vit_nbdev fast path', list(models), []
    for other in names[:-1]:
        r = {'model': fast, 'over': other,
             **{kind: round(max(rates[kind][fast]) / max(rates[kind][other]), 3) for kind in KINDS}}
        print(f"vit_nbdev fast path / {other}: train {r['train_img_s']:.2f}x, eval {r['eval_img_s']:.2f}x "
              f"(per CPU second: {r['train_img_per_cpu_s']:.2f}x, {r['eval_img_per_cpu_s']:.2f}x)")
        ratios.append(r)
    rec.update(threads=torch.get_num_threads(), seconds=round(time.perf_counter() - t0, 1),
               settings={'batch_size': a.batch_size, 'rounds': a.rounds, 'steps': a.steps, 'eval_steps': 3 * a.steps,
                         'shortened': a.rounds < ROUNDS, 'statistic': 'best and median over the rounds'},
               models=rows, ratios_of_best=ratios)
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
