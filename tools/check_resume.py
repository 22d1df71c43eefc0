"""Crash check: `kill -9` a `vit_train` run after epoch K, resume it, and compare with an uninterrupted run.

    python tools/check_resume.py [--epochs 4] [--kill-after 2] [--delay 5] -- VIT_TRAIN_ARGS...

e.g. `python tools/check_resume.py -- --data-dir ~/cifar10 --threads 2` or
`python tools/check_resume.py -- --dataset imagefolder --data-dir my_images`.
It trains `--epochs` epochs uninterrupted, then trains again and sends SIGKILL `--delay` seconds after epoch
`--kill-after` was committed (so the kill lands in the middle of the next epoch, or of its files being written),
then runs the same command with `--resume`. It prints both metrics and exits 0 only if they are identical.
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path

VIT_TRAIN = [sys.executable, '-c', 'import sys; from vit_nbdev.train import vit_train; sys.exit(vit_train())']


def committed_epoch(exp_dir: Path) -> int:
    "The last epoch `metrics.json` names (0 if none yet)."
    try: return json.loads((exp_dir / 'metrics.json').read_text()).get('epoch', 0)
    except (FileNotFoundError, json.JSONDecodeError): return 0


def metrics(exp_dir: Path) -> dict:
    m = json.loads((exp_dir / 'metrics.json').read_text())
    return {k: m[k] for k in ('train_losses', 'test_losses', 'accuracies')}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--kill-after', type=int, default=2, help='kill once this epoch is committed')
    p.add_argument('--delay', type=float, default=5.0, help='seconds between that commit and the kill')
    p.add_argument('train_args', nargs=argparse.REMAINDER, help='arguments for vit_train (after --)')
    a = p.parse_args()
    if not 0 < a.kill_after < a.epochs: sys.exit('--kill-after must be between 0 and --epochs')
    extra = [x for x in a.train_args if x != '--']
    with tempfile.TemporaryDirectory() as out:
        def cmd(name, *more):
            return VIT_TRAIN + ['--exp-name', name, '--epochs', str(a.epochs), '--out-dir', out, '--no-progress', *extra, *more]
        t = time.perf_counter()
        subprocess.run(cmd('uninterrupted'), check=True, stdout=subprocess.DEVNULL)
        print(f'uninterrupted run: {a.epochs} epochs in {time.perf_counter() - t:.0f} s')

        exp = Path(out) / 'killed'
        proc = subprocess.Popen(cmd('killed'), stdout=subprocess.DEVNULL)
        while committed_epoch(exp) < a.kill_after:
            if proc.poll() is not None: sys.exit(f'the run ended (exit code {proc.returncode}) before epoch {a.kill_after}')
            time.sleep(0.05)
        time.sleep(a.delay)
        os.kill(proc.pid, signal.SIGKILL); proc.wait()
        print(f'killed (SIGKILL) {a.delay} s after epoch {committed_epoch(exp)} was committed; '
              f'files left: {sorted(f.name for f in exp.iterdir())}')
        subprocess.run(cmd('killed', '--resume'), check=True, stdout=subprocess.DEVNULL)

        ref, res = metrics(Path(out) / 'uninterrupted'), metrics(exp)
    for k in ref:
        print(f'{k:13s} uninterrupted {ref[k]}\n{"":13s} resumed       {res[k]}')
    same = ref == res
    print('metrics identical' if same else 'METRICS DIFFER')
    sys.exit(0 if same else 1)


if __name__ == '__main__':
    main()
