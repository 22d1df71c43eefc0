"""Check `vit_export`'s ONNX files against PyTorch, run by ONNX Runtime, from outside the notebooks.

Usage: python tools/check_onnx.py [--out-dir DIR] [--images N] [EXP_NAME ...]
       (default: fast30 modern50 fast_budget, whose predictors are flip, plain and flip_shift; 1,000 images)

For each experiment: `vit_export` (the console script when installed) writes the file into a temporary folder; ONNX
Runtime runs it on the first N CIFAR-10 test images, then on batches of 1 and of 7 (the dynamic batch axis). Its logits
must be within 1e-4 of PyTorch's (the experiment's predictor on the normalised images, as `vit_evaluate` computes
them) with the same predicted class for every image. Prints the measured differences; exits 1 on a failure.
"""
import argparse
import configparser
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def vit_export_command() -> list:
    "The console script next to this Python (an installed package), else its function (settings.ini) via `-c`."
    script = Path(sys.executable).parent / 'vit_export'
    if script.is_file(): return [str(script)]
    ini = configparser.ConfigParser(); ini.read(ROOT / 'settings.ini')
    module, function = dict(s.split('=') for s in ini['DEFAULT']['console_scripts'].split())['vit_export'].split(':')
    return [sys.executable, '-c', f'import sys; from {module} import {function}; sys.exit({function}())']


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('experiments', nargs='*', default=['fast30', 'modern50', 'fast_budget'])
    p.add_argument('--out-dir', default=str(ROOT / 'experiments'))
    p.add_argument('--images', type=int, default=1000)
    a = p.parse_args(argv)
    import numpy as np
    import torch

    from vit_nbdev.data import load_cifar10, normalize
    from vit_nbdev.evaluation import experiment_predictor
    from vit_nbdev.experiments import load_experiment
    from vit_nbdev.export import onnx_logits, onnx_session
    from vit_nbdev.training import PREDICTORS
    torch.set_num_threads(1)
    images, labels, _ = load_cifar10(train=False)
    pixels = images[:a.images]
    failed = []
    with tempfile.TemporaryDirectory(prefix='check_onnx-') as tmp:
        for name in a.experiments:
            path = Path(tmp) / f'{name}.onnx'
            run = subprocess.run([*vit_export_command(), '--exp-name', name, '--out-dir', a.out_dir,
                                  '--onnx', str(path)], capture_output=True, text=True, timeout=600)
            if run.returncode:
                failed.append(name); print(f'FAIL: vit_export {name}: {run.stderr.strip()}', file=sys.stderr); continue
            config, model, _ = load_experiment(name, a.out_dir, device='cpu')
            predictor = experiment_predictor(config)
            session, meta = onnx_session(path, threads=1)
            with torch.inference_mode(): ref = PREDICTORS[predictor](model, normalize(pixels)).numpy()   # (N, K)
            ours = onnx_logits(session, pixels)
            diff, same = float(np.abs(ours - ref).max()), int((ours.argmax(1) == ref.argmax(1)).sum())
            small = {b: float(np.abs(onnx_logits(session, pixels[:b]) - ref[:b]).max()) for b in (1, 7)}
            shapes = {b: onnx_logits(session, pixels[:b]).shape for b in (1, 7)}
            ok = (diff <= TOLERANCE and same == len(pixels) and max(small.values()) <= TOLERANCE
                  and meta['predictor'] == predictor and shapes == {b: (b, len(config['classes'])) for b in (1, 7)}
                  and meta['classes'] == config['classes'])
            print(f"onnx: {name} (predictor {meta['predictor']}): {len(pixels)} test images, max |logit difference| "
                  f"{diff:.1e}, {same} of {len(pixels)} same predictions, accuracy "
                  f"{(ours.argmax(1) == labels[:len(pixels)].numpy()).mean():.2%}; batch 1: {small[1]:.1e}, "
                  f"batch 7: {small[7]:.1e}" + ('' if ok else '  <- FAIL'))
            if not ok: failed.append(name)
    if failed:
        print(f"FAIL: onnx check: {', '.join(failed)} (tolerance {TOLERANCE:g})", file=sys.stderr)
        return 1
    print(f'onnx check: passed ({len(a.experiments)} experiments, tolerance {TOLERANCE:g})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
