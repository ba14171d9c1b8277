"""Reductions (reduce_sum / mean / max / min / prod / norms / log-sum-exp) and arg-reductions."""
from __future__ import annotations

import torch

from .opdef import _axis, _p
from .types import _DTYPE_STR, _f16, _kind


# ---- reductions ----------------------------------------------------------------------------------

def _reduce(fn, pess_fn=None, float_only=True):
    def comp(c):
        axes = c.ints("axes", None)
        keep = c.bool("keep_dims", False)
        if float_only and _kind(c.in_type("x").dtype) != "float":
            raise c.op.unsupported(f"input dtype {c.in_type('x').dtype} is not supported")

        def run(a, pess):
            x = a["x"]
            ax = list(range(x.dim())) if axes is None else sorted({_axis(i, x.dim(), c.op) for i in axes})
            if pess and c.fp16 and pess_fn is not None:
                return pess_fn(x, ax, keep)
            return fn(x, ax, keep)
        return run
    return comp


def _red_sum(x, ax, keep):
    return x.sum(ax, keepdim=keep)


def _red_mean(x, ax, keep):
    return x.mean(ax, keepdim=keep)


def _red_prod(x, ax, keep):
    for i in sorted(ax, reverse=True):
        x = x.prod(i, keepdim=True)
    return x if keep else x.reshape([d for i, d in enumerate(x.shape) if i not in ax])


def _red_l2(x, ax, keep):
    return torch.sqrt((x * x).sum(ax, keepdim=keep))


def _argreduce(fn):
    def comp(c):
        axis = c.int("axis", -1)
        keep = c.bool("keep_dims", False)
        out = c.str("output_dtype", "int32", choices=("int32", "uint16", "int16", "uint8", "int8"))
        if c.out_type().dtype != _DTYPE_STR[out]:
            raise c.op.error(f"output_dtype {out} but the output is declared {c.out_type().dtype}")

        def run(a, pess):
            x = a["x"]
            return fn(x, _axis(axis, x.dim(), c.op), keep).to(torch.int32)
        return run
    return comp


_REDUCE_PARAMS = _p("x", opt=("axes", "keep_dims"))


def _pess_sum(x, ax, keep):
    return _f16(x.sum(ax, keepdim=keep))


def _pess_mean(x, ax, keep):
    n = 1
    for i in ax:
        n *= x.shape[i]
    return _f16(x.sum(ax, keepdim=keep)) / n


def _pess_l2(x, ax, keep):
    return torch.sqrt(_f16(_f16(x * x).sum(ax, keepdim=keep)))


def _pess_sumsq(x, ax, keep):
    return _f16(_f16(x * x).sum(ax, keepdim=keep))


def _argmax_params(ios):
    t = {"x": True, "axis": False, "keep_dims": False}
    if ios >= 17:
        t["output_dtype"] = False
    return t
