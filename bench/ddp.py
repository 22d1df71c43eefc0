"""Data-parallel scaling: images per second of the training step on 1 process against N processes (torchrun + DDP).

    VIT_DATA_DIR=/path/to/cifar10 python bench/ddp.py [--device cpu] [--nproc 2] [--images 2048] [--epochs 2]
                                                     [--batch-size 256] [--threads 1]

Each run is `torchrun --standalone --nproc-per-node N bench/ddp.py --worker ...` (plain python for N = 1): every
process loads `--images` CIFAR-10 training images, takes its share of each global batch of `--batch-size` (as
`vit_train` does under torchrun), and trains the seed model through `Trainer.train_epoch` for one untimed warm-up
epoch and `--epochs` timed ones. Reported: global images per second, and the scaling efficiency
(N-process img/s) / (N x 1-process img/s). On a GPU machine (`--device cuda`) N defaults to all of its GPUs.
The result is also written to bench/results/ddp.json (bench/record.py's record: the machine, the versions, the
command, the commit and the load average).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn, optim

from vit_nbdev.callbacks import precision_for
from vit_nbdev.data import prepare_data
from vit_nbdev.distributed import DistributedStrategy, init_distributed
from vit_nbdev.model import ViTForClassification
from vit_nbdev.training import Callback, Trainer

import record  # bench/ is on the path when this script runs


class TrainTime(Callback):
    "The seconds of each epoch's training (its batches, not its evaluation), from a common start, the GPU drained."
    def __init__(self, device): self.device, self.seconds = device, []
    def sync(self):
        if self.device.type == 'cuda': torch.cuda.synchronize()
    def before_epoch(self, t):
        if t.world_size > 1: dist.barrier()
        self.sync(); self.start = time.perf_counter()
    def after_batch(self, t):
        if t.step == len(t.trainloader): self.sync(); self.seconds.append(time.perf_counter() - self.start)


def worker(a):
    "One process of a run: time `a.epochs` training epochs; rank 0 prints one JSON line."
    torch.set_num_threads(a.threads)
    device, rank, world, joined = init_distributed(a.device, 'auto', a.batch_size)
    train, test = prepare_data(a.batch_size, dataset='cifar10', seed=0, device=device, train_sample_size=a.images,
                               test_sample_size=16, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = ViTForClassification()
    opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    timer = TrainTime(device)                                    # the first epoch warms up; the others are timed
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device=device, precision=precision_for('auto', device),
                      strategy=DistributedStrategy() if world > 1 else None, callbacks=[timer], progress=False,
                      verbose=False)
    trainer.train(train, test, a.epochs + 1)
    seconds, loss = timer.seconds[1:], trainer.metrics['train_losses'][-1]
    if joined: dist.destroy_process_group()
    if rank == 0:
        print(json.dumps({'nproc': world, 'device': str(device), 'seconds': seconds, 'loss': loss,
                          'images_per_s': a.images * a.epochs / sum(seconds)}), flush=True)


def run(a, nproc: int) -> dict:
    "Start one run on `nproc` processes and return rank 0's result."
    me = [str(Path(__file__).resolve()), '--worker', '--device', a.device, '--images', str(a.images),
          '--epochs', str(a.epochs), '--batch-size', str(a.batch_size), '--threads', str(a.threads)]
    launcher = ([sys.executable] if nproc == 1 else
                [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', str(nproc)])
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads)}
    p = subprocess.run(launcher + me, capture_output=True, text=True, env=env)
    if p.returncode: sys.exit(f'the {nproc}-process run failed:\n{p.stderr[-3000:]}')
    return json.loads([x for x in p.stdout.splitlines() if x.startswith('{')][-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu', help="'cpu' (gloo) or 'cuda' (NCCL, one process per GPU)")
    p.add_argument('--nproc', type=int, default=None, help='processes to compare with 1 (default: 2 on CPU, all GPUs)')
    p.add_argument('--images', type=int, default=2048, help='CIFAR-10 training images per epoch')
    p.add_argument('--epochs', type=int, default=2, help='timed epochs (after one warm-up epoch)')
    p.add_argument('--batch-size', type=int, default=256, help='the global batch')
    p.add_argument('--threads', type=int, default=1, help='CPU threads per process')
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/ddp.json)')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker: return worker(a)
    n = a.nproc or (torch.cuda.device_count() if a.device.startswith('cuda') else 2)
    rec = record.header('ddp', torch.device(a.device), record.load_average())
    results = [run(a, 1), run(a, n)]
    one, many = (r['images_per_s'] for r in results)
    efficiency = many / (n * one)
    for r in results:
        print(f"{r['nproc']} process(es) on {r['device']}: {r['images_per_s']:8.1f} images/s "
              f"(epochs of {', '.join(f'{s:.1f}' for s in r['seconds'])} s)")
    print(f'speed-up {many / one:.2f}x on {n} processes; scaling efficiency {100 * efficiency:.0f}%')
    if torch.cuda.is_available(): rec['machine']['gpus'] = [torch.cuda.get_device_name(i)
                                                            for i in range(torch.cuda.device_count())]
    rec.update(settings={k: v for k, v in vars(a).items() if k not in ('worker', 'out')},
               results=results, speedup=many / one, scaling_efficiency=efficiency)
    record.save(rec, a.out)
    print(f"load average (1, 5, 15 min) before {rec['load_average']['before']}, after {rec['load_average']['after']}")


if __name__ == '__main__':
    main()
