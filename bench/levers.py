"""Issue 17's levers on the held-out split: the fast recipe plus one lever at a time, 10 epochs, seed 0, one thread.

    VIT_DATA_DIR=/path/to/cifar10 python bench/levers.py run NAME [--patch-drop P] [--sizes 16x8,24x4] [--mimetic]
                                                         [--ema DECAY] [--alt-flip] [--recipe modern] [--epochs E]
                                                         [--batch B] [--lr LR] [--warmup W] [--ls S] [--eval-every K]
    python bench/levers.py tta NAME [NAME ...]   # plain, flips, flips + shifts: saved runs or committed experiments
    python bench/levers.py cost                  # one training step of each token count, interleaved: cost per epoch

Trains on the first 45,000 training images and evaluates on the last 5,000 (`vit_train --holdout 5000`): the test set
is not read. Each lever is a patch on chapter 5's `Trainer` and chapter 4a's `TensorLoader`, written here so that a
lever can be measured before the package has it:
- `--patch-drop P`: after the position embeddings, each training image keeps a random (1 - P) of its 64 patch tokens
  (PatchDropout); evaluation sees all of them;
- `--sizes 16x8,24x4`: the first 8 epochs' crops go straight to 16 × 16, the next 4 to 24 × 24, the rest to 32 × 32;
  the position embeddings are resampled (chapter 1's `resample_pos_embed`) to the grid of the batch;
- `--mimetic`: every attention layer starts with W_q W_kᵀ ≈ 0.7 Z + 0.7 I per head and W_v W_o ≈ 0.4 Z − 0.4 I
  (Trockman & Kolter 2023, Z random with variance 1/C), the rest of the model as the seed initialises it;
- `--ema D`: an exponential moving average of the weights (decay D per step), which evaluation uses;
- `--alt-flip`: each image is mirrored in every other epoch (a random half in the first) instead of at random;
- the schedule's settings: `--batch`, `--lr` (peak), `--warmup`, `--ls` (label smoothing), `--recipe`.

Each run's record (settings, validation accuracy after every epoch, final accuracy with and without flips) goes to
`bench/results/levers.json` under its name, with the machine, versions and commit; its weights to
`bench/results/levers/NAME.pt` (not committed). The runs' seconds are wall-clock on a shared machine: the cost per
epoch comes from `cost`, which times one training step (batch 256, one thread) of each token count back to back.
"""
import argparse, json, math, sys, time
from pathlib import Path
import torch, torch.nn.functional as F
import vit_nbdev.data as D
from vit_nbdev.data import prepare_data, epoch_seed, augment_params, crop_resize_flip, normalize
from vit_nbdev.model import ViTForClassification, ViTConfig
from vit_nbdev.recipes import TrainConfig, make_recipe
from vit_nbdev.training import Trainer, predictions
from vit_nbdev.experiments import load_experiment
from vit_nbdev.embeddings import resample_pos_embed
import vit_nbdev.faster  # noqa: F401  registers --recipe fast
import record

OUT = record.RESULTS / 'levers.json'


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('name'); p.add_argument('--recipe', default='fast')
    p.add_argument('--epochs', type=int, default=10); p.add_argument('--batch', type=int, default=256)
    p.add_argument('--lr', type=float, default=1e-2); p.add_argument('--wd', type=float, default=1e-2)
    p.add_argument('--warmup', type=float, default=0.05); p.add_argument('--ls', type=float, default=0.1)
    p.add_argument('--holdout', type=int, default=5000); p.add_argument('--threads', type=int, default=1)
    p.add_argument('--patch-drop', type=float, default=0.0)
    p.add_argument('--sizes', default='', help='e.g. 16x4,24x3: 4 epochs at 16 px, 3 at 24, the rest at 32')
    p.add_argument('--mimetic', action='store_true'); p.add_argument('--ema', type=float, default=0.0)
    p.add_argument('--alt-flip', action='store_true'); p.add_argument('--eval-every', type=int, default=1)
    p.add_argument('--train-n', type=int, default=None, help='train on a subset (a quick check of the harness)')
    return p.parse_args(argv)


def save(name: str, entry: dict):
    "Store `entry` under `name` in levers.json, keeping the other runs."
    rec = json.loads(OUT.read_text()) if OUT.exists() else {'benchmark': 'levers', 'runs': {}}
    rec['runs'][name] = {**rec['runs'].get(name, {}), **entry}
    OUT.write_text(json.dumps(rec, indent=1) + '\n')


