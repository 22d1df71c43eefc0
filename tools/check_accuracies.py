"""Evaluate every committed experiment from a fresh interpreter that imports only `vit_nbdev.evaluation`.

Usage: python tools/check_accuracies.py [NAME ...]

For each experiment under `experiments/` with weights: `evaluate_experiment` (chapter 6a, what `vit_evaluate` runs) on
the CPU, with the experiment's own predictor (which a later chapter may define: the registries must find it without
the caller importing that chapter). A run that was evaluated on the whole test set recorded its last accuracy in
`metrics.json`; the evaluation must reproduce it exactly, with the batch size the run evaluated in. Runs evaluated on
a held-out part of the training set or a sample of the test set must load and find their predictor.
"""
import json
import sys
import time
from pathlib import Path

from vit_nbdev.evaluation import evaluate_experiment, experiment_predictor, load_experiment  # the only import

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / 'experiments'


def main(names: list) -> int:
    names = names or sorted(p.parent.name for p in EXPERIMENTS.glob('*/model_final.safetensors'))
    problems = []
    for name in names:
        d = EXPERIMENTS / name
        config, metrics = (json.loads((d / f).read_text()) for f in ('config.json', 'metrics.json'))
        s = config['settings']
        t0, recorded = time.perf_counter(), metrics['accuracies'][-1]
        whole = not s['holdout'] and not s['test_sample_size'] and s['dataset'] == 'cifar10'
        if not whole:                # recorded on other images: loaded and its predictor found, not re-evaluated
            load_experiment(name, EXPERIMENTS, device='cpu'); experiment_predictor(config)
            print(f"{name:22} {config['training']['predictor']:10} loads; its {recorded:.4%} was recorded on "
                  f"{'held-out images' if s['holdout'] else 'a test sample'}", flush=True)
            continue
        ev = evaluate_experiment(name, out_dir=EXPERIMENTS, device='cpu', save=False, batch_size=s['batch_size'])
        same = ev.accuracy == recorded
        print(f"{name:22} {config['training']['predictor']:10} test accuracy {ev.accuracy:.4%}, recorded "
              f"{recorded:.4%}: {'recorded exactly' if same else 'DIFFERS from the recorded'}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if not same: problems.append(name)
    loaded = sorted(m for m in sys.modules if m.startswith('vit_nbdev.'))
    print(f"modules loaded to find every predictor: {', '.join(loaded)}")
    if problems: print(f"accuracies: {', '.join(problems)} do not reproduce their recorded accuracy"); return 1
    print(f"accuracies: {len(names)} experiments evaluated; every whole-test-set run reproduces its record")
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
