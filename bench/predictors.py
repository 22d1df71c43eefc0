"""Test accuracy of each committed final run with each predictor, including those its run did not record.

    python bench/predictors.py [--exp-names fast100 fast_budget ...] [--threads N] [--out F]

A run records its test accuracy with its own recipe's predictor only (`config.json`'s `training`); chapter 7 and the
README also state the accuracies of the same weights with the other predictors ('plain': one forward pass, 'flip':
test-time mirror images, 'flip_shift': mirrors and one-pixel shifts). This script measures them on the whole CIFAR-10
test set (10,000 images) and saves them in `bench/results/predictors.json`, with the accuracy each run recorded, so
that those figures come from a committed file. The accuracies do not depend on the machine (up to floating-point
rounding, a few images in ten thousand at most); the time does.
"""
import argparse
import time

import torch

import vit_nbdev.faster  # noqa: F401  registers the 'flip_shift' predictor
from vit_nbdev.data import load_cifar10
from vit_nbdev.evaluation import evaluation_of, experiment_predictor
from vit_nbdev.experiments import load_experiment

import record  # bench/ is on the path when this script runs

FINAL = ('reference100', 'modern50', 'fast20', 'fast30', 'fast100', 'fast_budget')   # chapter 7's final runs
PREDICTORS = ('plain', 'flip', 'flip_shift')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--exp-names', nargs='+', default=list(FINAL), help='committed experiments under experiments/')
    p.add_argument('--threads', type=int, default=None, help="CPU threads (default: PyTorch's, one per core)")
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/predictors.json)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device('cpu')
    rec = record.header('predictors', device, record.load_average())
    t0 = time.perf_counter()
    x, y, classes = load_cifar10(train=False)
    runs = {}
    for name in a.exp_names:
        config, model, metrics = load_experiment(name, record.RESULTS.parent.parent / 'experiments', device=device)
        acc = {q: round(evaluation_of(model, x, y, classes, predictor=q).accuracy, 4) for q in PREDICTORS}
        recorded = metrics['accuracies'][-1]
        runs[name] = {'predictor': experiment_predictor(config), 'recorded_accuracy': recorded, 'accuracy': acc}
        print(f"{name}: " + ', '.join(f"{q} {100 * v:.2f} %" for q, v in acc.items())
              + f" (recorded with {runs[name]['predictor']}: {100 * recorded:.2f} %)")
    rec.update(threads=torch.get_num_threads(), seconds=round(time.perf_counter() - t0, 1),
               settings={'dataset': 'cifar10 test set', 'images': len(y), 'predictors': list(PREDICTORS)},
               results=runs)
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
