"""The Python steps of `tools/gpu_check.sh`: the precision the `Trainer` chooses, the host-to-device copies and host
syncs of a training batch (PyTorch's profiler), and the record `bench/results/gpu.json` of all the steps.

    python tools/gpu_check.py precision --device cuda --out STEP.json
    python tools/gpu_check.py copies --device cuda --out STEP.json [--train-sample-size 8192] [--batch-size 256]
    python tools/gpu_check.py collect --steps DIR --device cuda --command '...' [--out bench/results/gpu.json]

Each step writes its findings as JSON to `--out`; `collect` gathers the steps' files (with their status, seconds and
output written by the shell script) under the header of `bench/record.py` (machine, versions, commit, load average).
"""
import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))
import record  # noqa: E402  (bench/record.py: the benchmarks' header and file conventions)


def precision(device: torch.device) -> dict:
    "What `vit_train` chooses on `device` (chapter 5b): the autocast dtype, the gradient scaler, TF32."
    from vit_nbdev.callbacks import autocast_dtype, precision_for, use_tf32
    res = {'device': str(device), 'autocast_dtype': str(autocast_dtype(device))}
    if device.type == 'cuda':
        res.update(gpu=torch.cuda.get_device_name(device), bf16_supported=torch.cuda.is_bf16_supported(),
                   capability='.'.join(map(str, torch.cuda.get_device_capability(device))))
    p, tf32 = precision_for('auto', device), use_tf32(device)
    scaler = getattr(p, 'scaler', None)
    res.update(trainer_dtype=str(p.dtype), grad_scaler=bool(scaler is not None and scaler.is_enabled()), tf32=tf32,
               float32_matmul_precision=torch.get_float32_matmul_precision())
    return res


def count_events(prof, batches: int) -> dict:
    """Host-to-device copies, device-to-host copies (each `.item()` or `bool()` of a GPU tensor is one, and a wait)
    and the host's waits for the GPU in a profile, in all and per batch."""
    ev = prof.key_averages()
    def total(match): return sum(e.count for e in ev if match(e.key))
    n = {'htod_copies': total(lambda k: k.startswith('Memcpy HtoD')),                     # the GPU's copy activity
         'dtoh_copies': total(lambda k: k.startswith('Memcpy DtoH')),
         'host_waits': total(lambda k: k in ('cudaStreamSynchronize', 'cudaDeviceSynchronize'))}
    return {**n, 'batches': batches, 'per_batch': {k: round(v / batches, 3) for k, v in n.items()}}


def copies(device: torch.device, train_size: int, batch_size: int, recipe: str) -> dict:
    """Profile one epoch of the training loader alone, then the batches of a `Trainer`'s second epoch with `recipe`,
    on `device` (the first epoch of each warms up); count the copies and syncs of each, per batch."""
    from torch.profiler import ProfilerActivity, profile

    from vit_nbdev.callbacks import precision_for
    from vit_nbdev.data import prepare_data
    from vit_nbdev.model import ViTForClassification
    from vit_nbdev.recipes import TrainConfig, make_recipe
    from vit_nbdev.training import Callback, Trainer
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    train, test = prepare_data(batch_size, device=device, train_sample_size=train_size, test_sample_size=batch_size)
    res = {'device': str(device), 'train_images': len(train.dataset), 'batch_size': batch_size, 'recipe': recipe}
    for _ in train: pass                                                           # warm-up
    sync()
    with profile(activities=activities) as prof:
        for _ in train: pass
        sync()
    res['loader'] = count_events(prof, len(train))

    class Profile(Callback):
        "Profile the batches of the second epoch, the first one warming up."
        def before_epoch(self, t):
            if t.epoch == 2: sync(); self.prof = profile(activities=activities); self.prof.__enter__()
        def after_batch(self, t):
            if t.epoch == 2 and t.step == len(t.trainloader): sync(); self.prof.__exit__(None, None, None)
    torch.manual_seed(0)
    cfg = TrainConfig(recipe=recipe, epochs=2, batch_size=batch_size)
    model = ViTForClassification(cfg.vit_config(len(train.classes)))
    r, spy = make_recipe(model, cfg, train), Profile()
    t = Trainer(model, r.optimizer, r.loss_func, device=device, scheduler=r.scheduler, predictor=r.predictor,
                precision=precision_for('auto', device), callbacks=[*r.callbacks, spy], progress=False, verbose=False)
    t.train(train, test, 2)
    res['train_epoch'] = count_events(spy.prof, len(train))
    res['note'] = ('counted from the GPU\'s copy activity; the two loader copies of each epoch are in the sums'
                   if device.type == 'cuda' else 'no CUDA: the CPU has no host-to-device copies to count')
    return res


def collect(steps: Path, device: str, command: str, out) -> dict:
    "The record of the whole check: `record.header`, then each step's status, seconds, output and findings."
    rec = record.header('gpu', torch.device(device if device != 'cuda' or torch.cuda.is_available() else 'cpu'),
                        record.load_average())
    rec['command'] = command
    rec['steps'] = {}
    for f in sorted(steps.glob('*.status.json'), key=lambda p: json.loads(p.read_text())['order']):
        s = json.loads(f.read_text())
        name = s.pop('name')
        found = steps / f'{name}.json'
        if found.is_file(): s['results'] = json.loads(found.read_text())
        log = steps / f'{name}.log'
        if log.is_file(): s['output_tail'] = log.read_text()[-3000:]
        rec['steps'][name] = s
    rec['passed'] = all(s['status'] in ('pass', 'skip') for s in rec['steps'].values())
    record.save(rec, out)
    return rec


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('what', choices=['precision', 'copies', 'collect'])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out', default=None)
    p.add_argument('--train-sample-size', type=int, default=8192)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--recipe', default='fast')
    p.add_argument('--steps', type=Path, default=None, help='collect: the folder of the steps\' files')
    p.add_argument('--command', default='tools/gpu_check.sh', help='collect: the command that ran the check')
    a = p.parse_args()
    if a.what == 'collect':
        rec = collect(a.steps, a.device, a.command, a.out)
        for name, s in rec['steps'].items():
            print(f"{name:12s} {s['status']:5s} {s['seconds']:7.1f} s  {s.get('note', '')}")
        sys.exit(0 if rec['passed'] else 1)
    device = torch.device(a.device)
    res = precision(device) if a.what == 'precision' else copies(device, a.train_sample_size, a.batch_size, a.recipe)
    print(json.dumps(res, indent=1))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    main()
