"""Images per second of a training step and of evaluation, batch 256, AdamW, for three models of the seed's shape.

    python bench/throughput.py [--device cpu|cuda] [--batch-size 256] [--rounds 5] [--steps 10] [--threads N]

- `per-head`: vit_nbdev with the seed's per-head attention (`use_faster_attention=False`), run as the seed runs it
  (every token of every block), the reference's structure and work;
- `timm`: `timm.models.vision_transformer.VisionTransformer` of the same shape (a bench-only extra: `pip install timm`);
- `vit_nbdev, all tokens`: the fused model (fused qkv + `scaled_dot_product_attention`), also computing every token of
  every block: the same work as timm, a like-for-like comparison of the two implementations;
- `vit_nbdev fast path`: the fused model as `model(x)` runs it, the last block computing only the [CLS] token the head
  reads (same logits; chapter 5, "Only what the head reads").

The machine is shared, so the models are measured in interleaved rounds and the best round of each is reported
(the least disturbed one); the median is printed next to it. It prints numbers; it asserts nothing.
"""
import argparse, os, platform, statistics, time
import torch
from torch import nn, optim
from vit_nbdev.model import ViTConfig, ViTForClassification


class AllTokens(nn.Module):
    "A vit_nbdev model run as the seed runs it: every token of every block (`forward_features`), then the head."
    def __init__(self, model: ViTForClassification):
        super().__init__()
        self.model = model
    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x)[0]), None


def build_models(device):
    "The models to compare, by name, each freshly initialised on `device`."
    torch.manual_seed(0)
    models = {'per-head (seed structure)': AllTokens(ViTForClassification(ViTConfig(use_faster_attention=False)))}
    try:
        from timm.models.vision_transformer import VisionTransformer
        models['timm VisionTransformer'] = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=4,
                                                             num_heads=4, mlp_ratio=4, num_classes=10)
    except ImportError:
        print('timm is not installed (pip install timm): skipping it')
    models['vit_nbdev, all tokens (as timm)'] = AllTokens(ViTForClassification(ViTConfig()))
    models['vit_nbdev fast path'] = ViTForClassification(ViTConfig())
    return {k: m.to(device) for k, m in models.items()}


def logits_of(out):
    "vit_nbdev returns (logits, attentions); timm returns logits."
    return out[0] if isinstance(out, tuple) else out


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_train(model, x, y, steps, device):
    "Seconds for `steps` AdamW training steps on the batch (x, y)."
    model.train()
    opt, loss_func = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2), nn.CrossEntropyLoss()
    def step():
        loss = loss_func(logits_of(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step(); step(); sync(device)                     # warm-up: allocations, optimizer state
    t = time.perf_counter()
    for _ in range(steps): step()
    sync(device)
    return time.perf_counter() - t


@torch.inference_mode()
def time_eval(model, x, steps, device):
    "Seconds for `steps` forward passes in inference mode."
    model.eval()
    logits_of(model(x)); sync(device)
    t = time.perf_counter()
    for _ in range(steps): logits_of(model(x)).argmax(1)
    sync(device)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--steps', type=int, default=10, help='training steps per round (eval does 3x as many)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads (default: PyTorch\'s, one per core)')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    load0 = os.getloadavg()[0]
    models = build_models(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch_size, 3, 32, 32, generator=g).to(device)   # (B, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch_size,), generator=g).to(device)  # (B,)
    train = {k: [] for k in models}; evals = {k: [] for k in models}
    for _ in range(a.rounds):   # interleaved, so a burst of load elsewhere hits every model alike
        for k, m in models.items():
            train[k].append(a.batch_size * a.steps / time_train(m, x, y, a.steps, device))
            evals[k].append(a.batch_size * 3 * a.steps / time_eval(m, x, 3 * a.steps, device))
    dev = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
           f'{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, '
           f'{torch.get_num_threads()} torch threads')
    print(f'load average before: {load0:.2f}, after: {os.getloadavg()[0]:.2f}')
    print(f'device: {dev}; torch {torch.__version__}; batch {a.batch_size}; best (median) of {a.rounds} rounds')
    print("| model | params | train step img/s | eval img/s |")
    print("|---|---:|---:|---:|")
    for k, m in models.items():
        n = sum(p.numel() for p in m.parameters())
        print(f"| {k} | {n:,} | {max(train[k]):,.0f} ({statistics.median(train[k]):,.0f}) "
              f"| {max(evals[k]):,.0f} ({statistics.median(evals[k]):,.0f}) |")
    fast, names = 'vit_nbdev fast path', list(models)
    for other in names[:-1]:
        print(f"vit_nbdev fast path / {other}: train {max(train[fast]) / max(train[other]):.2f}x, "
              f"eval {max(evals[fast]) / max(evals[other]):.2f}x")


if __name__ == '__main__':
    main()
