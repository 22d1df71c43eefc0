"""A whole `vit_train` run's cost in reference epochs: one reference epoch, then the run, timed in one process tree.

    VIT_DATA_DIR=/path/to/cifar10 python bench/budget.py [--threads N] -- VIT_TRAIN_FLAGS...

e.g. `python bench/budget.py -- --exp-name fast_budget --recipe budget --epochs 12 --seed 0`.

- reference: one epoch (train 50,000 + test 10,000) of tintn's structure fed by a PIL `DataLoader`, exactly as
  `bench/epoch.py` times it (its `reference_epoch`), with PyTorch's default threads, on the run's device (its
  `--device`, default the CPU) and on as many images as the run (its `--train-sample-size` / `--test-sample-size`:
  the first N images; for quick checks only).
- the run: `vit_train VIT_TRAIN_FLAGS` in a subprocess, timed from its start to its exit: Python's start, reading
  CIFAR-10, the recipe's set-up, every epoch's training and evaluation, the experiment's files.

Prints the run's wall-clock and CPU seconds, its cost in reference epochs and the epoch at which the run's recorded
accuracy first reached 75.5 %; asserts nothing; saves every number with the machine, the versions, the command and
the load average in `bench/results/budget.json` (or `--out`).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn, optim

from vit_nbdev.model import ViTConfig, ViTForClassification

import record
from epoch import reference_epoch, reference_loaders  # bench/ is on the path when this script runs
from throughput import AllTokens

BAR = 0.755   # tintn's accuracy after 100 epochs


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-dir', default=None)
    p.add_argument('--threads', type=int, default=None, help="the run's CPU threads (passed as --threads)")
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/budget.json)')
    p.add_argument('train', nargs=argparse.REMAINDER, help='-- then the flags of vit_train')
    a = p.parse_args()
    flags = a.train[1:] if a.train[:1] == ['--'] else a.train
    if a.threads: flags += ['--threads', str(a.threads)]
    def flag(name, default=None):
        "The value of vit_train's `--name` (or `--name=value`) among the flags."
        for i, x in enumerate(flags):
            if x == name and i + 1 < len(flags): return flags[i + 1]
            if x.startswith(name + '='): return x.split('=', 1)[1]
        return default
    device = torch.device(flag('--device', 'cpu'))
    sizes = {k: int(v) for k, v in (('train_size', flag('--train-sample-size')),
                                    ('test_size', flag('--test-sample-size'))) if v is not None}
    rec = record.header('budget', device, record.load_average())
    mach = rec['machine']
    print(f"machine: {mach.get('gpu') or mach['cpu']}, {mach['cores']} cores, "
          f"load average {rec['load_average']['before']}; torch {torch.__version__}")
    data_dir = a.data_dir or os.environ.get('VIT_DATA_DIR')

    # -- one reference epoch
    rtrain, rtest = reference_loaders(data_dir, **sizes)
    torch.manual_seed(0)
    model = AllTokens(ViTForClassification(ViTConfig(use_faster_attention=False))).to(device)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    load = record.load_average()
    with record.Clock() as ref:
        r = reference_epoch(model, opt, nn.CrossEntropyLoss(), rtrain, rtest, device)
    reference = dict(threads=torch.get_num_threads(), dataloader_workers=2, epoch_seconds=round(ref.wall, 2),
                     epoch_cpu_seconds=round(ref.cpu, 2), accuracy=r[2],
                     load_average={'before': load, 'after': record.load_average()})
    print(f"reference epoch ({torch.get_num_threads()} threads): {ref.wall:.1f} s ({ref.cpu:.1f} CPU s)")
    del rtrain, rtest

    # -- the whole run, as a user starts it
    cmd = [sys.executable, '-m', 'vit_nbdev.commands', *flags, '--no-progress']   # vit_train, installed or not
    load = record.load_average()
    with record.Clock() as c:                                  # the CPU seconds: this process's and the run's
        subprocess.run(cmd, check=True, env={**os.environ, **({'VIT_DATA_DIR': data_dir} if data_dir else {})})
    wall, cpu = c.wall, c.cpu
    i = flags.index('--exp-name') + 1 if '--exp-name' in flags else flags.index('--exp_name') + 1
    out_dir = Path(flags[flags.index('--out-dir') + 1]) if '--out-dir' in flags else Path('experiments')
    exp = out_dir / flags[i]
    metrics = json.loads((exp / 'metrics.json').read_text())
    acc = [x for x in metrics['accuracies']]
    first = next((e + 1 for e, x in enumerate(acc) if x is not None and x == x and x >= BAR), None)
    run = dict(command='vit_train ' + ' '.join(flags), exp_name=exp.name, seconds=round(wall, 2),
               cpu_seconds=round(cpu, 2),
               epochs=len(acc), final_accuracy=acc[-1], first_epoch_at_bar=first,
               reference_epochs=round(wall / ref.wall, 2), reference_epochs_cpu=round(cpu / ref.cpu, 2),
               load_average={'before': load, 'after': record.load_average()})
    print(f"run: {wall:.1f} s ({cpu:.1f} CPU s) = {run['reference_epochs']:.2f} reference epochs "
          f"({run['reference_epochs_cpu']:.2f} in CPU time); final accuracy {100 * acc[-1]:.2f} %; "
          f"first at >= {100 * BAR:.1f} %: epoch {first}")
    rec.update(settings={'bar': BAR}, results={'reference': reference, 'run': run})
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
