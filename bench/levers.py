"""Training levers on the held-out split: the fast recipe plus one lever at a time, 10 epochs, seed 0, one thread.

    VIT_DATA_DIR=/path/to/cifar10 python bench/levers.py run NAME [--patch-drop P] [--sizes 16x8,24x4] [--mimetic]
                                                         [--ema DECAY] [--alt-flip] [--recipe modern] [--epochs E]
                                                         [--batch B] [--lr LR] [--warmup W] [--ls S] [--eval-every K]
                                                         [--policy trivial] [--mix both] [--drop-path R]
                                                         [--distill bench/results/levers/teacher.pt]
    python bench/levers.py tta NAME [NAME ...]   # plain, flips, flips + shifts: saved runs or committed experiments
    python bench/levers.py cost                  # one training step of each token count, interleaved: cost per epoch
    python bench/levers.py cost-extra            # a 32 px step with each later lever's extra work, interleaved

Trains on the first 45,000 training images and evaluates on the last 5,000 (`vit_train --holdout 5000`): the test set
is not read. Every lever is a callback on chapter 5's `Trainer` events (the package's own where it has one: chapter
7's `PatchDropout` and `ProgressiveResizing`, chapter 5b's `EMA`; the others defined here), a loader that subclasses
chapter 4a's `TensorLoader`, or a change of the model's initial weights or a forward hook:
- `--patch-drop P`: after the position embeddings, each training image keeps a random (1 - P) of its 64 patch tokens
  (chapter 7's `PatchDropout`); evaluation sees all of them;
- `--sizes 16x8,24x4`: the first 8 epochs' crops go straight to 16 × 16, the next 4 to 24 × 24, the rest to 32 × 32
  (chapter 7's `ProgressiveResizing`: the position embeddings are resampled to the grid of the batch);
- `--mimetic`: every attention layer starts with W_q W_kᵀ ≈ 0.7 Z + 0.7 I per head and W_v W_o ≈ 0.4 Z − 0.4 I
  (Trockman & Kolter 2023, Z random with variance 1/C), the rest of the model as the seed initialises it;
- `--ema D`: an exponential moving average of the weights (decay D per step, warmed up; chapter 5b's `EMA`), which
  evaluation uses;
- `--alt-flip`: each image is mirrored in every other epoch (a random half in the first) instead of at random;
- the schedule's settings: `--batch`, `--lr` (peak), `--warmup`, `--ls` (label smoothing), `--recipe`;
- `--policy trivial|randaug`: TrivialAugmentWide or RandAugment(2, 9) (torchvision) on each uint8 training image,
  before the crop and flip;
- `--mix mixup|cutmix|both`: MixUp (alpha 0.8), CutMix (alpha 1) or a random one of the two on each normalised
  training batch, the labels mixed alike (soft targets for the label-smoothed cross-entropy);
- `--drop-path R`: stochastic depth, each block's two residual branches dropped per image with a rate rising from 0
  in the first block to R in the last;
- `--distill T`: DeiT's hard-label distillation without a distillation token: half the loss on the labels, half on
  the classes that the teacher `T` (`bench/teacher.py`, a CNN trained on the same 45,000 images) gives each
  augmented training image.

Each run's record (settings, validation accuracy after every epoch, final accuracy with and without flips) goes to
`bench/results/levers.json` under its name, with the machine, versions and commit; its weights to
`bench/results/levers/NAME.pt` (not committed). The runs' seconds are wall-clock on a shared machine: the cost per
epoch comes from `cost`, which times one training step (batch 256, one thread) of each token count back to back.
"""
import argparse
import functools
import json
import math
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from vit_nbdev.callbacks import EMA
from vit_nbdev.data import TensorLoader, augment_params, crop_resize_flip, epoch_seed, normalize, prepare_data
from vit_nbdev.experiments import load_experiment
from vit_nbdev.faster import PatchDropout, ProgressiveResizing, any_size, drop_patches  # registers fast
from vit_nbdev.model import ViTConfig, ViTForClassification
from vit_nbdev.recipes import TrainConfig, make_recipe
from vit_nbdev.training import Callback, Trainer, predictions

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
    p.add_argument('--policy', choices=['trivial', 'randaug'], help='TrivialAugmentWide or RandAugment(2, 9)')
    p.add_argument('--mix', choices=['mixup', 'cutmix', 'both'], help='MixUp (alpha 0.8), CutMix (alpha 1) or either')
    p.add_argument('--drop-path', type=float, default=0.0, help='stochastic depth: the last block drops with this rate')
    p.add_argument('--distill', default='', help='a teacher saved by bench/teacher.py: DeiT hard-label distillation')
    p.add_argument('--train-n', type=int, default=None, help='train on a subset (a quick check of the harness)')
    return p.parse_args(argv)


def save(name: str = None, entry: dict = None, **top):
    "The one writer of levers.json: `entry` merged into run `name`, `top` entries replaced; the machine refreshed."
    rec = json.loads(OUT.read_text()) if OUT.exists() else {'benchmark': 'levers', 'runs': {}}
    if name: rec['runs'][name] = {**rec['runs'].get(name, {}), **entry}
    head = record.header('levers', torch.device('cpu'), record.load_average())
    rec.update(top, machine=head['machine'], versions=head['versions'])
    OUT.write_text(json.dumps(rec, indent=1) + '\n')


