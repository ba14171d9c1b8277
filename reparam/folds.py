"""Fold primitives: the algebra of merging BatchNorm, identity branches and layer scales into convs.

All functions are pure on tensors (no module surgery); :mod:`.core` applies them. Everything is
computed in float64 and cast back, so a fold adds no more than fp32 rounding of the result.
"""
from __future__ import annotations

import torch
from torch import nn


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm):
    """BatchNorm (eval) as ``x * scale + shift`` per channel, in float64."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def fuse_conv_bn(conv: nn.Conv2d, bn) -> tuple:
    """(weight, bias) of ``bn(conv(x))`` as one conv."""
    scale, shift = bn_scale_shift(bn)
    w = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    return w, b * scale + shift


def identity_kernel(channels: int, groups: int, kernel_size, dtype=torch.float64):
    """The conv kernel that computes the identity (1 at the center tap of each channel's own input)."""
    kh, kw = kernel_size
    k = torch.zeros(channels, channels // groups, kh, kw, dtype=dtype)
    per = channels // groups
    for c in range(channels):
        k[c, c % per, kh // 2, kw // 2] = 1.0
    return k


def fuse_identity_bn(bn, channels: int, groups: int, kernel_size) -> tuple:
    """(weight, bias) of an identity-BatchNorm branch as a conv of the given shape."""
    scale, shift = bn_scale_shift(bn)
    return identity_kernel(channels, groups, kernel_size) * scale.reshape(-1, 1, 1, 1), shift


def fold_input_affine_into_linear(linear: nn.Linear, scale, shift) -> tuple:
    """(weight, bias) of ``linear(x * scale + shift)`` (per input feature) as one linear."""
    w = linear.weight.double()
    b = linear.bias.double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return w * scale.reshape(1, -1), b + w @ shift


def scale_output_channels(weight, bias, gamma) -> tuple:
    """(weight, bias) of ``gamma * layer(x)`` for a conv/linear, gamma per output channel."""
    g = gamma.double().reshape(-1)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    b = bias.double() if bias is not None else torch.zeros_like(g)
    return weight.double() * g.reshape(shape), b * g


def new_conv(like: nn.Conv2d, weight, bias) -> nn.Conv2d:
    """A conv with ``like``'s geometry, the given weight, and a bias."""
    conv = nn.Conv2d(like.in_channels, like.out_channels, like.kernel_size, like.stride, like.padding,
                     like.dilation, like.groups, bias=True, padding_mode=like.padding_mode)
    dtype = like.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=like.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(dtype))
    return conv.to(like.weight.device)


def new_linear(like: nn.Linear, weight, bias) -> nn.Linear:
    lin = nn.Linear(like.in_features, like.out_features, bias=True)
    dtype = like.weight.dtype
    lin.weight = nn.Parameter(weight.to(dtype))
    lin.bias = nn.Parameter(bias.to(dtype))
    return lin.to(like.weight.device)


def set_weights(layer, weight, bias):
    """Overwrite a conv/linear's weight and bias in place (adding a bias parameter if needed)."""
    dtype = layer.weight.dtype
    layer.weight = nn.Parameter(weight.to(dtype))
    layer.bias = nn.Parameter(bias.to(dtype))
