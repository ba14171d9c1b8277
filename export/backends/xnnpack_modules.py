"""Module-level rewrites that make a fused encoder run fast on XNNPACK (applied to a copy before
``torch.export``; each computes the same function up to fp32 rounding, and the parity gate checks it).

Large-kernel depthwise convolutions. XNNPACK runs a depthwise convolution with its DWConv micro-kernels
only when the kernel has at most 25 taps (5×5); a 7×7 depthwise convolution (MobileCLIP's ConvFFN,
RepCPE and RepMixer-stage kernels) falls back to a grouped IGEMM that is 20-40× slower (profiled with
ETDump: 5.4 ms instead of 0.2 ms for 64 channels at 64×64 on this host). :func:`split_large_depthwise`
replaces each such (stride-1) ``nn.Conv2d`` by :class:`BandedDepthwiseConv2d`: the kernel is cut into
bands of whole rows of at most 25 taps (7×7 -> 3+3+1 rows), each band is a depthwise convolution whose
output rows are sliced into line, and the bands are summed. DWConv kernels only, a few extra edge rows.
Grouped convolutions with a channel multiplier (``out_channels != groups``, FastViT's patch embedding)
are left alone: XNNPACK runs those as IGEMM whatever the kernel size, and splitting them is slower.

CLIP's ResNet attention pool. open_clip's ``AttentionPool2d`` (OpenAI/TinyCLIP ModifiedResNet) calls
``F.multi_head_attention_forward`` in sequence-first layout: its token mean, separate-weight
projections (``addmm`` on 3-D views) and ``split`` stay outside the delegate. :class:`XnnpackAttentionPool2d`
computes the same function batch-first: the mean token as a global average pool, then since the pool
returns token 0 only, one query row against all keys, explicit softmax attention, ``c_proj``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

#: the largest depthwise kernel (taps) XNNPACK runs with its DWConv micro-kernels
XNNPACK_DWCONV_MAX_TAPS = 25


class BandedDepthwiseConv2d(nn.Module):
    """A stride-1 depthwise ``nn.Conv2d`` with a large kernel as a sum of depthwise convolutions over
    row bands of the kernel. Band ``[r0, r1)`` runs with its own symmetric row padding ``p_b`` and its
    output is cut to the rows that line up with the full convolution's, starting at
    ``p_b - p + r0`` (no pad op: XNNPACK's int8 constant pad rejects the quantized zero point)."""

    def __init__(self, conv: nn.Conv2d, max_taps: int = XNNPACK_DWCONV_MAX_TAPS):
        super().__init__()
        kh, kw = conv.kernel_size
        if kw > max_taps or conv.stride != (1, 1):
            raise ValueError(f"can only band stride-1 kernels at most {max_taps} taps wide")
        ph, pw = conv.padding
        self.groups, self.kh, self.ph = conv.groups, kh, ph
        rows = max(1, max_taps // kw)
        self.bands = []
        w = conv.weight.detach()
        weights = []
        for r0 in range(0, kh, rows):
            r1 = min(kh, r0 + rows)
            pad = max(ph - r0, ph - kh + r1, 0)
            self.bands.append(((pad, pw), pad - ph + r0))
            weights.append(nn.Parameter(w[:, :, r0:r1, :].clone(), requires_grad=False))
        self.weights = nn.ParameterList(weights)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x):
        rows_out = x.shape[-2] + 2 * self.ph - self.kh + 1
        y = None
        for (padding, first), w in zip(self.bands, self.weights):
            t = F.conv2d(x, w, self.bias if y is None else None, 1, padding, 1, self.groups)
            t = t[:, :, first:first + rows_out]
            y = t if y is None else y + t
        return y


def _splittable(m: nn.Module, max_taps: int) -> bool:
    return (type(m) is nn.Conv2d and m.groups > 1 and m.groups == m.in_channels == m.out_channels
            and m.kernel_size[0] * m.kernel_size[1] > max_taps and m.kernel_size[1] <= max_taps
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple))


def split_large_depthwise(module: nn.Module, max_taps: int = XNNPACK_DWCONV_MAX_TAPS):
    """A copy of ``module`` with every large-kernel depthwise conv banded; returns (copy, count)."""
    module = copy.deepcopy(module)
    names = [n for n, m in module.named_modules() if _splittable(m, max_taps)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, BandedDepthwiseConv2d(getattr(parent, child), max_taps))
    return module, len(names)


class XnnpackAttentionPool2d(nn.Module):
    """open_clip ``AttentionPool2d`` (same parameters, same output) in ops XNNPACK delegates."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.positional_embedding = pool.positional_embedding
        self.q_proj, self.k_proj, self.v_proj, self.c_proj = pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj
        self.num_heads = pool.num_heads

    def forward(self, x):
        n, c = x.shape[0], x.shape[1]
        tokens = torch.cat([F.adaptive_avg_pool2d(x, 1).reshape(n, 1, c), x.flatten(2).transpose(1, 2)], 1)
        tokens = tokens + self.positional_embedding.unsqueeze(0)
        h, d = self.num_heads, c // self.num_heads
        q = self.q_proj(tokens[:, :1]).reshape(n, 1, h, d).transpose(1, 2)
        k = self.k_proj(tokens).reshape(n, -1, h, d).transpose(1, 2)
        v = self.v_proj(tokens).reshape(n, -1, h, d).transpose(1, 2)
        attn = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.c_proj((attn @ v).transpose(1, 2).reshape(n, c))


def rewrite_attention_pools(module: nn.Module):
    """``module`` (modified in place: pass a copy) with each open_clip AttentionPool2d replaced by
    :class:`XnnpackAttentionPool2d`; returns (module, count)."""
    from open_clip.modified_resnet import AttentionPool2d
    names = [n for n, m in module.named_modules() if isinstance(m, AttentionPool2d)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, XnnpackAttentionPool2d(getattr(parent, child)))
    return module, len(names)
