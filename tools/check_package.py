"""Check the model's contract from outside the notebooks, through the installed package only.

Run from any directory: `python tools/check_package.py`. It imports no notebook, jupyter or nbdev module.
"""
import sys

import torch

from vit_nbdev.model import ViTConfig, ViTForClassification, count_parameters


def expect_error(fn, *fragments):
    try: fn()
    except ValueError as e:
        missing = [f for f in fragments if f not in str(e)]
        assert not missing, f"error {e!r} lacks {missing}"
        return str(e)
    raise AssertionError(f"no ValueError; expected one mentioning {fragments}")

torch.manual_seed(0)
for fast in (True, False):
    model = ViTForClassification(ViTConfig(use_faster_attention=fast)).eval()
    assert count_parameters(model) == 119_098, count_parameters(model)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits, attentions = model(x)
        logits2, maps = model(x, output_attentions=True)
    assert logits.shape == (5, 10) and attentions is None
    assert len(maps) == 4 and all(tuple(m.shape) == (5, 4, 65, 65) for m in maps)
    assert all(torch.allclose(m.sum(-1), torch.ones(5, 4, 65), atol=1e-5) for m in maps)
    assert torch.allclose(logits, logits2, atol=1e-5)
    # the last block computes [CLS] alone in `model(x)`: the same logits and gradients as computing every token
    y = torch.arange(5)
    grads = []
    for run in (lambda: model(x)[0], lambda: model.forward_head(model.forward_features(x)[0])):
        model.zero_grad()
        torch.nn.functional.cross_entropy(run(), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads)), 'cls-only gradients differ'

assert count_parameters(ViTForClassification(ViTConfig().to_dict())) == 119_098  # a plain dict works too
expect_error(lambda: ViTConfig(hidden_size=50), 'hidden_size', 'num_attention_heads')
expect_error(lambda: ViTConfig(image_size=30), 'image_size', 'patch_size')
expect_error(lambda: ViTConfig(intermediate_size=0), 'intermediate_size', 'positive')
expect_error(lambda: ViTConfig(hidden_dropout_prob=1.0), 'hidden_dropout_prob', '[0, 1)')
expect_error(lambda: ViTForClassification({'hidden_size': 48, 'depth': 4}), 'depth', 'allowed')
model = ViTForClassification()
expect_error(lambda: model(torch.randn(2, 1, 32, 32)), '(B, 3, 32, 32)', '(2, 1, 32, 32)')
expect_error(lambda: model(torch.randn(2, 3, 64, 64)), '(B, 3, 32, 32)', '(2, 3, 64, 64)')
expect_error(lambda: model(torch.randn(3, 32, 32)), '(B, 3, 32, 32)', '(3, 32, 32)')
assert not any(m.split('.')[0] in ('nbdev', 'execnb', 'jupyter_client', 'ipykernel', 'IPython') for m in sys.modules), \
    'the package imported a notebook tool at run time'
print('package check: parameters, shapes, attention maps and errors hold (119,098 parameters)')
