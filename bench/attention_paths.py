"""One training step of the seed model (batch 256: forward, loss, backward) with three attention paths, interleaved.

    python bench/attention_paths.py [--threads 1] [--reps 12]

- flash: `F.scaled_dot_product_attention` as the model calls it (PyTorch picks its CPU flash kernel);
- math: the same call inside `sdpa_kernel(SDPBackend.MATH)`, PyTorch's unfused reference path;
- explicit: `softmax(q kᵀ / √d) v` written out, as the model's `output_attentions` path computes it.

At hidden size 48 the heads have 12 dimensions and a sequence 65 tokens: the question is whether a kernel made for
long sequences and large heads is still the fastest there. Prints the median and minimum milliseconds of each and
saves them in `bench/results/attention_paths.json`.
"""
import argparse, time
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from vit_nbdev.model import ViTForClassification
import vit_nbdev.attention as A
import record


def explicit(q, k, v, dropout_p=0.0, **kw):
    return (q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)).softmax(-1) @ v


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=1); p.add_argument('--reps', type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    rec = record.header('attention_paths', torch.device('cpu'), record.load_average())
    m = ViTForClassification(); x = torch.randn(256, 3, 32, 32); y = torch.randint(0, 10, (256,))
    sdpa = F.scaled_dot_product_attention
    def step():
        F.cross_entropy(m(x)[0], y).backward(); m.zero_grad()
    def flash(): A.F.scaled_dot_product_attention = sdpa; step()
    def math_():
        A.F.scaled_dot_product_attention = sdpa
        with sdpa_kernel(SDPBackend.MATH): step()
    def expl():
        A.F.scaled_dot_product_attention = explicit; step()
    paths = {'flash': flash, 'math': math_, 'explicit': expl}
    for f in paths.values(): f()                                          # warm-up
    t = {k: [] for k in paths}
    for _ in range(a.reps):
        for k, f in paths.items():
            t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
    A.F.scaled_dot_product_attention = sdpa
    res = {}
    for k, v in t.items():
        v.sort(); res[k] = {'median_ms': round(1000 * v[len(v) // 2], 1), 'min_ms': round(1000 * v[0], 1)}
        print(f"{k:9} median {res[k]['median_ms']:.1f} ms  min {res[k]['min_ms']:.1f} ms")
    rec.update(settings={'batch_size': 256, 'threads': a.threads, 'reps': a.reps}, results=res)
    record.save(rec)


if __name__ == '__main__':
    main()
