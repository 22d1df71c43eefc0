"""Cheap tricks for training the seed ViT on CIFAR-10 in few epochs: ZCA patch-embedding init, mimetic attention init,
an EMA of the weights, flip test-time augmentation, and batch-wise (vectorised, generator-seeded) augmentations."""
import copy, math
import torch
from torch import nn
import torch.nn.functional as F
from vit_nbdev.patch_embedding import patchify
from vit_nbdev.train import normalize, augment as rrc_flip_augment, epoch_seed


# ---------------------------------------------------------------- data split
def holdout_split(images: torch.Tensor, labels: torch.Tensor, n_val: int = 5000) -> tuple:
    "The first `N - n_val` images for training, the last `n_val` for validation: `((xtr, ytr), (xval, yval))`."
    n = len(images) - n_val
    return (images[:n], labels[:n]), (images[n:], labels[n:])


# ---------------------------------------------------------------- ZCA init of the patch embedding
@torch.no_grad()
def zca_whitening_matrix(images_uint8: torch.Tensor,   # uint8 (N, C, H, W)
                         patch_size: int = 4, eps: float = 1e-3,
                         mean: float = 0.5, std: float = 0.5) -> tuple:
    "ZCA whitening `W = U diag(1/sqrt(λ+eps)) Uᵀ` of the non-overlapping patches (normalised space, (C, kh, kw) order), and the patch mean."
    x = normalize(images_uint8, mean, std).double()                   # (N, C, H, W), about -1..1
    p = patchify(x, patch_size).reshape(-1, x.shape[1] * patch_size ** 2)  # (N * num_patches, C*P*P), (C, kh, kw) order
    mu = p.mean(0)                                                    # (D,)
    cov = torch.cov((p - mu).T)                                       # (D, D)
    lam, U = torch.linalg.eigh(cov)                                   # (D,), (D, D)
    W = U @ torch.diag(1 / torch.sqrt(lam.clamp_min(0) + eps)) @ U.T  # (D, D), symmetric
    return W.float(), mu.float()

@torch.no_grad()
def zca_whitening_init_(conv: nn.Conv2d,                # the patch projection, weight (hidden, C, P, P)
                        images_uint8: torch.Tensor,     # uint8 (N, C, H, W), e.g. 5,000 training images
                        eps: float = 1e-3, mean: float = 0.5, std: float = 0.5) -> nn.Conv2d:
    "Set the patch projection to ZCA whitening of the patches (weight = W, bias = -W·mean); needs hidden == C*P*P. Stays trainable."
    hidden, C, P, _ = conv.weight.shape
    if hidden != C * P * P: raise ValueError(f"ZCA init needs hidden_size == C*P*P = {C * P * P}, got {hidden}")
    W, mu = zca_whitening_matrix(images_uint8, P, eps, mean, std)     # (D, D), (D,)
    conv.weight.copy_(W.reshape(hidden, C, P, P))
    conv.bias.copy_(-W @ mu)
    return conv


# ---------------------------------------------------------------- mimetic init of self-attention
@torch.no_grad()
def _low_rank_factors(M: torch.Tensor, k: int) -> tuple:
    "Factors `A, B` of shape (D, k) with `A @ B.T` the best rank-k approximation of `M` (D, D)."
    U, S, Vh = torch.linalg.svd(M)                                    # (D, D), (D,), (D, D)
    s = S[:k].sqrt()
    return U[:, :k] * s, Vh[:k].T * s                                 # (D, k), (D, k)

@torch.no_grad()
def mimetic_init_(model: nn.Module, alpha1: float = 0.7, beta1: float = 0.7, alpha2: float = 0.4, beta2: float = 0.4,
                  generator: torch.Generator = None) -> nn.Module:
    """Mimetic initialisation (Trockman & Kolter 2023) of every `FasterMultiHeadAttention` in `model`:
    per head `W_qᵀ W_k ≈ α1 Z + β1 I` (rank d), and for the layer `W_vᵀ W_oᵀ ≈ α2 Z' − β2 I`, with `Z ~ N(0, 1/D)`."""
    for m in model.modules():
        if not hasattr(m, 'qkv'): continue
        D, H, d = m.qkv.in_features, m.num_attention_heads, m.attention_head_size
        I = torch.eye(D)
        Wq, Wk, Wv = m.qkv.weight.view(3, D, D).unbind(0)             # (D, D) each; rows h*d:(h+1)*d belong to head h
        for h in range(H):
            Z = torch.randn(D, D, generator=generator) / math.sqrt(D)
            A, B = _low_rank_factors(alpha1 * Z + beta1 * I, d)       # (D, d), (D, d)
            Wq[h * d:(h + 1) * d] = A.T                               # q = x Wqᵀ, so Wq_hᵀ Wk_h = A Bᵀ
            Wk[h * d:(h + 1) * d] = B.T
        Z = torch.randn(D, D, generator=generator) / math.sqrt(D)
        A, B = _low_rank_factors(alpha2 * Z - beta2 * I, D)            # (D, D), (D, D)
        Wv.copy_(A.T)                                                  # x Wvᵀ Woᵀ = x A Bᵀ
        m.output_projection.weight.copy_(B)
    return model


