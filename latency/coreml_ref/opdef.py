"""How an op type is described to the interpreter: its parameters per opset, its kernel compiler, and
the view (:class:`_Ctx`) a compiler has of one op (constant parameters, declared types)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .types import VarType, _Op

if TYPE_CHECKING:  # pragma: no cover
    from .program import Program


# ------------------------------------------------------------------------------ op definitions

_MISSING = object()


@dataclass
class _OpDef:
    params: Callable                  # ios -> {param: required}
    compile: Callable                 # (ctx) -> kernel(args: dict, pess: bool) -> tensor | list
    static: tuple = ()                # params read at compile time (must be constant)
    variadic: tuple = ()              # params bound to a tuple of values
    constexpr: bool = False           # evaluated once at load time (all inputs constant)
    min_ios: int = 15
    same_float: bool = True           # float inputs must have the output's float dtype


class _Ctx:
    """What a kernel compiler sees of an op: constant parameters, declared types, helpers."""

    def __init__(self, op: _Op, prog: "Program"):
        self.op, self.prog, self.ios = op, prog, op.ios
        out = op.outputs[0][1] if op.outputs else None
        self.fp16 = out is not None and out.dtype == "FLOAT16"

    def has(self, p):
        return p in self.op.inputs

    def is_const(self, p):
        b = self.op.inputs[p]
        return len(b) == 1 and self.prog._is_const_binding(b[0])

    def in_type(self, p) -> VarType:
        return self.prog._binding_type(self.op.inputs[p][0], self.op)

    def out_type(self, i=0) -> VarType:
        return self.op.outputs[i][1]

    def const(self, p, default=_MISSING):
        if p not in self.op.inputs:
            if default is _MISSING:
                raise self.op.error(f"missing parameter {p!r}")
            return default
        b = self.op.inputs[p]
        if len(b) != 1 or not self.prog._is_const_binding(b[0]):
            raise self.op.unsupported(f"parameter {p!r} must be a constant here")
        return self.prog._const_value(b[0], self.op)

    def ints(self, p, default=_MISSING, length=None):
        v = self.const(p, default)
        if v is None:
            return None
        arr = np.asarray(v)
        if arr.dtype.kind not in "iu":
            raise self.op.error(f"parameter {p!r} must be integers, got {arr.dtype}")
        out = [int(i) for i in arr.reshape(-1)]
        if length is not None and len(out) != length:
            raise self.op.error(f"parameter {p!r} has {len(out)} values, expected {length}")
        return out

    def int(self, p, default=_MISSING):
        v = self.const(p, default)
        arr = np.asarray(v)
        if arr.size != 1 or arr.dtype.kind not in "iu":
            raise self.op.error(f"parameter {p!r} must be an integer scalar, got {v!r}")
        return int(arr.reshape(-1)[0])

    def bool(self, p, default=_MISSING):
        v = self.const(p, default)
        arr = np.asarray(v)
        if arr.size != 1 or arr.dtype != np.bool_:
            raise self.op.error(f"parameter {p!r} must be a bool scalar, got {v!r}")
        return bool(arr.reshape(-1)[0])

    def bools(self, p, default=_MISSING):
        v = self.const(p, default)
        if v is None:
            return None
        arr = np.asarray(v)
        if arr.dtype != np.bool_:
            raise self.op.error(f"parameter {p!r} must be bools, got {arr.dtype}")
        return [bool(b) for b in arr.reshape(-1)]

    def float(self, p, default=_MISSING):
        v = self.const(p, default)
        arr = np.asarray(v)
        if arr.size != 1 or arr.dtype.kind not in "fiu":
            raise self.op.error(f"parameter {p!r} must be a numeric scalar, got {v!r}")
        return float(arr.reshape(-1)[0])

    def str(self, p, default=_MISSING, choices=None):
        v = self.const(p, default)
        if not isinstance(v, str):
            raise self.op.error(f"parameter {p!r} must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.op.unsupported(f"unknown {p} {v!r} (known: {', '.join(choices)})")
        return v


def _axis(ax: int, rank: int, op: _Op) -> int:
    if not -rank <= ax < max(rank, 1):
        raise op.error(f"axis {ax} out of range for rank {rank}")
    return ax % rank if rank else 0


def _p(*names, opt=()):
    table = {n: True for n in names}
    table.update({n: False for n in opt})
    return lambda ios: table