def make_policy(name):
    "A per-image augmentation policy on uint8 images, or None."
    from torchvision.transforms import v2
    return {'trivial': v2.TrivialAugmentWide(), 'randaug': v2.RandAugment(2, 9), None: None}[name]


def make_mix(name):
    "MixUp, CutMix or a random choice of the two for a normalised batch and its labels, or None."
    from torchvision.transforms import v2
    mixes = {'mixup': [v2.MixUp(alpha=0.8, num_classes=10)], 'cutmix': [v2.CutMix(alpha=1.0, num_classes=10)]}
    mixes['both'] = mixes['mixup'] + mixes['cutmix']
    return v2.RandomChoice(mixes[name]) if name else None


def drop_path_(model, rate: float):
    "Stochastic depth in every block, its rate rising linearly from 0 in the first to `rate` in the last (timm's rule)."
    from torchvision.ops import stochastic_depth
    L = len(model.encoder.blocks)
    for i, blk in enumerate(model.encoder.blocks):   # each residual branch's output, dropped per image: x + drop(h)
        r = rate * i / (L - 1)
        blk.attention.register_forward_hook(lambda m, args, out, r=r: (stochastic_depth(out[0], r, 'row', m.training),
                                                                       out[1]))
        blk.mlp.register_forward_hook(lambda m, args, out, r=r: stochastic_depth(out, r, 'row', m.training))


class LeverLoader(TensorLoader):
    "Chapter 4a's loader with alternating flips and a per-image policy on the uint8 images, before the crop."
    def __init__(self, loader: TensorLoader, policy=None, alt_flip: bool = False):
        super().__init__(loader.images, loader.labels, loader.classes, loader.batch_size, loader.shuffle,
                         loader.augment, loader.seed, loader.images.device, loader.mean, loader.std, loader.name)
        self.policy, self.alt_flip = policy, alt_flip
        self.first_flip = torch.rand(len(self.images), generator=torch.Generator().manual_seed(12345)) < 0.5

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n, S = len(self.images), self.images.shape[-1]
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            params = augment_params(len(idx), S, g) if self.augment else None
            if params is not None and self.alt_flip: params = (*params[:4], self.first_flip[idx] ^ bool(epoch % 2))
            x, y = self.images[idx], self.labels[idx]
            if self.augment and self.policy: x = torch.stack([self.policy(i) for i in x])
            if self.augment: x = crop_resize_flip(x, *params, out_size=self.out_size or S)
            yield normalize(x, self.mean, self.std), y


class Mix(Callback):
    "MixUp and/or CutMix on each training batch, the labels mixed alike (soft targets)."
    def __init__(self, mix): self.mix = mix
    def before_batch(self, t): t.xb, t.yb = self.mix(t.xb, t.yb)


class Distill(Callback):
    "DeiT's hard-label distillation without a distillation token: half the loss on the teacher's classes."
    def __init__(self, net, logits): self.net, self.logits = net, logits
    def after_loss(self, t):
        with torch.no_grad(): taught = self.logits(self.net, t.xb).argmax(1)
        t.loss = (t.loss + F.cross_entropy(t.preds.float(), taught)) / 2


def run(a):
    torch.set_num_threads(a.threads)
    sizes = [tuple(int(v) for v in part.split('x')) for part in filter(None, a.sizes.split(','))]   # [(16, 8), ...]

    policy, mix = make_policy(a.policy), make_mix(a.mix)

    cfg = TrainConfig(exp_name=a.name, recipe=a.recipe, epochs=a.epochs, batch_size=a.batch, lr=a.lr,
                      weight_decay=a.wd, warmup=a.warmup, label_smoothing=a.ls, holdout=a.holdout, threads=a.threads,
                      out_dir=str(record.RESULTS / 'levers'), train_sample_size=a.train_n)
    trainloader, testloader = prepare_data(cfg.batch_size, seed=0, holdout=cfg.holdout, train_sample_size=a.train_n)
    if policy or a.alt_flip: trainloader = LeverLoader(trainloader, policy, a.alt_flip)
    torch.manual_seed(0)
    model = ViTForClassification(ViTConfig())

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

    if a.drop_path: drop_path_(model, a.drop_path)

    recipe = make_recipe(model, cfg, trainloader)
    teacher = None
    if a.distill:
        import teacher as T
        teacher = Distill(T.load(a.distill).eval(), T.logits)
    ema = EMA(a.ema) if a.ema else None
    levers = [ProgressiveResizing(sizes) if sizes else None, PatchDropout(a.patch_drop) if a.patch_drop else None,
              Mix(mix) if mix else None, teacher, ema]
    trainer = Trainer(model, recipe.optimizer, recipe.loss_func, cfg.exp_name, 'cpu', scheduler=recipe.scheduler,
                      predictor=recipe.predictor, out_dir=cfg.out_dir, extra_config={'settings': asdict(cfg)},
                      progress=False, callbacks=[cb for cb in levers if cb is not None])
    t0 = time.perf_counter()
    trainer.train(trainloader, testloader, cfg.epochs, overwrite=True, eval_every=a.eval_every)
    total = time.perf_counter() - t0
    net = model                                                      # with --ema: the average (EMA's after_fit)
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


