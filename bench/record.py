"""What a benchmark saves next to its numbers: the machine, the versions, the command, the date and how busy the machine
was, written as JSON under `bench/results/` so that every speed the README states comes from a committed file."""
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / 'results'


def load_average() -> list:
    "The 1, 5 and 15-minute load averages (processes running or waiting for a core), rounded."
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> float:
    "CPU seconds used so far by this process and its finished children (a DataLoader's workers, once joined)."
    t = os.times()   # (children only to clock-tick resolution; this process to the nanosecond)
    return time.process_time() + t.children_user + t.children_system


class Clock:
    """Wall-clock and CPU seconds of a block: `with Clock() as c: ...`, then `c.wall`, `c.cpu`. On a shared machine
    the wall clock counts the time other processes held the cores; CPU seconds count only the work done."""
    def __enter__(self):
        self.t, self.c = time.perf_counter(), cpu_seconds()
        return self
    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t, cpu_seconds() - self.c


def time_interleaved(steps: dict, reps: int, warmup: int = 1) -> dict:
    """Seconds of each of `steps` (name -> function), sorted: `warmup` calls each, then `reps` rounds calling each in
    turn, so that a change of the machine's load touches every step alike."""
    for f in steps.values():
        for _ in range(warmup): f()
    t = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
    return {k: sorted(v) for k, v in t.items()}


def cpu_model() -> str:
    "The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    "Versions of python and of the packages the benchmarks use (None for one not installed)."
    import vit_nbdev
    out = {'python': platform.python_version(), 'torch': torch.__version__, 'vit_nbdev': vit_nbdev.__version__}
    for name in ('torchvision', 'timm'):
        try: out[name] = __import__(name).__version__
        except ImportError: out[name] = None
    return out


def git_commit() -> str:
    "The commit of the code measured, with '+changes' when the working tree differs from it."
    root = Path(__file__).resolve().parents[1]
    try:
        def git(*a): return subprocess.run(['git', *a], cwd=root, capture_output=True, text=True, check=True).stdout
        changed = git('status', '--porcelain', '--', 'vit_nbdev', 'bench', ':!bench/results').strip()
        return git('rev-parse', 'HEAD').strip() + ('+changes' if changed else '')
    except (OSError, subprocess.CalledProcessError): return None


def machine(device: torch.device) -> dict:
    "The machine the numbers were measured on."
    m = {'cpu': cpu_model(), 'cores': os.cpu_count(), 'platform': platform.platform(), 'device': str(device)}
    if device.type == 'cuda': m['gpu'] = torch.cuda.get_device_name(device)
    return m


def header(name: str, device: torch.device, load_before: list) -> dict:
    "The record's fields that do not depend on the results."
    return {'benchmark': name, 'date': datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
            'command': shlex.join(['python', os.path.relpath(os.path.abspath(sys.argv[0]), RESULTS.parent.parent),
                                   *sys.argv[1:]]),                    # as run from the repository's root
            'git_commit': git_commit(), 'machine': machine(device), 'versions': versions(),
            'load_average': {'before': load_before}}


def save(record: dict, out=None) -> Path:
    "Add the load average after the run and write `record` to `out` (default `bench/results/<benchmark>.json`)."
    record['load_average']['after'] = load_average()
    path = Path(out) if out else RESULTS / f"{record['benchmark']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + '\n')
    print(f'saved {path}')
    return path
