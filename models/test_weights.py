"""Seeded random weights that make outputs depend on inputs.

Default initialisations give near-constant CLIP embeddings (two different images: cosine 0.99999), and
with them every parity test passes vacuously. Here every tensor is drawn from a generator seeded by
``(seed, tensor name)``, by the kind of module that owns it:

* BatchNorm: statistics far from their defaults (running var ~ U(0.5, 2), running mean ~ N(0, 0.1)),
  affine weight ~ U(0.5, 1.5), bias ~ N(0, 0.05) — so a fold that ignores them is off by a lot;
* layer scales ~ U(0.02, 0.1); LayerNorm weight ~ U(0.8, 1.2), bias ~ N(0, 0.05);
* conv / linear weights ~ N(0, 1.25^2 / fan_in); attention qkv ~ N(0, 2^2 / fan_in) (sharper
  attention, so captions differ after pooling at EOT); biases ~ N(0, 0.02);
* token embeddings ~ N(0, 0.5), positional ~ N(0, 0.02); projections ~ N(0, 1/width);
  ``logit_scale`` = ln(100/k), k ~ U(1, 5).

The gains were chosen by measurement, between two failure modes: too small and the input-independent
part dominates (image cosine > 0.999 at gain 1.0); too large (1.5) and the network amplifies fp32
rounding (a 1e-6 input perturbation moved S2's normalized embedding by 3e-5), so no fp32 parity test
could pass. The attention gain has a third limit: at 2.5 attention is nearly hard (argmax-like) and
the 12-layer text towers become chaotic in fp16 (PyTorch ``.half()`` of S1's text tower: max abs 3e-3,
cosine 0.99977 — ten times what trained CLIP text towers lose), so fp16 parity would measure the test
weights, not the export; at 2.0 it is 5-6e-4 (cosine >= 0.99999) while caption pairs stay apart
(pair cosine <= 0.8; at 1.25 they reach 0.99). Plain CLIP ViT image towers (OpenAI, TinyCLIP: patch
conv, ln_pre, standardized inputs) sit closer to that third limit: at 2.0 their bfloat16 cosine is 0.995
(ten times a trained ViT's fp16 loss, so seeded near-ties flip fp16 zero-shot decisions), at
``VIT_QKV_GAIN`` = 1.5 it is 0.9997 with image pairs still <= 0.61; those models' image towers use it.
Their ResNet towers (ModifiedResNet) end in an attention pool over a residual stream of std ~10-14
(random BN statistics do not renormalize it): at gain 1.5 its softmax is saturated, picks single
tokens, and bfloat16 loses cosine 0.99; ``ATTNPOOL_QKV_GAIN`` = 0.3 gives 0.9996 (fp16 ~1e-5) while
probe image pairs stay <= 0.985 (at 0.15 they reach 0.995: random ReLU features share a large mean).
Random BN statistics also let that stream grow by a constant factor per bottleneck (x 1.26 in RN50's
layer3), so the deeper OpenAI ResNets explode: RN101's 23-block layer3 took it from std 1.9 to 475
(max 4400), its attention pool overflowed fp16, and a stem fold's fp32 rounding came out 2.7e-5
relative at the end. Trained ResNets keep the residual branches small; here the last BN of each
bottleneck in a stage of n > ``RESIDUAL_REF_BLOCKS`` blocks has its weight scaled by
sqrt(``RESIDUAL_REF_BLOCKS`` / n), so every stage grows about as much as RN50's (RN50 itself and
TinyCLIP's ResNet are unchanged).
With these, probe images/captions give pair cosines
<= 0.96 / 0.8 and a 1e-6 input perturbation moves embeddings by < 1e-6.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn


# knobs (see the module docstring)
BN_WEIGHT = (0.5, 1.5)
BN_BIAS_STD = 0.05
BN_MEAN_STD = 0.1
BN_VAR = (0.5, 2.0)
LAYER_SCALE = (0.02, 0.1)
W_GAIN = 1.25
QKV_GAIN = 2.0
VIT_QKV_GAIN = 1.5
ATTNPOOL_QKV_GAIN = 0.3
RESIDUAL_REF_BLOCKS = 6
IMAGE_PREFIXES = ("visual.", "vision_model.")
BIAS_STD = 0.02
EMB_STD = 0.5


def _gen(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63))


def _uniform(shape, lo, hi, g):
    return torch.rand(shape, generator=g) * (hi - lo) + lo


def _draw(owner: nn.Module, pname: str, full: str, t: torch.Tensor, g: torch.Generator,
          image_qkv_gain: float = None):
    shape = t.shape
    if not t.is_floating_point():
        return torch.zeros_like(t)                         # num_batches_tracked
    if full == "logit_scale":
        return torch.log(100.0 / _uniform(shape, 1.0, 5.0, g))
    if "layer_scale" in full or (pname == "gamma" and "LayerScale" in type(owner).__name__):
        return _uniform(shape, *LAYER_SCALE, g)
    if isinstance(owner, nn.modules.batchnorm._BatchNorm):
        return {"weight": lambda: _uniform(shape, *BN_WEIGHT, g),
                "bias": lambda: torch.randn(shape, generator=g) * BN_BIAS_STD,
                "running_mean": lambda: torch.randn(shape, generator=g) * BN_MEAN_STD,
                "running_var": lambda: _uniform(shape, *BN_VAR, g)}[pname]()
    if isinstance(owner, (nn.LayerNorm, nn.GroupNorm)):
        return (_uniform(shape, 0.8, 1.2, g) if pname == "weight"
                else torch.randn(shape, generator=g) * 0.05)
    if isinstance(owner, nn.Embedding) and "position" not in full:
        return torch.randn(shape, generator=g) * EMB_STD
    if "pos" in pname or "cls_token" in pname or "positional" in full:
        return torch.randn(shape, generator=g) * 0.02
    if "projection" in pname or pname == "proj":
        return torch.randn(shape, generator=g) / math.sqrt(shape[0])
    if t.dim() >= 2:
        fan_in = shape[1:].numel()
        if isinstance(owner, nn.modules.conv._ConvNd):
            fan_in = (owner.in_channels // owner.groups) * math.prod(owner.kernel_size)
        gain = W_GAIN
        if any(n in full for n in ("qkv", "in_proj", "q_proj", "k_proj", "v_proj")):
            gain = QKV_GAIN
            if image_qkv_gain and full.startswith(IMAGE_PREFIXES):
                gain = ATTNPOOL_QKV_GAIN if ".attnpool." in full else image_qkv_gain
        return torch.randn(shape, generator=g) * gain / math.sqrt(max(fan_in, 1))
    return torch.randn(shape, generator=g) * BIAS_STD          # biases and other vectors


def _residual_branch_scales(module: nn.Module) -> dict:
    """{name of a bottleneck's last BN: weight factor} for stages longer than RESIDUAL_REF_BLOCKS."""
    out = {}
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential) or len(seq) <= RESIDUAL_REF_BLOCKS:
            continue
        for i, block in enumerate(seq):
            if isinstance(getattr(block, "bn3", None), nn.modules.batchnorm._BatchNorm):
                out[f"{name}.{i}.bn3" if name else f"{i}.bn3"] = math.sqrt(RESIDUAL_REF_BLOCKS / len(seq))
    return out


def seeded_state_dict(module: nn.Module, seed: int, image_qkv_gain: float = None) -> dict:
    """A full state dict for ``module`` (its own key names), each tensor seeded by its name.
    ``image_qkv_gain``: attention gain of the image tower (default ``QKV_GAIN``)."""
    keys = module.state_dict().keys()
    out = {}
    branch_scale = _residual_branch_scales(module)
    for mod_name, owner in module.named_modules():
        tensors = list(owner.named_parameters(recurse=False)) + list(owner.named_buffers(recurse=False))
        for pname, t in tensors:
            full = f"{mod_name}.{pname}" if mod_name else pname
            if full in keys:
                out[full] = _draw(owner, pname, full, t.detach(), _gen(seed, full),
                                  image_qkv_gain).to(t.dtype)
                if mod_name in branch_scale and pname == "weight":
                    out[full] = out[full] * branch_scale[mod_name]
    missing = set(keys) - set(out)
    if missing:  # pragma: no cover - a new module type would show up here
        raise RuntimeError(f"seeded_state_dict did not cover: {sorted(missing)[:5]}")
    return out
