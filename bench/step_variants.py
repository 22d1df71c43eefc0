"""One training step of the seed model (batch 256: forward, loss, backward, AdamW) done several ways, interleaved.

    python bench/step_variants.py [--threads 2] [--reps 15] [--variants flash,math,...] [--out F]

The reference recipe's step (`AdamW(lr=1e-2, weight_decay=1e-2)`, cross-entropy, random images: the data pipeline is
`bench/epoch.py`'s business), and the same step changed in one way:
- attention: `flash` is `F.scaled_dot_product_attention` as the model calls it (PyTorch picks its CPU flash kernel),
  `math` the same call inside `sdpa_kernel(SDPBackend.MATH)`, `explicit` `softmax(q kᵀ / √d) v` written out: the
  model's `output_attentions` path (which also keeps the maps, and computes every token in the last block);
- `micro64`, `micro32`: the batch in pieces of 64 or 32 images, their gradients added up (`Trainer(micro_batch=)`);
- `fused_adamw`: `AdamW(fused=True)`, one kernel for the whole update;
- `bf16`: the forward pass under `torch.autocast('cpu', torch.bfloat16)`;
- `compile`: `torch.compile(model)` (its compilation is in the warm-up, not in the times).
Every variant gets its own model and optimiser from the same seed; each repetition runs them all once, in turn, so
that a change of machine load touches every variant alike. Prints the median and minimum milliseconds and each
median relative to `flash`, and saves them in `bench/results/step_variants.json` with the machine and load average.
"""
import argparse
import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vit_nbdev.model import ViTForClassification

import record

VARIANTS = ('flash', 'math', 'explicit', 'micro64', 'micro32', 'fused_adamw', 'bf16', 'compile')


def make_step(variant: str, x, y):
    "A function running one training step of `variant` on images `x`, labels `y`."
    torch.manual_seed(0)
    model = ViTForClassification()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2, fused=variant == 'fused_adamw')
    forward = torch.compile(model) if variant == 'compile' else model
    piece = {'micro64': 64, 'micro32': 32}.get(variant, len(x))
    def context():
        if variant == 'math': return sdpa_kernel(SDPBackend.MATH)
        if variant == 'bf16': return torch.autocast('cpu', dtype=torch.bfloat16)
        return contextlib.nullcontext()
    def step():
        opt.zero_grad(set_to_none=True)
        for xs, ys in zip(x.split(piece), y.split(piece)):
            with context(): logits = forward(xs, output_attentions=variant == 'explicit')[0]
            (F.cross_entropy(logits.float(), ys) * (len(ys) / len(y))).backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--reps', type=int, default=15)
    p.add_argument('--variants', default=','.join(VARIANTS))
    p.add_argument('--out', default=None, help='where to save the results (default bench/results/step_variants.json)')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rec = record.header('step_variants', torch.device('cpu'), record.load_average())
    x, y = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))
    steps = {v: make_step(v, x, y) for v in a.variants.split(',')}
    t = record.time_interleaved(steps, a.reps, warmup=2)                 # the warm-up compiles, for `compile`
    res = {k: {'median_ms': round(1000 * v[len(v) // 2], 1), 'min_ms': round(1000 * v[0], 1)} for k, v in t.items()}
    for k, v in res.items():
        v['relative'] = round(v['median_ms'] / res['flash']['median_ms'], 3) if 'flash' in res else None
        print(f"{k:12} median {v['median_ms']:6.1f} ms  min {v['min_ms']:6.1f} ms  {v['relative']}x")
    rec.update(settings={'batch_size': 256, 'threads': a.threads, 'reps': a.reps}, results=res)
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
