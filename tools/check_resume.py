"""Crash check: `kill -9` a `vit_train` run after epoch K, resume it, and compare with an uninterrupted run.

    python tools/check_resume.py [--epochs 4] [--kill-after 2] [--delay 5] [--nproc N [--kill-rank R]]
                                 [--resume-nproc M] -- VIT_TRAIN_ARGS...

e.g. `python tools/check_resume.py -- --data-dir ~/cifar10 --threads 2` or
`python tools/check_resume.py -- --dataset imagefolder --data-dir my_images`.
It trains `--epochs` epochs uninterrupted, then trains again and sends SIGKILL `--delay` seconds after epoch
`--kill-after` was committed (so the kill lands in the middle of the next epoch, or of its files being written),
then runs the same command with `--resume`. It prints both metrics and exits 0 only if they are identical.

With `--nproc N` (N > 1) every run is `torchrun --standalone --nproc-per-node N -m vit_nbdev.train`, and the SIGKILL
goes to one training process, rank `--kill-rank` (torchrun then stops the others). `--resume-nproc M` resumes on M
processes instead: the metrics then agree up to floating-point summation order, and the largest relative difference
is printed (exit 0 if it is below 1e-3).
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path


def vit_train(nproc: int) -> list:
    "The command that starts `vit_train` on `nproc` processes."
    if nproc == 1: return [sys.executable, '-m', 'vit_nbdev.train']
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', str(nproc),
            '-m', 'vit_nbdev.train']


def committed_epoch(exp_dir: Path) -> int:
    "The last epoch `metrics.json` names (0 if none yet)."
    try: return json.loads((exp_dir / 'metrics.json').read_text()).get('epoch', 0)
    except (FileNotFoundError, json.JSONDecodeError): return 0


def metrics(exp_dir: Path) -> dict:
    m = json.loads((exp_dir / 'metrics.json').read_text())
    return {k: m[k] for k in ('train_losses', 'test_losses', 'accuracies')}


def rank_pid(launcher_pid: int, rank: int) -> int:
    "The process id of training process `rank` among the children of torchrun's process `launcher_pid`."
    children = Path(f'/proc/{launcher_pid}/task/{launcher_pid}/children').read_text().split()
    for pid in children:
        env = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
        if f'RANK={rank}'.encode() in env: return int(pid)
    raise RuntimeError(f'no process of rank {rank} among {children}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--kill-after', type=int, default=2, help='kill once this epoch is committed')
    p.add_argument('--delay', type=float, default=5.0, help='seconds between that commit and the kill')
    p.add_argument('--nproc', type=int, default=1, help='processes per run (torchrun when > 1)')
    p.add_argument('--kill-rank', type=int, default=0, help='with --nproc: the rank that gets the SIGKILL')
    p.add_argument('--resume-nproc', type=int, default=None, help='processes of the resumed run (default: --nproc)')
    p.add_argument('train_args', nargs=argparse.REMAINDER, help='arguments for vit_train (after --)')
    a = p.parse_args()
    if not 0 < a.kill_after < a.epochs: sys.exit('--kill-after must be between 0 and --epochs')
    if not 0 <= a.kill_rank < a.nproc: sys.exit('--kill-rank must be between 0 and --nproc - 1')
    resume_nproc = a.resume_nproc or a.nproc
    extra = [x for x in a.train_args if x != '--']
    with tempfile.TemporaryDirectory() as out:
        def cmd(name, nproc, *more):
            return vit_train(nproc) + ['--exp-name', name, '--epochs', str(a.epochs), '--out-dir', out,
                                       '--no-progress', *extra, *more]
        t = time.perf_counter()
        subprocess.run(cmd('uninterrupted', a.nproc), check=True, stdout=subprocess.DEVNULL)
        print(f'uninterrupted run on {a.nproc} process(es): {a.epochs} epochs in {time.perf_counter() - t:.0f} s')

        exp = Path(out) / 'killed'
        proc = subprocess.Popen(cmd('killed', a.nproc), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while committed_epoch(exp) < a.kill_after:
            if proc.poll() is not None:
                sys.exit(f'the run ended (exit code {proc.returncode}) before epoch {a.kill_after}')
            time.sleep(0.05)
        time.sleep(a.delay)
        victim = proc.pid if a.nproc == 1 else rank_pid(proc.pid, a.kill_rank)
        os.kill(victim, signal.SIGKILL)
        err = proc.communicate()[1]
        who = 'the process' if a.nproc == 1 else f'rank {a.kill_rank} (pid {victim})'
        print(f'killed (SIGKILL) {who} {a.delay} s after epoch {committed_epoch(exp)} was committed; '
              f'the run exited with code {proc.returncode}; files left: {sorted(f.name for f in exp.iterdir())}')
        if a.nproc > 1:
            lines = [x for x in err.splitlines() if 'exitcode' in x or 'SIGKILL' in x or 'Signal' in x]
            print('torchrun said:', *(f'  {x.strip()}' for x in lines[:4]), sep='\n')
        done = subprocess.run(cmd('killed', resume_nproc, '--resume'), check=True, capture_output=True, text=True)
        print(f'resumed on {resume_nproc} process(es):', *(f'  {x}' for x in done.stdout.splitlines()), sep='\n')

        ref, res = metrics(Path(out) / 'uninterrupted'), metrics(exp)
    for k in ref:
        print(f'{k:13s} uninterrupted {ref[k]}\n{"":13s} resumed       {res[k]}')
    if resume_nproc == a.nproc:
        same = ref == res
        print('metrics identical' if same else 'METRICS DIFFER')
        sys.exit(0 if same else 1)
    rel = max(abs(x - y) / max(abs(x), 1e-12) for k in ref for x, y in zip(ref[k], res[k]))
    print(f'resumed on another number of processes: largest relative difference {rel:.2e}')
    sys.exit(0 if rel < 1e-3 else 1)


if __name__ == '__main__':
    main()