def time_interleaved(steps: dict, reps: int) -> tuple:
    "Median ms of each of `steps` (name -> function), interleaved, relative to the first; and the load before."
    load = record.load_average()
    med = {k: v[len(v) // 2] for k, v in record.time_interleaved(steps, reps).items()}
    first = next(iter(med.values()))
    res = {k: {'step_ms': round(1000 * v, 1), 'relative': round(v / first, 3)} for k, v in med.items()}
    for k, v in res.items(): print(f"{k:22} {v['step_ms']:7.1f} ms  {v['relative']:.2f}x")
    return res, load


def cost(reps=10, threads=1):
    "Milliseconds of one training step (batch 256) at each token count, interleaved, and each as a fraction of 32 px."
    torch.set_num_threads(threads); torch.manual_seed(0)
    m = ViTForClassification(); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    drop = {'p': 0.0}
    m.embedding.register_forward_hook(lambda emb, args, x: drop_patches(x, drop['p']) if drop['p'] else x)
    y = torch.randint(0, 10, (256,))
    def step(size, p):
        drop['p'] = p; x = torch.randn(256, 3, size, size)
        loss = F.cross_entropy(m(x)[0], y); opt.zero_grad(); loss.backward(); opt.step()
    confs = {'32 px': (32, 0), '32 px, drop 25 %': (32, .25), '32 px, drop 50 %': (32, .5), '24 px': (24, 0),
             '16 px': (16, 0), '24 px, drop 50 %': (24, .5), '16 px, drop 50 %': (16, .5)}
    with any_size(m):                                                          # chapter 7: any image size
        res, load = time_interleaved({k: functools.partial(step, *c) for k, c in confs.items()}, reps)
    for k, (side, p) in confs.items(): res[k]['tokens'] = 1 + round((side // 4) ** 2 * (1 - p))   # [CLS] + kept
    return res, load


def cost_extra(reps=10, threads=1):
    "Milliseconds of a 32 px training step (batch 256) with each of the later levers' extra work, interleaved."
    import teacher as T
    torch.set_num_threads(threads); torch.manual_seed(0)
    x8 = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8); y = torch.randint(0, 10, (256,))
    policies = {k: make_policy(k) for k in ('trivial', 'randaug')}
    mix, net = make_mix('both'), T.make_net().eval()
    tnet = T.make_net(); topt = torch.optim.SGD(tnet.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    models = {}
    def model(kind):
        if kind not in models:
            torch.manual_seed(0); m = ViTForClassification()
            if kind == 'drop path': drop_path_(m, 0.1)
            models[kind] = (m, torch.optim.AdamW(m.parameters(), lr=1e-3))
        return models[kind]
    def step(kind):
        x, t = x8, y
        if kind in ('TrivialAugment', 'RandAugment'):
            pol = policies['trivial' if kind == 'TrivialAugment' else 'randaug']; x = torch.stack([pol(i) for i in x])
        x = normalize(x, 0.5, 0.5)
        if kind == 'teacher training step':
            loss = F.cross_entropy(T.logits(tnet, x), t)
            topt.zero_grad(); loss.backward(); topt.step(); return
        if kind == 'MixUp/CutMix': x, t = mix(x, t)
        m, opt = model(kind)
        logits = m(x)[0]; loss = F.cross_entropy(logits, t)
        if kind == 'teacher':
            with torch.no_grad(): c = T.logits(net, x).argmax(1)
            loss = (loss + F.cross_entropy(logits, c)) / 2
        opt.zero_grad(); loss.backward(); opt.step()
    kinds = ['32 px', 'TrivialAugment', 'RandAugment', 'MixUp/CutMix', 'drop path', 'teacher', 'teacher training step']
    return time_interleaved({k: functools.partial(step, k) for k in kinds}, reps)


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    head = record.header('levers', torch.device('cpu'), record.load_average())
    if cmd == 'run':
        a = parse(argv); (record.RESULTS / 'levers').mkdir(exist_ok=True)
        entry = run(a)
        save(a.name, {**entry, 'command': 'python bench/levers.py run ' + ' '.join(argv),
                      'git_commit': head['git_commit'], 'load_average': head['load_average']})
        print('FINAL', a.name, entry['final'])
    elif cmd == 'tta': tta(argv)
    elif cmd in ('cost', 'cost-extra'):
        res, load = cost() if cmd == 'cost' else cost_extra()
        save(**{cmd.replace('-', '_'): {'results': res, 'threads': 1, 'batch_size': 256, 'load_average': load,
                                        'machine': head['machine'], 'git_commit': head['git_commit']}})
    else: raise SystemExit(f"unknown command {cmd!r}: run, tta, cost or cost-extra")


if __name__ == '__main__':
    main()
