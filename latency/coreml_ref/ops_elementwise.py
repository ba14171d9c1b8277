"""Elementwise ops: binary arithmetic / comparisons / logic, unary math and activations, cast,
identity, select."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .types import _DTYPE_STR, _TORCH_DTYPE, _f16, _kind


def _binary(fn, float_only=False, bool_only=False):
    def comp(c):
        xt, yt = c.in_type("x"), c.in_type("y")
        if float_only and (_kind(xt.dtype) != "float" or _kind(yt.dtype) != "float"):
            raise c.op.unsupported(f"integer operands ({xt.dtype}, {yt.dtype}) are not supported")
        if bool_only and (xt.dtype != "BOOL" or yt.dtype != "BOOL"):
            raise c.op.error(f"operands must be bool, got {xt.dtype}, {yt.dtype}")
        return lambda a, pess: fn(a["x"], a["y"])
    return comp


def _unary(fn, float_only=True):
    def comp(c):
        if float_only and _kind(c.in_type("x").dtype) != "float":
            raise c.op.unsupported(f"input dtype {c.in_type('x').dtype} is not supported")
        return lambda a, pess: fn(a["x"])
    return comp


def _c_eps_unary(fn, default_eps):
    def comp(c):
        eps = c.float("epsilon", default_eps)
        return lambda a, pess: fn(a["x"], eps)
    return comp


def _c_alpha(fn, defaults):
    def comp(c):
        vals = [c.float(k, d) for k, d in defaults]
        return lambda a, pess: fn(a["x"], *vals)
    return comp


def _c_clip(c):
    lo, hi = c.float("alpha"), c.float("beta")
    return lambda a, pess: torch.clamp(a["x"], lo, hi)


def _c_gelu(c):
    mode = c.str("mode", "EXACT", choices=("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"))

    def run(a, pess):
        x = a["x"]
        if not (pess and c.fp16):
            if mode == "EXACT":
                return F.gelu(x)
            if mode == "TANH_APPROXIMATION":
                return F.gelu(x, approximate="tanh")
            return x * torch.sigmoid(1.702 * x)
        if mode == "EXACT":
            e = _f16(torch.erf(_f16(x * 0.7071067811865476)))
            return 0.5 * x * (1.0 + e)
        if mode == "TANH_APPROXIMATION":
            x3 = _f16(x * x * x)
            inner = _f16(0.7978845608028654 * _f16(x + 0.044715 * x3))
            return 0.5 * x * (1.0 + _f16(torch.tanh(inner)))
        return x * _f16(torch.sigmoid(_f16(1.702 * x)))
    return run


def _c_cast(c):
    s = c.str("dtype", choices=("bool", "int8", "uint8", "int16", "uint16", "int32", "int64", "fp16",
                                "fp32", "fp64"))
    want = _DTYPE_STR[s]
    if c.out_type().dtype != want:
        raise c.op.error(f"casts to {s} but the output is declared {c.out_type().dtype}")
    tdt = _TORCH_DTYPE[want]
    xk = _kind(c.in_type("x").dtype)

    def run(a, pess):
        x = a["x"]
        if want == "BOOL":
            return x != 0
        if xk == "float" and _kind(want) == "int":
            x = torch.trunc(x)
        return x.to(tdt)
    return run


def _c_identity(c):
    return lambda a, pess: a["x"]


def _c_select(c):
    return lambda a, pess: torch.where(a["cond"] if a["cond"].dtype == torch.bool else a["cond"] != 0,
                                       a["a"], a["b"])