def run(a):
    torch.set_num_threads(a.threads)
    sched = []
    for part in filter(None, a.sizes.split(',')):
        s, n = part.split('x'); sched += [int(s)] * int(n)
    def size_of(epoch): return sched[epoch - 1] if epoch - 1 < len(sched) else 32

    def _iter(self):   # chapter 4a's TensorLoader.__iter__, with the epoch's crop size and alternating flips
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n, S = len(self.images), self.images.shape[-1]
        out = size_of(epoch) if self.augment else S
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if a.alt_flip and self.augment and not hasattr(self, 'first_flip'):
            self.first_flip = torch.rand(n, generator=torch.Generator().manual_seed(12345)) < 0.5
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            params = augment_params(len(idx), S, g) if self.augment else None
            if params is not None and a.alt_flip:
                params = (*params[:4], self.first_flip[idx] ^ bool(epoch % 2))
            x, y = self.images[idx], self.labels[idx]
            if self.augment: x = crop_resize_flip(x, *params, out_size=out)
            yield normalize(x, self.mean, self.std), y
    D.TensorLoader.__iter__ = _iter

    cfg = TrainConfig(exp_name=a.name, recipe=a.recipe, epochs=a.epochs, batch_size=a.batch, lr=a.lr,
                      weight_decay=a.wd, warmup=a.warmup, label_smoothing=a.ls, holdout=a.holdout, threads=a.threads,
                      out_dir=str(record.RESULTS / 'levers'), train_sample_size=a.train_n)
    trainloader, testloader = prepare_data(cfg.batch_size, seed=0, holdout=cfg.holdout, train_sample_size=a.train_n)
    torch.manual_seed(0)
    model = ViTForClassification(ViTConfig())

    emb = model.embedding
    def emb_forward(x):   # chapter 1's Embeddings.forward for any grid, and PatchDropout while training
        t = emb.patch_embeddings.projection(x).flatten(2).transpose(1, 2)   # (B, N, C)
        N = t.shape[1]
        pos = emb.position_embeddings
        if N + 1 != pos.shape[1]: pos = resample_pos_embed(pos, math.isqrt(N))
        t = t + pos[:, 1:]
        if emb.training and a.patch_drop > 0:
            keep = max(1, round(N * (1 - a.patch_drop)))
            idx = torch.rand(t.shape[0], N).argsort(1)[:, :keep]              # (B, keep)
            t = t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
        cls = (emb.cls_token + pos[:, :1]).expand(t.shape[0], -1, -1)
        return emb.dropout(torch.cat([cls, t], 1))
    emb.forward = emb_forward

    @torch.no_grad()
    def mimetic_(attn, a1=0.7, b1=0.7, a2=0.4, b2=0.4):
        C = attn.qkv.in_features; H, d = attn.num_attention_heads, attn.attention_head_size
        W = attn.qkv.weight                                                 # (3C, C): q, k, v rows
        for h in range(H):
            M = a1 * torch.randn(C, C) / math.sqrt(C) + b1 * torch.eye(C)
            U, S, Vh = torch.linalg.svd(M)
            A, B = U[:, :d] * S[:d].sqrt(), Vh[:d].T * S[:d].sqrt()         # (C, d): A Bᵀ ≈ M
            W[h * d:(h + 1) * d] = A.T; W[C + h * d:C + (h + 1) * d] = B.T
        M = a2 * torch.randn(C, C) / math.sqrt(C) - b2 * torch.eye(C)
        U, S, Vh = torch.linalg.svd(M)
        W[2 * C:] = (U * S.sqrt()).T                                        # Wv
        attn.output_projection.weight.copy_(Vh.T * S.sqrt())               # Wo: Wvᵀ Woᵀ ≈ M
    if a.mimetic:
        for blk in model.encoder.blocks: mimetic_(blk.attention)

    recipe = make_recipe(model, cfg, trainloader)
    trainer = Trainer(model, recipe.optimizer, recipe.loss_func, cfg.exp_name, 'cpu', scheduler=recipe.scheduler,
                      predict=recipe.predict, out_dir=cfg.out_dir, extra_config={'settings': cfg.settings()},
                      progress=False)
    if a.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(a.ema), use_buffers=True)
        sch = trainer.scheduler
        class Step:   # the scheduler's step, then the EMA's
            def step(self): sch.step(); ema.update_parameters(model)
            def state_dict(self): return sch.state_dict()
            def load_state_dict(self, s): sch.load_state_dict(s)
        trainer.scheduler = Step()
        trainer.forward = ema.module
    _evaluate = Trainer.evaluate
    def evaluate(self, loader):
        if self.epoch % a.eval_every and self.epoch != self.epochs: return float('nan'), float('nan')
        if a.ema: ema.module.eval()
        return _evaluate(self, loader)
    trainer.evaluate = evaluate.__get__(trainer)

    t0 = time.perf_counter()
    trainer.train(trainloader, testloader, cfg.epochs, overwrite=True)
    total = time.perf_counter() - t0
    net = ema.module if a.ema else model
    net.eval(); res = {}
    for pred in ('plain', 'flip'):
        c = n = 0
        for logits, y in predictions(net, testloader, pred):
            c += (logits.argmax(1) == y).sum().item(); n += len(y)
        res[pred] = c / n
    torch.save(net.state_dict(), record.RESULTS / 'levers' / f'{a.name}.pt')
    return {'levers': {k: v for k, v in vars(a).items() if k != 'name'}, 'accuracies': trainer.metrics['accuracies'],
            'seconds': trainer.metrics['seconds'], 'total_seconds': total, 'final': res}


def shift(x, dy, dx):
    "Images moved by (dy, dx) pixels, the border mirrored in."
    p = F.pad(x, (1, 1, 1, 1), mode='reflect')
    return p[..., 1 + dy:1 + dy + x.shape[-2], 1 + dx:1 + dx + x.shape[-1]]


