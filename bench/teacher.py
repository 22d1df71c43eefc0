"""A convolutional teacher for the distillation lever of bench/levers.py, trained on the held-out split's 45,000
images.

    VIT_DATA_DIR=/path/to/cifar10 python bench/teacher.py [--epochs 12] [--threads 1]

A small VGG-like network in the style of airbench (Jordan 2024): a 3×3 stem, then three groups of
conv → max-pool → batch norm → GELU → conv, widths 32, 64, 128 (298,016 parameters), trained with SGD (Nesterov
momentum, one warm-up-then-linear-decay cycle), label smoothing 0.2, on chapter 4a's crops and flips of the same
normalised images the ViT sees, so that `bench/levers.py run --distill` can feed it the student's batches. The test
set is not read: the accuracy is on the last 5,000 training images. The record goes to `bench/results/levers.json`
under `teacher`, the weights to `bench/results/levers/teacher.pt` (not committed).
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from vit_nbdev.data import prepare_data

import record

WIDTHS = (32, 64, 128)


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    "3×3 convolution (then a 2×2 max-pool if `pool`), batch norm, GELU."
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), *([nn.MaxPool2d(2)] if pool else []),
                         nn.BatchNorm2d(c_out), nn.GELU())


def make_net(widths=WIDTHS, num_classes: int = 10) -> nn.Sequential:
    "The teacher: images (B, 3, 32, 32) → logits (B, num_classes)."
    layers, c = [conv_bn(3, widths[0])], widths[0]
    for w in widths: layers += [conv_bn(c, w, pool=True), conv_bn(w, w)]; c = w   # 32 → 16 → 8 → 4 px
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, num_classes, bias=False)]
    return nn.Sequential(*layers).to(memory_format=torch.channels_last)


def load(path) -> nn.Sequential:
    "A teacher saved by this script."
    net = make_net(); net.load_state_dict(torch.load(path)); return net


def logits(net, x: torch.Tensor) -> torch.Tensor:
    "The teacher's logits (B, classes) for normalised images `x` (B, 3, H, W), passed channels-last as it is built."
    return net(x.contiguous(memory_format=torch.channels_last))


def accuracy(net, loader) -> float:
    "The fraction of `loader`'s images whose class the teacher gets right."
    net.eval(); c = n = 0
    with torch.inference_mode():
        for x, y in loader: c += (logits(net, x).argmax(1) == y).sum().item(); n += len(y)
    return c / n


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=12); p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--threads', type=int, default=1); p.add_argument('--train-n', type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    train, val = prepare_data(256, seed=0, holdout=5000, train_sample_size=a.train_n)
    net = make_net()
    decay = [q for q in net.parameters() if q.ndim > 1]; rest = [q for q in net.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{'params': decay, 'weight_decay': 5e-4}, {'params': rest, 'weight_decay': 0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    total = a.epochs * len(train); warm = max(1, total // 10)
    def lr_factor(s): return min((s + 1) / warm, max(0.0, (total - s) / (total - warm)))   # warm-up, linear decay
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    accs, secs, t0 = [], [], time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        net.train(); te = time.perf_counter()
        for x, y in train:
            loss = F.cross_entropy(logits(net, x), y, label_smoothing=0.2)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        accs.append(accuracy(net, val)); secs.append(time.perf_counter() - te)
        print(f"epoch {epoch:2d}  loss {loss.item():.3f}  held-out accuracy {100 * accs[-1]:.2f} %  ({secs[-1]:.0f} s)",
              flush=True)
    (record.RESULTS / 'levers').mkdir(exist_ok=True)
    torch.save(net.state_dict(), record.RESULTS / 'levers' / 'teacher.pt')
    from levers import save  # the one writer of levers.json
    save('teacher', {'command': 'python bench/teacher.py ' + ' '.join(f'--{k.replace("_", "-")} {v}'
                                                                     for k, v in vars(a).items() if v),
                     'widths': list(WIDTHS), 'parameters': sum(q.numel() for q in net.parameters()),
                     'accuracies': accs, 'seconds': secs, 'total_seconds': time.perf_counter() - t0,
                     'git_commit': record.git_commit()})

if __name__ == '__main__':
    main()
