"""Check the model's contract from outside the notebooks, through the installed package only.

Run from any directory: `python tools/check_package.py`. It imports no notebook, jupyter or nbdev module. Every check
raises `SystemExit` with its message when it fails (not `assert`, which `python -O` strips).
"""
import sys

import torch

from vit_nbdev.model import ViTConfig, ViTForClassification, count_parameters


def check(ok: bool, message) -> None:
    "Stop with `message` (a string, or a function returning one) unless `ok`."
    if not ok: raise SystemExit(f"package check failed: {message() if callable(message) else message}")


def expect_error(fn, *fragments):
    "`fn()` must raise a ValueError whose message holds every fragment."
    try: fn()
    except ValueError as e:
        missing = [f for f in fragments if f not in str(e)]
        check(not missing, f"error {e!r} lacks {missing}")
        return str(e)
    check(False, f"no ValueError; expected one mentioning {fragments}")


torch.manual_seed(0)
for fast in (True, False):
    model = ViTForClassification(ViTConfig(use_faster_attention=fast)).eval()
    check(count_parameters(model) == 119_098, lambda: f"{count_parameters(model):,} parameters, not 119,098")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits, attentions = model(x)
        logits2, maps = model(x, output_attentions=True)
    check(logits.shape == (5, 10) and attentions is None, lambda: f"logits {tuple(logits.shape)}, not (5, 10)")
    check(len(maps) == 4 and all(tuple(m.shape) == (5, 4, 65, 65) for m in maps),
          lambda: f"attention maps {[tuple(m.shape) for m in maps]}, not 4 x (5, 4, 65, 65)")
    check(all(torch.allclose(m.sum(-1), torch.ones(5, 4, 65), atol=1e-5) for m in maps),
          'attention rows do not sum to 1')
    check(torch.allclose(logits, logits2, atol=1e-5), 'logits differ with output_attentions=True')
    # the last block computes [CLS] alone in `model(x)`: the same logits and gradients as computing every token
    y = torch.arange(5)
    grads = []
    for run in (lambda: model(x)[0], lambda: model.forward_head(model.forward_features(x)[0])):
        model.zero_grad()
        torch.nn.functional.cross_entropy(run(), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    check(all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads)), 'cls-only gradients differ')

n = count_parameters(ViTForClassification(ViTConfig().to_dict()))   # a plain dict works too
check(n == 119_098, f"{n:,} parameters from a config dict, not 119,098")
expect_error(lambda: ViTConfig(hidden_size=50), 'hidden_size', 'num_attention_heads')
expect_error(lambda: ViTConfig(image_size=30), 'image_size', 'patch_size')
expect_error(lambda: ViTConfig(intermediate_size=0), 'intermediate_size', 'positive')
expect_error(lambda: ViTConfig(hidden_dropout_prob=1.0), 'hidden_dropout_prob', '[0, 1)')
expect_error(lambda: ViTForClassification({'hidden_size': 48, 'depth': 4}), 'depth', 'allowed')
model = ViTForClassification()
expect_error(lambda: model(torch.randn(2, 1, 32, 32)), '(B, 3, 32, 32)', '(2, 1, 32, 32)')
expect_error(lambda: model(torch.randn(2, 3, 64, 64)), '(B, 3, 32, 32)', '(2, 3, 64, 64)')
expect_error(lambda: model(torch.randn(3, 32, 32)), '(B, 3, 32, 32)', '(3, 32, 32)')
tools = [m for m in sys.modules if m.split('.')[0] in ('nbdev', 'execnb', 'jupyter_client', 'ipykernel', 'IPython')]
check(not tools, f'the package imported a notebook tool at run time: {sorted(tools)[:5]}')
print('package check: parameters, shapes, attention maps and errors hold (119,098 parameters)')
