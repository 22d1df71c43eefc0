"""One full CIFAR-10 epoch (train 50,000 images + test 10,000), the reference's way and vit_nbdev's way, back to back.

    VIT_DATA_DIR=/path/to/cifar10 python bench/epoch.py [--device cpu] [--threads N] [--ref-threads N] \\
        [--recipes fast] [--skip-data] [--procs 2 --micro-batch 32] [--train-sample-size N --test-sample-size M] \\
        [--skip-command] [--command-args FLAG ...]

- reference: the seed's per-head model (`use_faster_attention=False`) computing every token of every block as the
  seed does (`AllTokens` from `throughput.py`), fed by a torchvision `DataLoader` with 2 workers
  that decodes every image through PIL with the seed's transforms (ToTensor, Resize, RandomHorizontalFlip,
  RandomResizedCrop, Normalize); `loss.item()` every step; evaluation under `torch.no_grad()`. torchvision's `CIFAR10`
  class refuses files whose MD5 differs from the official archive, so a small `Dataset` reads the pickles instead
  (the per-image work, PIL conversion and transforms, is the reference's).
- vit_nbdev: `prepare_data`, then `make_recipe` and `Trainer.train` for one epoch, as `vit_train` runs it (fast
  attention, batch-wise tensor augmentation, experiment files committed at the end of the epoch), for its reference
  recipe and then for each of `--recipes` (default: chapter 7's fast recipe, whose whitening and flip evaluation
  are inside the clock). With `--procs N` (and `--micro-batch M`) each of them is timed once more as
  `torchrun --nproc-per-node N vit_train --threads 1 --micro-batch M` runs it: N processes of one thread each, each
  training on its share of every batch in pieces of M images (chapter 8's `DistributedStrategy`, gloo), started
  here with `torch.multiprocessing`; the wall clock is rank 0's, from a barrier after the data is loaded, and the
  CPU seconds are the sum of the processes'.

Last, **the default command**: `vit_train --exp-name NAME` as a user types it (plus `--command-args`), for two
epochs in a new process, in whatever layout it chooses on this machine (on a CPU with several cores, one process
per core; chapter 8); its second epoch, from its `metrics.json`, is compared with the reference's epoch
(`vit_train_command` in the record; `--skip-command` leaves it out).

`--train-sample-size N` / `--test-sample-size M` time a smaller "epoch" (the reference: the first N and M images,
vit_nbdev: `prepare_data`'s random subsets of those sizes), for a quick check that the benchmark runs (the dry run of
`tools/gpu_check.sh`); its numbers are not those of an epoch. Data loading from disk happens before the clock starts
for both. Each time is given in wall-clock seconds and in CPU
seconds of this process and its DataLoader workers: on a shared machine the wall clock also counts the time other
processes held the cores. Prints seconds and the ratios, asserts nothing, and saves every number with the machine,
the versions, the command and the load average before and after (of the whole run and of each epoch) in
`bench/results/epoch.json`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision.transforms as transforms
from PIL import Image
from torch import nn, optim
from torch.utils.data import DataLoader, Dataset, Subset

import vit_nbdev.faster  # noqa: F401  registers --recipe fast (chapter 7)
from vit_nbdev.callbacks import precision_for
from vit_nbdev.data import load_cifar10, prepare_data
from vit_nbdev.distributed import DistributedStrategy
from vit_nbdev.model import ViTConfig, ViTForClassification
from vit_nbdev.recipes import TrainConfig, make_recipe
from vit_nbdev.training import Trainer

import record
from throughput import AllTokens  # bench/ is on the path when this script runs


class PickleCIFAR10(Dataset):
    "CIFAR-10 from the python pickles, one PIL image at a time, as torchvision's `CIFAR10` serves it."
    def __init__(self, data_dir, train, transform):
        images, labels, self.classes = load_cifar10(data_dir, train=train)
        self.data = images.permute(0, 2, 3, 1).numpy()   # (N, 32, 32, 3) uint8, HWC as torchvision keeps it
        self.targets, self.transform = labels.tolist(), transform
    def __len__(self): return len(self.data)
    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def time_data(loader, res: dict, what: str):
    "Time one pass over `loader`'s batches alone (no model); record wall-clock and CPU seconds in `res`."
    with record.Clock() as c:
        for _ in loader: pass
    res.update(data_seconds=round(c.wall, 3), data_cpu_seconds=round(c.cpu, 3))
    print(f"{what}: {c.wall:.2f} s ({c.cpu:.2f} CPU s) per epoch of training data")


def reference_loaders(data_dir, batch_size=256, num_workers=2, train_size=None, test_size=None):
    "The seed's `prepare_data`: PIL transforms in 2 worker processes (on the first `train_size`/`test_size` images)."
    train_tf = transforms.Compose([
        transforms.ToTensor(), transforms.Resize((32, 32)), transforms.RandomHorizontalFlip(p=0.5),
        transforms.RandomResizedCrop((32, 32), scale=(0.8, 1.0), ratio=(0.75, 1.3333333333333333), interpolation=2),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Resize((32, 32)),
                                  transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    def first(ds, n): return ds if n is None or n >= len(ds) else Subset(ds, range(n))
    train = DataLoader(first(PickleCIFAR10(data_dir, True, train_tf), train_size), batch_size=batch_size,
                       shuffle=True, num_workers=num_workers)
    test = DataLoader(first(PickleCIFAR10(data_dir, False, test_tf), test_size), batch_size=batch_size,
                      shuffle=False, num_workers=num_workers)
    return train, test


def reference_epoch(model, optimizer, loss_fn, trainloader, testloader, device):
    "The reference's `Trainer.train_epoch` + `Trainer.evaluate`; returns (train loss, test loss, accuracy)."
    model.train(); total_loss = 0
    for images, labels in trainloader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(images)[0], labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(images)
    train_loss = total_loss / len(trainloader.dataset)
    model.eval(); total_loss = correct = 0
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(device), labels.to(device)
            logits, _ = model(images)
            total_loss += loss_fn(logits, labels).item() * len(images)
            correct += torch.sum(torch.argmax(logits, dim=1) == labels).item()
    return train_loss, total_loss / len(testloader.dataset), correct / len(testloader.dataset)


def ours_epoch(recipe: str, trainloader, testloader, device, res: dict, micro_batch=None, world_size=1):
    "One `vit_train` epoch of `recipe` (30-epoch schedule), from `make_recipe` to the committed epoch; fills `res`."
    torch.manual_seed(0)
    model = ViTForClassification(ViTConfig())
    if world_size > 1: dist.barrier()                                  # every process has its data: start together
    with tempfile.TemporaryDirectory() as out:
        load = record.load_average()
        with record.Clock() as c:
            r = make_recipe(model, TrainConfig(recipe=recipe, epochs=30), trainloader)
            trainer = Trainer(model, r.optimizer, r.loss_func, 'bench', device, scheduler=r.scheduler,
                              predictor=r.predictor, out_dir=out, progress=False, verbose=False, callbacks=r.callbacks,
                              micro_batch=micro_batch, precision=precision_for('auto', device),
                              strategy=DistributedStrategy() if world_size > 1 else None)
            m = trainer.train(trainloader, testloader, 1)
    cpu = c.cpu
    if world_size > 1:                                                 # the CPU seconds of all the processes
        total = torch.tensor(cpu, dtype=torch.float64); dist.all_reduce(total); cpu = total.item()
    res.update(recipe=recipe, threads=torch.get_num_threads(), processes=world_size, micro_batch=micro_batch,
               epoch_seconds=round(c.wall, 2), epoch_cpu_seconds=round(cpu, 2), train_loss=m['train_losses'][0],
               test_loss=m['test_losses'][0], accuracy=m['accuracies'][0],
               predictor=r.predictor, load_average={'before': load, 'after': record.load_average()})
    if dist.is_initialized() and dist.get_rank() > 0: return c
    how = f"{world_size} processes x " if world_size > 1 else ''
    how += f"{torch.get_num_threads()} threads" + (f", micro-batches of {micro_batch}" if micro_batch else '')
    print(f"vit_nbdev epoch, recipe {recipe} ({how}): {c.wall:.1f} s ({cpu:.1f} CPU s)  "
          f"(train loss {m['train_losses'][0]:.4f}, test loss {m['test_losses'][0]:.4f}, "
          f"accuracy {100 * m['accuracies'][0]:.2f}%)")
    return c


def _worker(rank: int, world: int, recipes: list, micro_batch, data_dir, out: str):
    "Process `rank` of `world`: one thread, its share of each batch; rank 0 writes the results to `out`."
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ.get('BENCH_PORT', '29531'))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        train, test = prepare_data(256, data_dir, rank=rank, world_size=world)
        res = {}
        for name in recipes: ours_epoch(name, train, test, 'cpu', res.setdefault(name, {}), micro_batch, world)
        if rank == 0: Path(out).write_text(json.dumps(res))
    finally: dist.destroy_process_group()


def procs_epochs(recipes: list, procs: int, micro_batch, data_dir) -> dict:
    "`ours_epoch` of each recipe in `procs` processes of one thread each (as under torchrun): recipe -> results."
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'results.json'
        mp.spawn(_worker, args=(procs, recipes, micro_batch, data_dir, str(out)), nprocs=procs)
        return json.loads(out.read_text())


def command_epochs(data_dir, extra: list) -> dict:
    "The default `vit_train` command, as a user types it, for 2 epochs in a new process: its epochs' seconds."
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, '-c', 'import sys; from vit_nbdev.commands import vit_train; sys.exit(vit_train())',
               '--exp-name', 'default_command', '--epochs', '2', '--out-dir', out, '--no-progress', *extra]
        if data_dir: cmd += ['--data-dir', str(data_dir)]
        load = record.load_average()
        with record.Clock() as c: r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode: raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        m = json.loads((Path(out) / 'default_command' / 'metrics.json').read_text())
        settings = json.loads((Path(out) / 'default_command' / 'config.json').read_text())['settings']
    res = dict(command='vit_train --exp-name NAME' + ''.join(f' {x}' for x in extra), epochs=2,
               processes=settings['procs'], threads=settings['threads'], micro_batch=settings['micro_batch'],
               epoch_seconds=round(m['seconds'][1], 2), first_epoch_seconds=round(m['seconds'][0], 2),
               whole_command_seconds=round(c.wall, 2), train_losses=m['train_losses'], accuracies=m['accuracies'],
               load_average={'before': load, 'after': record.load_average()})
    print(f"the default command (vit_train --exp-name NAME{''.join(f' {x}' for x in extra)}: {settings['procs']} "
          f"process(es) x {settings['threads']} thread(s)): second epoch {res['epoch_seconds']:.1f} s "
          f"(first {res['first_epoch_seconds']:.1f} s, whole command {c.wall:.1f} s)")
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-dir', default=None)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None, help="vit_nbdev's CPU threads (default: vit_train's default)")
    p.add_argument('--ref-threads', type=int, default=None,
                   help="the reference's CPU threads (default: PyTorch's, as the seed runs)")
    p.add_argument('--recipes', nargs='*', default=['fast'],
                   help="vit_nbdev's recipes to time after its reference recipe (default: fast)")
    p.add_argument('--skip-data', action='store_true', help='do not time the data pipelines on their own')
    p.add_argument('--procs', type=int, default=1,
                   help="also time vit_nbdev's recipes in this many processes of one thread each (CPU, gloo)")
    p.add_argument('--micro-batch', type=int, default=None, help='with --procs: pieces of this many images')
    p.add_argument('--train-sample-size', type=int, default=None,
                   help='time on this many training images (a quick check; not an epoch)')
    p.add_argument('--test-sample-size', type=int, default=None, help='... and this many test images')
    p.add_argument('--skip-command', action='store_true',
                   help='do not time the default vit_train command (2 epochs in a new process; its second counts)')
    p.add_argument('--command-args', nargs='*', default=[],
                   help='flags for that command (e.g. --procs 1); the data folder is passed on')
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/epoch.json)')
    a = p.parse_args()
    sizes = dict(train_size=a.train_sample_size, test_size=a.test_sample_size)
    if a.procs > 1 and (a.train_sample_size or a.test_sample_size):
        p.error('--procs does not take --train-sample-size / --test-sample-size')
    device = torch.device(a.device)
    rec = record.header('epoch', device, record.load_average())
    mach = rec['machine']
    print(f"machine: {mach.get('gpu') or mach['cpu']}, {mach['cores']} cores, "
          f"load average {rec['load_average']['before']}; "
          f"torch {torch.__version__}; device {device}")
    data_dir = a.data_dir or os.environ.get('VIT_DATA_DIR')
    res = {'reference': {'dataloader_workers': 2}, 'vit_nbdev': {}}

    # -- the reference's epoch (PyTorch's default threads, as the seed runs, unless --ref-threads)
    if a.ref_threads: torch.set_num_threads(a.ref_threads)
    rtrain, rtest = reference_loaders(data_dir, **sizes)
    if not a.skip_data: time_data(rtrain, res['reference'], 'reference data only (2 workers, PIL)')
    torch.manual_seed(0)
    model = AllTokens(ViTForClassification(ViTConfig(use_faster_attention=False))).to(device)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    load = record.load_average()
    with record.Clock() as ref:
        r = reference_epoch(model, opt, nn.CrossEntropyLoss(), rtrain, rtest, device)
    res['reference'].update(threads=torch.get_num_threads(), epoch_seconds=round(ref.wall, 2),
                            epoch_cpu_seconds=round(ref.cpu, 2), train_loss=r[0], test_loss=r[1], accuracy=r[2],
                            load_average={'before': load, 'after': record.load_average()})
    print(f"reference epoch ({torch.get_num_threads()} threads): {ref.wall:.1f} s ({ref.cpu:.1f} CPU s)  "
          f"(train loss {r[0]:.4f}, test loss {r[1]:.4f}, accuracy {100 * r[2]:.2f}%)")

    # -- vit_nbdev's epoch, for each recipe asked for (the recipe's set-up, e.g. the fast one's whitening, included)
    if a.threads: torch.set_num_threads(a.threads)
    trainloader, testloader = prepare_data(256, data_dir, device=device, train_sample_size=a.train_sample_size,
                                           test_sample_size=a.test_sample_size)
    if not a.skip_data: time_data(trainloader, res['vit_nbdev'], 'vit_nbdev data only (tensor ops)')
    ours = ours_epoch('reference', trainloader, testloader, device, res['vit_nbdev'])
    for name in a.recipes:
        if name != 'reference':
            ours_epoch(name, trainloader, testloader, device, res.setdefault(f'vit_nbdev_{name}', {}))
    if a.procs > 1:
        names = ['reference', *[n for n in a.recipes if n != 'reference']]
        for name, v in procs_epochs(names, a.procs, a.micro_batch, data_dir).items():
            key = f"vit_nbdev_{'' if name == 'reference' else name + '_'}{a.procs}procs"
            res[key + (f'_micro{a.micro_batch}' if a.micro_batch else '')] = v
    if not a.skip_command and not (a.train_sample_size or a.test_sample_size):
        res['vit_train_command'] = command_epochs(data_dir, a.command_args)
    ratio, ratio_cpu = ours.wall / ref.wall, ours.cpu / ref.cpu
    print(f"vit_nbdev / reference epoch time: {ratio:.2f}x, CPU time: {ratio_cpu:.2f}x  (target <= 0.6x)")
    for k, v in res.items():
        if k in ('reference', 'vit_nbdev'): continue                  # the reference, and the ratio above
        v.update(ratio_epoch_seconds=round(v['epoch_seconds'] / ref.wall, 3))
        if 'epoch_cpu_seconds' in v: v.update(ratio_epoch_cpu_seconds=round(v['epoch_cpu_seconds'] / ref.cpu, 3))
        print(f"{k} / reference epoch time: {v['ratio_epoch_seconds']:.2f}x" +
              (f", CPU time: {v['ratio_epoch_cpu_seconds']:.2f}x" if 'epoch_cpu_seconds' in v else ''))
    rec.update(settings={'batch_size': 256, 'train_images': len(trainloader.dataset),
                         'test_images': len(testloader.dataset), 'timed_data': not a.skip_data},
               results=res, ratio_epoch_seconds=round(ratio, 3), ratio_epoch_cpu_seconds=round(ratio_cpu, 3))
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
