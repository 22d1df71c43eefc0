"""One training run of the seed ViT on the CIFAR-10 held-out split (train 45k / val 5k), or with --full on 50k / test 10k.
Writes results/<name>.json after every epoch (config, per-epoch metrics, seconds).

    python run.py --name zca --epochs 10 --zca 1e-3 --ema 0.999
"""
import argparse, json, os, time
import torch
from vit_nbdev.model import ViTConfig, ViTForClassification
from vit_nbdev.train import load_cifar10, make_recipe, normalize, save_json
from fast_recipe import (holdout_split, zca_whitening_init_, mimetic_init_, ModelEMA, train_batches, mixup)

DATA = '/work/shared/data/cifar10'
HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--name', required=True)
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--lr', type=float, default=1e-2)
    p.add_argument('--wd', type=float, default=1e-2)
    p.add_argument('--warmup', type=float, default=0.05, help='fraction of the steps')
    p.add_argument('--ls', type=float, default=0.1, help='label smoothing')
    p.add_argument('--zca', type=float, default=0.0, help='ZCA init eps (0: off)')
    p.add_argument('--zca-images', type=int, default=5000)
    p.add_argument('--mimetic', type=float, nargs=4, default=None, metavar=('A1', 'B1', 'A2', 'B2'))
    p.add_argument('--ema', type=float, default=0.0, help='EMA decay per step (0: off)')
    p.add_argument('--aug', choices=('rrc', 'crop', 'none'), default='rrc')
    p.add_argument('--rrc-scale', type=float, default=0.8)
    p.add_argument('--flips', choices=('random', 'alternate'), default='random')
    p.add_argument('--mixup', type=float, default=0.0, help='mixup alpha (0: off)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--full', action='store_true', help='train on all 50k, evaluate on the test set (final recipe only)')
    p.add_argument('--threads', type=int, default=1)
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(model, x_uint8, y, tta: bool = True, batch_size=1000) -> dict:
    "Accuracy and cross-entropy of plain logits and (if `tta`) of flip-TTA logits."
    model.eval()
    n_ok = n_ok_tta = 0; loss = loss_tta = 0.0
    for i in range(0, len(x_uint8), batch_size):
        x, t = normalize(x_uint8[i:i + batch_size]), y[i:i + batch_size]   # (B, C, H, W), (B,)
        a = model(x)[0]                                                    # (B, K)
        b = model(x.flip(-1))[0] if tta else a                             # (B, K)
        m = (a + b) / 2                                                    # flip-TTA logits
        n_ok += (a.argmax(1) == t).sum().item(); n_ok_tta += (m.argmax(1) == t).sum().item()
        loss += torch.nn.functional.cross_entropy(a, t, reduction='sum').item()
        loss_tta += torch.nn.functional.cross_entropy(m, t, reduction='sum').item()
    n = len(y)
    r = {'acc': n_ok / n, 'loss': loss / n}
    return {**r, 'acc_tta': n_ok_tta / n, 'loss_tta': loss_tta / n} if tta else r


def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(a.threads)
    xs, ys, classes = load_cifar10(DATA, train=True, download=False)
    if a.full:
        (xtr, ytr), (xev, yev) = (xs, ys), load_cifar10(DATA, train=False, download=False)[:2]
    else:
        (xtr, ytr), (xev, yev) = holdout_split(xs, ys, 5000)
    torch.manual_seed(a.seed)
    model = ViTForClassification(ViTConfig())
    if a.zca: zca_whitening_init_(model.embedding.patch_embeddings.projection, xtr[:a.zca_images], a.zca)
    if a.mimetic: mimetic_init_(model, *a.mimetic, generator=torch.Generator().manual_seed(a.seed))
    steps = -(-len(xtr) // a.batch_size)
    opt, loss_fn, sched = make_recipe(model, 'modern', a.lr, a.wd, a.epochs, steps, a.warmup, a.ls)
    ema = ModelEMA(model, a.ema) if a.ema else None
    out = os.path.join(HERE, 'results', a.name + '.json')
    res = {'name': a.name, 'config': vars(a), 'split': 'train50k/test10k' if a.full else 'train45k/val5k',
           'threads': torch.get_num_threads(), 'epochs': []}
    for epoch in range(a.epochs):
        model.train(); t0 = time.perf_counter(); tot = torch.zeros(()); n = 0
        for x, y in train_batches(xtr, ytr, a.batch_size, epoch, a.seed, a.aug, a.flips, (a.rrc_scale, 1.0)):
            target = y
            if a.mixup: x, target = mixup(x, y, 10, a.mixup)
            loss = loss_fn(model(x)[0], target)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
            if ema: ema.update(model)
            tot += loss.detach() * len(y); n += len(y)
        train_s = time.perf_counter() - t0
        train_loss = (tot / n).item()
        if not torch.isfinite(torch.tensor(train_loss)): raise RuntimeError(f'diverged at epoch {epoch}')
        if a.full and epoch < a.epochs - 1 and epoch + 1 not in (20, 25):   # test set at the end (+ epochs 20, 25 as a fallback if killed; no choices made on them)
            rec = {'epoch': epoch + 1, 'train_loss': train_loss, 'train_s': train_s}
        else:
            t1 = time.perf_counter()
            tta = epoch == a.epochs - 1 or (epoch + 1) % 5 == 0   # flip-TTA every 5th and the last epoch only
            rec = {'epoch': epoch + 1, 'train_loss': train_loss, 'train_s': train_s, 'raw': evaluate(model, xev, yev, tta)}
            if ema and tta: rec['ema'] = evaluate(ema.module, xev, yev, tta)   # EMA every 5th and the last epoch only
            rec['eval_s'] = time.perf_counter() - t1   # both models; plain (+ flipped when tta) forward each
        res['epochs'].append(rec); save_json(out, res)
        ev = rec.get('ema', rec.get('raw'))
        msg = f"{a.name} ep {epoch + 1}/{a.epochs} train_loss {train_loss:.4f} {train_s:.1f}s"
        if 'raw' in rec: msg += f" | raw acc {rec['raw']['acc']:.4f} tta {rec['raw'].get('acc_tta', float('nan')):.4f}"
        if 'ema' in rec: msg += f" | ema acc {ev['acc']:.4f} tta {ev.get('acc_tta', float('nan')):.4f}"
        print(msg, flush=True)
    res['done'] = True; save_json(out, res)


if __name__ == '__main__':
    main()
