"""Where the time of one training step of the seed model goes: `torch.profiler` over a few steps, by operator.

    python bench/profile_step.py [--device cpu|cuda] [--batch-size 256] [--steps 5] [--threads N] [--top 15] [--out F]

One step is what the `Trainer` does per batch with the reference recipe: forward (the fast path, the last block
computing [CLS] only), cross-entropy, backward, AdamW. The batch is random images (the data pipeline is
`bench/epoch.py`'s business). After two warm-up steps, `--steps` steps run under the profiler; it prints the
operators that took the most time (self time: excluding the operators they call) and groups them into kinds of work
(matrix products, attention, normalisation, element-wise, optimiser), and saves them with the machine, the versions
and the load average in `bench/results/profile_step.json`. It asserts nothing.
"""
import argparse

import torch
from torch import nn, optim
from torch.profiler import ProfilerActivity, profile

from vit_nbdev.model import ViTForClassification, resolve_device

import record  # bench/ is on the path when this script runs

KINDS = {   # a kind of work -> substrings of the operator names it covers (the first match wins)
    'matrix products (linear, conv)': ('addmm', 'mm', 'bmm', 'matmul', 'linear', 'conv', 'baddbmm'),
    'attention (scaled_dot_product_attention)': ('attention', 'softmax', '_scaled_dot'),
    'layer norm': ('layer_norm', 'native_layer_norm'),
    'GELU': ('gelu',),
    'optimiser (AdamW)': ('_foreach', 'adam', 'lerp', 'addcdiv', 'addcmul', 'sqrt'),
    'loss': ('cross_entropy', 'nll_loss', 'log_softmax'),
}


def kind(name: str) -> str:
    "The kind of work an operator named `name` does ('other' when none of `KINDS` matches)."
    n = name.lower()
    return next((k for k, keys in KINDS.items() if any(s in n for s in keys)), 'other (copies, reshapes, sums, ...)')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default=None)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--top', type=int, default=15)
    p.add_argument('--out', default=None)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    rec = record.header('profile_step', device, record.load_average())
    torch.manual_seed(0)
    model = ViTForClassification().to(device).train()
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    x = torch.randn(a.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (a.batch_size,), device=device)
    loss_func = nn.CrossEntropyLoss()

    def step():
        loss = loss_func(model(x)[0], y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()

    for _ in range(2): step()                                      # warm-up: allocations, kernels chosen
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with record.Clock() as clock, profile(activities=activities) as prof:
        for _ in range(a.steps): step()
        if device.type == 'cuda': torch.cuda.synchronize()
    events = prof.key_averages()
    attr = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    total = sum(getattr(e, attr) for e in events)
    ops = sorted(({'op': e.key, 'ms_per_step': getattr(e, attr) / 1e3 / a.steps, 'calls_per_step': e.count / a.steps}
                  for e in events), key=lambda o: -o['ms_per_step'])
    by_kind = {}
    for o in ops: by_kind[kind(o['op'])] = by_kind.get(kind(o['op']), 0) + o['ms_per_step']
    step_ms = 1e3 * clock.wall / a.steps
    print(f"one training step, batch {a.batch_size}, {device}, {torch.get_num_threads()} thread(s): "
          f"{step_ms:.1f} ms wall clock (profiled; the profiler adds a little)")
    print(f"{'kind of work':44} {'ms/step':>8} {'share':>6}")
    for k, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{k:44} {ms:8.2f} {ms / (total / 1e3 / a.steps):6.1%}")
    print(f"\n{'operator (self time)':44} {'ms/step':>8} {'calls':>6}")
    for o in ops[:a.top]: print(f"{o['op'][:44]:44} {o['ms_per_step']:8.2f} {o['calls_per_step']:6.0f}")
    rec.update(settings={'batch_size': a.batch_size, 'steps': a.steps, 'threads': torch.get_num_threads()},
               results={'step_ms': round(step_ms, 2), 'by_kind_ms': {k: round(v, 3) for k, v in by_kind.items()},
                        'top_ops': [{**o, 'ms_per_step': round(o['ms_per_step'], 3)} for o in ops[:a.top]]})
    record.save(rec, a.out)


if __name__ == '__main__':
    main()
