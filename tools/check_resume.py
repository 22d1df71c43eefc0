"""Crash check: `kill -9` a `vit_train` run after epoch K, resume it, and compare with an uninterrupted run.

    python tools/check_resume.py [--epochs 4] [--kill-after 2] [--delay 0] [--nproc N [--kill-rank R]]
                                 [--resume-nproc M] [--tolerance RTOL] [--no-deterministic] -- VIT_TRAIN_ARGS...

e.g. `python tools/check_resume.py -- --data-dir ~/cifar10 --threads 2` or
`python tools/check_resume.py -- --dataset imagefolder --data-dir my_images --batch-size 8 --threads 1`.
It trains `--epochs` epochs uninterrupted, then trains again and sends SIGKILL `--delay` seconds after epoch
`--kill-after` was committed (default 0: at once, so the kill lands early in the next epoch even where an epoch takes
a fraction of a second), then runs the same command with `--resume`. It fails (exit code 1) unless
- the kill interrupted the run: the process was still running, the epoch committed at the kill is below `--epochs`
  and no `model_final.safetensors` was written;
- the resumed run resumed from that epoch K: it prints `resuming DIR after epoch K of N`, trains exactly the epochs
  K+1..N, and its metrics start with the K epochs committed before the kill;
- the resumed run's train losses, test losses and accuracies equal the uninterrupted run's, exactly (or within
  `--tolerance`, a relative difference).

**On a GPU** (`--device cuda...` among the arguments, or no `--device` where CUDA is available) every run gets
`vit_train --deterministic` (PyTorch's deterministic algorithms, and `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the runs'
environment): the attention and convolution backward passes are otherwise free to add up in any order, and two runs
of the same command differ in their last bits. With `--no-deterministic`, or a `vit_train` without that setting, the
metrics are compared within `--tolerance` (default there 1e-3). The first line printed names the mode.

Without `--nproc`, each run is the plain `vit_train` command, in whatever layout it chooses: on a CPU with several
cores it starts one process per core itself (chapter 8's `launch_processes`); the SIGKILL goes to the command, and
the check fails unless the processes it started end with it. The processes a run used are read from its config.json.

With `--nproc N` (N > 1) every run is `torchrun --standalone --nproc-per-node N -m vit_nbdev.commands`, and the SIGKILL
goes to one training process, rank `--kill-rank` (torchrun then stops the others). `--resume-nproc M` resumes on M
processes instead: the metrics then agree up to floating-point summation order, so they are compared within a
relative 1e-3 by default (early epochs; rounding differences grow with every step).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOSE = 1e-3   # the default relative tolerance where the runs cannot be bit-identical

def vit_train(nproc: int) -> list:
    "The command that starts `vit_train` on `nproc` processes (torchrun when more than one)."
    if nproc == 1:
        return [sys.executable, '-c', 'import sys; from vit_nbdev.commands import vit_train; sys.exit(vit_train())']
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', str(nproc),
            '-m', 'vit_nbdev.commands']
KEYS = ('train_losses', 'test_losses', 'accuracies')


def read_metrics(exp_dir: Path) -> dict:
    "The experiment's metrics.json ({} if there is none yet, or it cannot be read)."
    try: return json.loads((exp_dir / 'metrics.json').read_text())
    except (FileNotFoundError, json.JSONDecodeError): return {}


def children(pid: int) -> list:
    "The process ids of the children of process `pid` (the training processes `vit_train` started itself)."
    try: return [int(c) for c in Path(f'/proc/{pid}/task/{pid}/children').read_text().split()]
    except OSError: return []


def alive(pid: int) -> bool:
    "Whether process `pid` still runs (a zombie counts as ended)."
    try: return Path(f'/proc/{pid}/stat').read_text().split(') ')[-1][0] != 'Z'
    except OSError: return False


def recorded_procs(exp_dir: Path) -> int:
    "How many processes trained the run, as its config.json records (1 where it does not say)."
    try: return json.loads((exp_dir / 'config.json').read_text())['settings'].get('procs') or 1
    except (OSError, KeyError, json.JSONDecodeError): return 1


def committed_epoch(exp_dir: Path) -> int:
    "The last epoch `metrics.json` names (0 if none yet)."
    return read_metrics(exp_dir).get('epoch', 0)


def trained_epochs(stdout: str) -> list:
    "The epochs a `vit_train` run trained, from its `epoch  k/N ...` lines."
    return [int(k) for k in re.findall(r'^epoch\s+(\d+)/\d+\s', stdout, flags=re.M)]


def rank_pid(launcher_pid: int, rank: int) -> int:
    "The process id of training process `rank` among the children of torchrun's process `launcher_pid`."
    for pid in children(launcher_pid):
        env = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
        if f'RANK={rank}'.encode() in env: return int(pid)
    raise RuntimeError(f'no process of rank {rank} among {children(launcher_pid)}')


def train_device(train_args: list) -> str:
    "The device `vit_train` will use: its `--device` argument, else its default (the GPU when there is one)."
    for i, x in enumerate(train_args):
        if x == '--device' and i + 1 < len(train_args): return train_args[i + 1]
        if x.startswith('--device='): return x.split('=', 1)[1]
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def has_deterministic(cmd: list) -> bool:
    "Whether this `vit_train` knows `--deterministic` (it says so in its `--help`)."
    r = subprocess.run(cmd + ['--help'], capture_output=True, text=True)
    return '--deterministic' in r.stdout


def comparison_mode(a, extra: list, resume_nproc: int) -> tuple:
    "(extra vit_train arguments, extra environment, relative tolerance, the mode in words) for this check."
    device = train_device(extra)
    on_gpu = device.startswith('cuda')
    args, env, words = [], {}, [f'device {device}']
    if on_gpu and a.deterministic and '--deterministic' not in extra:
        if has_deterministic(vit_train(1)):
            args, env = ['--deterministic'], {'CUBLAS_WORKSPACE_CONFIG': ':4096:8'}
        else: words.append('WARNING: this vit_train has no --deterministic')
    deterministic = not on_gpu or bool(args) or '--deterministic' in extra
    words.append(('deterministic algorithms (vit_train --deterministic)' if on_gpu else 'CPU kernels')
                 if deterministic else 'non-deterministic GPU kernels')
    tol = a.tolerance
    if tol is None: tol = 0.0 if deterministic and resume_nproc == a.nproc else LOOSE
    words.append('metrics compared exactly' if tol == 0 else f'metrics compared within a relative {tol:g}')
    return args, env, tol, words


def fail(msg: str):
    print(f'FAIL: {msg}', file=sys.stderr)
    sys.exit(1)


def train(cmd: list, env: dict = None) -> str:
    "Run a `vit_train` command to the end; return its stdout (fail with its output if it fails)."
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: fail(f'{" ".join(cmd)} exited with {r.returncode}:\n{r.stdout}{r.stderr}')
    return r.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--kill-after', type=int, default=2, help='kill once this epoch is committed')
    p.add_argument('--delay', type=float, default=0.0,
                   help='seconds between that commit and the kill (default 0: at once)')
    p.add_argument('--nproc', type=int, default=1, help='processes per run (torchrun when > 1)')
    p.add_argument('--kill-rank', type=int, default=0, help='with --nproc: the rank that gets the SIGKILL')
    p.add_argument('--resume-nproc', type=int, default=None, help='processes of the resumed run (default: --nproc)')
    p.add_argument('--tolerance', type=float, default=None,
                   help=f'relative difference allowed between the metrics (default: 0, exact, on the CPU or with '
                        f'deterministic GPU algorithms on the same number of processes; else {LOOSE:g})')
    p.add_argument('--no-deterministic', dest='deterministic', action='store_false',
                   help='on a GPU, do not pass --deterministic to vit_train (then compare within --tolerance)')
    p.add_argument('train_args', nargs=argparse.REMAINDER, help='arguments for vit_train (after --)')
    a = p.parse_args()
    if not 0 < a.kill_after < a.epochs: sys.exit('--kill-after must be between 0 and --epochs')
    if not 0 <= a.kill_rank < a.nproc: sys.exit('--kill-rank must be between 0 and --nproc - 1')
    resume_nproc = a.resume_nproc or a.nproc
    extra = [x for x in a.train_args if x != '--']
    more_args, more_env, tol, words = comparison_mode(a, extra, resume_nproc)
    print(f"mode: {'; '.join(words)}")
    extra += more_args
    env = {**os.environ, **more_env}
    with tempfile.TemporaryDirectory() as out:
        def cmd(name, *more, nproc=a.nproc):
            return vit_train(nproc) + ['--exp-name', name, '--epochs', str(a.epochs), '--out-dir', out,
                                       '--no-progress', *extra, *more]
        t = time.perf_counter()
        epochs = trained_epochs(train(cmd('uninterrupted'), env))
        if epochs != list(range(1, a.epochs + 1)): fail(f'the uninterrupted run trained epochs {epochs}')
        print(f'uninterrupted run: {a.epochs} epochs in {time.perf_counter() - t:.1f} s')

        # -- the killed run: SIGKILL `--delay` s after epoch `--kill-after` is committed
        exp = Path(out) / 'killed'
        log = Path(out) / 'killed.log'
        with open(log, 'w') as f: proc = subprocess.Popen(cmd('killed'), stdout=f, stderr=subprocess.STDOUT, env=env)
        while committed_epoch(exp) < a.kill_after:
            if proc.poll() is not None:
                fail(f'the run ended (exit code {proc.returncode}) before epoch {a.kill_after}:\n{log.read_text()}')
            time.sleep(0.005)
        time.sleep(a.delay)
        running = proc.poll() is None   # (poll reaps a process that ended: only a running one can be killed)
        victim = (proc.pid if a.nproc == 1 else rank_pid(proc.pid, a.kill_rank)) if running else None
        started = children(proc.pid) if running and a.nproc == 1 else []   # processes vit_train started itself
        if running: os.kill(victim, signal.SIGKILL)
        proc.wait()
        deadline = time.perf_counter() + 10
        while any(alive(c) for c in started) and time.perf_counter() < deadline: time.sleep(0.05)
        if any(alive(c) for c in started):
            fail(f'the processes {[c for c in started if alive(c)]} that vit_train started outlived its SIGKILL')
        if started: print(f'the {len(started)} processes vit_train had started ended with it')
        before = read_metrics(exp)   # what the kill left committed
        k = before.get('epoch', 0)
        who = 'the process' if a.nproc == 1 else f'rank {a.kill_rank} (pid {victim})'
        what = f'killed (SIGKILL) {who}' if running else f'the run had already ended (exit code {proc.returncode})'
        print(f'{a.delay:g} s after epoch {a.kill_after} was committed: {what}; epoch {k} committed; '
              f'files left: {sorted(f.name for f in exp.iterdir())}')
        if running and a.nproc > 1: print(f'torchrun exited with code {proc.returncode}')
        if not running and proc.returncode != 0: fail(f'the run failed on its own:\n{log.read_text()}')
        if not running or k >= a.epochs or (exp / 'model_final.safetensors').exists():
            fail('the kill came after the run finished: nothing was interrupted; use a smaller --delay or more epochs')

        # -- the resumed run: must say it resumes after epoch k, and train only the epochs after it
        stdout = train(cmd('killed', '--resume', nproc=resume_nproc), env)
        said = re.findall(r'^resuming (.+) after epoch (\d+) of (\d+)$', stdout, flags=re.M)
        print(f'resumed run said: {"; ".join(f"resuming {d} after epoch {e} of {n}" for d, e, n in said) or "nothing"}')
        if [(Path(d).resolve(), int(e), int(n)) for d, e, n in said] != [(exp.resolve(), k, a.epochs)]:
            fail(f'the resumed run did not say `resuming {exp} after epoch {k} of {a.epochs}` (once)')
        epochs = trained_epochs(stdout)
        print(f'resumed run trained epochs {epochs}')
        if epochs != list(range(k + 1, a.epochs + 1)):
            fail(f'the resumed run trained epochs {epochs}, not {k + 1}..{a.epochs}')
        ref, res = read_metrics(Path(out) / 'uninterrupted'), read_metrics(exp)
        procs = recorded_procs(exp)

    problems, same = [], (lambda x, y: x == y) if tol == 0 else (lambda x, y: close(x, y, tol))
    for key in KEYS:
        print(f'{key:13s} uninterrupted {ref[key]}\n{"":13s} resumed       {res[key]}')
        if len(res[key]) != a.epochs: problems.append(f'{key}: {len(res[key])} entries, not {a.epochs}')
        if res[key][:k] != before[key]: problems.append(f'{key}: the first {k} differ from those committed at the kill')
        if not same(res[key], ref[key]): problems.append(f'{key}: resumed and uninterrupted runs differ')
    if problems: fail('; '.join(problems))
    how = 'are identical to' if tol == 0 else f'agree (within a relative {tol:g}) with'
    print(f'PASS: killed after epoch {k} of {a.epochs} was committed, resumed from it on {procs} process(es), '
          f'and the train losses, test losses and accuracies {how} the uninterrupted run')


def close(x: list, y: list, rtol: float = 1e-3) -> bool:
    "Equal up to a relative `rtol`: runs on other numbers of processes sum in another order."
    return len(x) == len(y) and all(abs(u - v) <= rtol * max(abs(u), abs(v), 1e-12) for u, v in zip(x, y))


if __name__ == '__main__':
    main()