# ---------------------------------------------------------------- EMA of the weights
class ModelEMA:
    "Exponential moving average of a model's parameters and buffers; `decay` warms up as `min(decay, (1+t)/(10+t))`."
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    @torch.no_grad()
    def update(self, model: nn.Module):
        "One EMA step towards `model`'s current weights (call after each optimiser step)."
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        ema = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        cur = [t for t in model.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(ema, cur, 1 - d)                          # ema += (1 - d) (cur - ema)


# ---------------------------------------------------------------- test-time augmentation
def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    "Mean of the logits of `x` and of its left-right mirror image: `(B, num_classes)`."
    return (model(x)[0] + model(x.flip(-1))[0]) / 2                 # (B, num_classes)


# ---------------------------------------------------------------- batch augmentations (uint8 in, float 0..255 out)
def random_crop_flip(images: torch.Tensor,          # uint8 (B, C, H, W)
                     flip: torch.Tensor,            # bool (B,): mirror this image
                     generator: torch.Generator = None,
                     pad: int = 4) -> torch.Tensor: # float (B, C, H, W) in 0..255
    "The classic CIFAR augmentation for a whole batch: zero-pad by `pad`, crop back to H×W at a random offset, mirror where `flip`."
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))                       # (B, C, H+2p, W+2p)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B), generator=generator)  # (B,) each
    cols = torch.arange(W)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + dx[:, None]  # (B, W): mirrored columns where flip
    rows = torch.arange(H) + dy[:, None]                               # (B, H)
    out = padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]       # (B, C, H, W)
    return out.float()

def alternating_flip(idx: torch.Tensor, epoch: int, n: int, seed: int = 0) -> torch.Tensor:
    "Flip decisions (B,) for images `idx` of `n`: a fixed random bit per image (from `seed`) XOR the epoch's parity (arXiv 2404.00498)."
    g = torch.Generator().manual_seed(epoch_seed(seed, 10**6 + 1))
    bits = torch.rand(n, generator=g) < 0.5                            # (n,), the same every epoch
    return bits[idx] ^ bool(epoch % 2)                                 # (B,)

def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2) -> tuple:
    "Mix a batch with its reverse by one Beta(alpha, alpha) weight (global RNG); returns images `(B, C, H, W)` and soft targets `(B, K)`."
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    t = F.one_hot(y, num_classes).float()                              # (B, K)
    return lam * x + (1 - lam) * x.flip(0), lam * t + (1 - lam) * t.flip(0)


def train_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, epoch: int, seed: int = 0,
                  aug: str = 'rrc', flips: str = 'random', rrc_scale=(0.8, 1.0)):
    """Shuffled, augmented, normalised batches `(x (B, C, H, W) float, y (B,))` of one epoch, seeded by `(seed, epoch)`.
    `aug`: 'rrc' (vit_nbdev's random resized crop + flip), 'crop' (pad-4 random crop + flip), 'none' (flip only);
    `flips`: 'random' (p = 0.5) or 'alternate' (per-image parity, with 'crop'/'none')."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(len(images), generator=g)
    for i in range(0, len(images), batch_size):
        idx = order[i:i + batch_size]
        x, y = images[idx], labels[idx]                                # (B, C, H, W) uint8, (B,)
        if aug == 'rrc':
            x = rrc_flip_augment(x, g, scale=rrc_scale)                # (B, C, H, W) float 0..255
        else:
            flip = alternating_flip(idx, epoch, len(images), seed) if flips == 'alternate' else torch.rand(len(idx), generator=g) < 0.5
            x = random_crop_flip(x, flip, g, pad=4 if aug == 'crop' else 0)
        yield normalize(x), y