def tta(names, threads=1):
    "Validation accuracy of saved runs with four test-time augmentations, and the seconds each took."
    torch.set_num_threads(threads)
    _, test = prepare_data(500, holdout=5000)
    out = {}
    for name in names:
        weights = record.RESULTS / 'levers' / f'{name}.pt'
        if weights.exists():
            model = ViTForClassification(ViTConfig()); model.load_state_dict(torch.load(weights))
        else: model = load_experiment(name, device='cpu')[1]                    # a committed experiment
        model.eval(); out[name] = {}
        for kind in ('plain', 'flip', 'flip+shift'):
            t0, c, n = time.perf_counter(), 0, 0
            with torch.inference_mode():
                for x, y in test:
                    v = [x] if kind == 'plain' else [x, x.flip(-1)]
                    w = [1] * len(v)
                    if kind == 'flip+shift': v, w = v + [shift(u, d, d) for u in v for d in (1, -1)], [2, 2, 1, 1, 1, 1]
                    logits = model(torch.cat(v))[0].view(len(v), len(x), -1)
                    logits = (logits * torch.tensor(w, dtype=torch.float).view(-1, 1, 1)).sum(0)
                    c += (logits.argmax(1) == y).sum().item(); n += len(y)
            out[name][kind] = {'accuracy': c / n, 'seconds': round(time.perf_counter() - t0, 2)}
            print(name, kind, f"{100 * c / n:.2f} %", f"{time.perf_counter() - t0:.1f} s", flush=True)
        save(name, {'tta': out[name]})
    return out


def cost(reps=10, threads=1):
    "Milliseconds of one training step (batch 256) at each token count, interleaved, and each as a fraction of 32 px."
    torch.set_num_threads(threads); torch.manual_seed(0)
    m = ViTForClassification(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    emb, drop = m.embedding, {'p': 0.0}
    def emb_forward(x):
        t = emb.patch_embeddings.projection(x).flatten(2).transpose(1, 2); N = t.shape[1]
        pos = emb.position_embeddings
        if N + 1 != pos.shape[1]: pos = resample_pos_embed(pos, math.isqrt(N))
        t = t + pos[:, 1:]
        if drop['p']:
            keep = max(1, round(N * (1 - drop['p']))); idx = torch.rand(t.shape[0], N).argsort(1)[:, :keep]
            t = t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
        return torch.cat([(emb.cls_token + pos[:, :1]).expand(t.shape[0], -1, -1), t], 1)
    emb.forward = emb_forward
    y = torch.randint(0, 10, (256,))
    def step(size, p):
        drop['p'] = p; x = torch.randn(256, 3, size, size)
        loss = F.cross_entropy(m(x)[0], y); opt.zero_grad(); loss.backward(); opt.step()
    confs = {'32 px': (32, 0), '32 px, drop 25 %': (32, .25), '32 px, drop 50 %': (32, .5), '24 px': (24, 0),
             '16 px': (16, 0), '24 px, drop 50 %': (24, .5), '16 px, drop 50 %': (16, .5)}
    for c in confs.values(): step(*c)
    t = {k: [] for k in confs}
    load = record.load_average()
    for _ in range(reps):
        for k, c in confs.items():
            t0 = time.perf_counter(); step(*c); t[k].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in t.items()}
    tokens = {k: 1 + round((s // 4) ** 2 * (1 - p)) for k, (s, p) in confs.items()}   # [CLS] + the patches kept
    res = {k: {'tokens': tokens[k], 'step_ms': round(1000 * v, 1), 'relative': round(v / med['32 px'], 3)}
           for k, v in med.items()}
    for k, v in res.items(): print(f"{k:18} {v['step_ms']:7.1f} ms  {v['relative']:.2f}x")
    return res, load


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    rec = json.loads(OUT.read_text()) if OUT.exists() else {'benchmark': 'levers', 'runs': {}}
    head = record.header('levers', torch.device('cpu'), record.load_average())
    if cmd == 'run':
        a = parse(argv); (record.RESULTS / 'levers').mkdir(exist_ok=True)
        entry = run(a)
        save(a.name, {**entry, 'command': 'python bench/levers.py run ' + ' '.join(argv),
                      'git_commit': head['git_commit'], 'load_average': head['load_average']})
        print('FINAL', a.name, entry['final'])
    elif cmd == 'tta': tta(argv)
    elif cmd == 'cost':
        res, load = cost()
        rec = json.loads(OUT.read_text()) if OUT.exists() else {'benchmark': 'levers', 'runs': {}}
        rec['cost'] = {'results': res, 'threads': 1, 'batch_size': 256, 'load_average': load,
                       'machine': head['machine'], 'git_commit': head['git_commit']}
        OUT.write_text(json.dumps(rec, indent=1) + '\n')
    else: raise SystemExit(f"unknown command {cmd!r}: run, tta or cost")
    rec = json.loads(OUT.read_text())
    rec.update({k: head[k] for k in ('machine', 'versions')})
    OUT.write_text(json.dumps(rec, indent=1) + '\n')


if __name__ == '__main__':
    main()
