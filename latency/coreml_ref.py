"""A strict reference interpreter for saved Core ML ML Programs (``.mlpackage``) that runs on Linux.

Core ML can only ``predict`` on macOS. This module evaluates the *saved* package instead: the MIL
program protobuf (``MLModel(path, skip_model_load=True).get_spec().mlProgram``) and the MILBlob v2
weight file ``Data/com.apple.CoreML/weights/weight.bin`` (read with
:func:`clipdeploy.latency.milblob.read_weight_blob`). Ops run as NumPy / torch-CPU
kernels. It is a *reference*: it tells you what the program computes, not how fast or how exactly a
device computes it.

    from clipdeploy.latency.coreml_ref import load_program, verify_mlpackage
    prog = load_program("out/mobileclip_s0/coreml-fp16/image_encoder.mlpackage")
    out = prog.run({"image": images[:1]})            # {"embedding": float32 [1, 512]}
    prog.diagnostics                                 # op count/types, first non-finite op, overflow warnings

Reading: ``Manifest.json`` -> root model file -> ``Model_pb2`` (:func:`read_spec`; the same protobuf
``MLModel(path, skip_model_load=True).get_spec()`` returns, without that call's rewrite of the
manifest), function ``main`` (or the description's default function), the block specialization of its
opset (CoreML5..9 = iOS15..19; ops and parameters are checked against the opset). Programs are cached
with their weights unpacked and their op list precompiled (:func:`load_program`).

Strictness. Anything the interpreter cannot evaluate faithfully is an error naming the op (its output
name and type), never a silent skip: an unknown op type, an unknown or missing parameter, a parameter
value it does not know (pad_type, gelu mode, cast dtype, ...), a non-constant value where it needs a
constant, float inputs whose dtype differs from the op's declared float output (outside ``cast``), an
output whose dtype kind or shape disagrees with the type the program declares, an out-of-range gather
index. Errors derive from :class:`CoreMLRefError` and carry ``op_name`` / ``op_type``.

Precision. Every op's output is rounded to the dtype the program declares for it. Float16 ops are
emulated: their inputs (already float16) are widened to float32, the kernel computes in float32, and
the result is rounded to float16 (values beyond 65504 become inf, as on a device). This is the
*optimistic* model of an fp16 device (fp32 accumulation inside every op).
``pessimistic=True`` additionally rounds inside float16 ops, modelling fp16 accumulators:

* ``conv`` / ``linear`` / ``matmul`` / ``scaled_dot_product_attention`` products: the reduction
  dimension is cut into chunks of :data:`FP16_ACC_CHUNK` (32) input channels (conv: 32 input channels x
  the kernel window); each chunk's partial sum is computed in fp32 and rounded to fp16, partials are
  accumulated in fp16 (rounded after every add), then the bias is added and rounded;
* ``layer_norm`` / ``batch_norm``: mean, centred values, variance, rsqrt, the normalized values and the
  gamma product are each rounded to fp16 before the next step;
* ``softmax`` (also inside SDPA): max-subtracted logits, exp, and the row sum are rounded to fp16;
* ``reduce_sum`` / ``reduce_mean`` / ``reduce_l2_norm`` (etc.): the squares and the sum are rounded to
  fp16 (so a sum of squares beyond 65504 overflows to inf, as it can on a device);
* ``gelu``: the inner terms (x/sqrt2 and erf; or x^3, the tanh argument and tanh; or 1.702x and the
  sigmoid) are rounded to fp16.
Float32 programs are unaffected by ``pessimistic``.

Diagnostics (``Program.diagnostics``, refreshed by each run): op count and op-type histogram, opset and
precision, the first op producing a non-finite value -- its origin: inf from all-finite inputs, or NaN
from NaN-free inputs, so a constant -inf attention mask flowing through an ``add`` is not reported --
and for float32 programs a warning list of ops whose (finite) activations exceed 10 % of the fp16
maximum (|x| > 6550.4): an fp16 export of that program may overflow there.

Localizing a wrong result: :func:`verify_mlpackage` names the first op whose output departs, given a
``baseline`` package (e.g. the unmodified export; :func:`diff_programs` compares two programs op by
op and lists differing constants) or reference ``activations`` by var name (:func:`torch_activations`
of the converted ``torch.export`` program: coremltools names MIL vars after the graph's nodes).

ImageType inputs (the ``*_imagetype.mlpackage`` variant): coremltools bakes the scale/bias into the
program as ops (``mul`` by 1/255 of a float32 ``[1, C, H, W]`` function input) and the model
description says ``imageType``; Core ML turns the pixel buffer into that 0..255 float tensor. So the
interpreter accepts a uint8 ``HxWx3`` RGB array (or a PIL image, or a float ``[1, 3, H, W]`` /
``[3, H, W]`` array of 0..255 values, RGB order), converts it to the float 0..255 planar tensor (BGR
models get their channels reversed; GRAYSCALE takes ``HxW`` / ``HxWx1``) and runs the program, which
applies the scale itself.

ExecuTorch ``.pte`` with a Core ML delegate: :func:`extract_coreml_from_pte` finds every
``CoreMLBackend`` delegate payload (inline, segment, or a ``CMJR`` JSON reference into the named data
store) and un-flattens it -- executorch's in-memory file system format: the files' bytes followed by
the directory tree as JSON written *reversed* at the end of the buffer -- into ``model.mlpackage``
directories this interpreter loads.
"""
from __future__ import annotations

import collections
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .milblob import WEIGHTS_REL, CoreMLStructureError, read_weight_blob, read_weight_blobs
from .parity import _unit

__all__ = ["load_program", "read_spec", "Program", "run_rows", "evaluate", "REFERENCE_RUNTIME", "verify_mlpackage", "diff_programs", "extract_coreml_from_pte",
           "torch_activations", "clear_cache", "CoreMLRefError", "UnsupportedOpError", "ProgramError",
           "VerificationError", "SUPPORTED_OPS", "FP16_MAX", "OVERFLOW_WARN", "FP16_ACC_CHUNK"]

FP16_MAX = 65504.0
OVERFLOW_WARN = 0.1 * FP16_MAX          # 6550.4: an fp32 activation above this may overflow in fp16
FP16_ACC_CHUNK = 32                      # pessimistic mode: fp16 accumulation granularity
_DATA_DIR = WEIGHTS_REL.parent.parent    # Data/com.apple.CoreML


# ------------------------------------------------------------------------------------------ errors

class CoreMLRefError(RuntimeError):
    """The interpreter cannot evaluate the program faithfully; the message names the op."""

    def __init__(self, message: str, op_name: Optional[str] = None, op_type: Optional[str] = None):
        super().__init__(message)
        self.op_name, self.op_type = op_name, op_type


class UnsupportedOpError(CoreMLRefError):
    """An op type, parameter or parameter value the interpreter does not know."""


class ProgramError(CoreMLRefError):
    """The program is inconsistent: a shape/dtype disagreeing with its declared type, a missing
    variable, a bad weight blob, an out-of-range index."""


class VerificationError(CoreMLRefError):
    """:func:`verify_mlpackage` found the outputs outside the thresholds (``.figures`` has the numbers)."""

    def __init__(self, message, figures, op_name=None, op_type=None):
        super().__init__(message, op_name, op_type)
        self.figures = figures


# ------------------------------------------------------------------------------------------- dtypes

# MIL DataType name -> numpy storage dtype (sub-byte types are unpacked into int8 / uint8)
_NP_DTYPE = {
    "BOOL": np.bool_, "FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT4": np.int8, "UINT1": np.uint8, "UINT2": np.uint8, "UINT3": np.uint8, "UINT4": np.uint8,
    "UINT6": np.uint8,
}
_SUBBYTE_BITS = {"INT4": 4, "UINT1": 1, "UINT2": 2, "UINT3": 3, "UINT4": 4, "UINT6": 6}
# torch dtype a runtime tensor of that MIL dtype is held in (unsigned 16/32-bit widened)
_TORCH_DTYPE = {
    "BOOL": torch.bool, "FLOAT16": torch.float16, "FLOAT32": torch.float32, "FLOAT64": torch.float64,
    "INT8": torch.int8, "INT16": torch.int16, "INT32": torch.int32, "INT64": torch.int64,
    "UINT8": torch.uint8, "UINT16": torch.int32, "UINT32": torch.int64, "UINT64": torch.int64,
    "INT4": torch.int8, "UINT1": torch.uint8, "UINT2": torch.uint8, "UINT3": torch.uint8,
    "UINT4": torch.uint8, "UINT6": torch.uint8,
}
_FLOAT = ("FLOAT16", "FLOAT32", "FLOAT64")
# MILBlob BlobDataType code (MILBlob/Blob/BlobDataType.hpp) a blob of each MIL dtype is stored with
_BLOB_CODE = {"FLOAT16": 1, "FLOAT32": 2, "UINT8": 3, "INT8": 4, "BFLOAT16": 5, "INT16": 6, "UINT16": 7,
              "INT4": 8, "UINT1": 9, "UINT2": 10, "UINT4": 11, "UINT3": 12, "UINT6": 13, "INT32": 14,
              "UINT32": 15, "FLOAT8E4M3FN": 16, "FLOAT8E5M2": 17}
# MIL cast / output_dtype strings -> MIL DataType name
_DTYPE_STR = {"bool": "BOOL", "fp16": "FLOAT16", "fp32": "FLOAT32", "fp64": "FLOAT64",
              "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
              "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
              "int4": "INT4", "uint1": "UINT1", "uint2": "UINT2", "uint3": "UINT3", "uint4": "UINT4",
              "uint6": "UINT6"}


def _dtype_name(code: int) -> str:
    from coremltools.proto import MIL_pb2
    return MIL_pb2.DataType.Name(code)


def _kind(dtype: str) -> str:
    if dtype in _FLOAT or dtype == "BFLOAT16":
        return "float"
    if dtype == "BOOL":
        return "bool"
    if dtype == "STRING":
        return "string"
    return "int"


def _torch_kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    return "float" if t.is_floating_point() else "int"


def _unpack_bits(packed: np.ndarray, nbits: int, count: int, signed: bool) -> np.ndarray:
    """Sub-byte values packed LSB-first (coremltools ``pack_elements_into_bits``) -> int8/uint8."""
    bits = np.unpackbits(np.ascontiguousarray(packed, dtype=np.uint8), bitorder="little")
    if bits.size < count * nbits:
        raise ValueError(f"{bits.size} packed bits hold fewer than {count} {nbits}-bit values")
    bits = bits[:count * nbits].reshape(count, nbits).astype(np.uint8)
    vals = np.zeros(count, np.uint8)
    for i in range(nbits):
        vals |= bits[:, i] << i
    if signed:
        v = vals.astype(np.int16)
        v[v >= (1 << (nbits - 1))] -= (1 << nbits)
        return v.astype(np.int8)
    return vals


def _f16(t: torch.Tensor) -> torch.Tensor:
    """Round a float32 tensor to float16 precision (kept in float32)."""
    return t.to(torch.float16).to(torch.float32)


# -------------------------------------------------------------------------------------- var types

@dataclass(frozen=True)
class VarType:
    dtype: str                     # MIL DataType name
    shape: Optional[tuple]         # None: unknown rank; entries None: unknown dim

    @property
    def rank(self):
        return None if self.shape is None else len(self.shape)

    def __str__(self):
        if self.shape is None:
            return f"{self.dtype}[*]"
        return f"{self.dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


def _parse_type(vt, where: str) -> VarType:
    kind = vt.WhichOneof("type")
    if kind != "tensorType":
        raise UnsupportedOpError(f"{where}: {kind} values are not supported (tensors only)")
    t = vt.tensorType
    dtype = _dtype_name(t.dataType)
    dims = []
    for d in t.dimensions:
        dk = d.WhichOneof("dimension")
        if dk == "constant":
            dims.append(int(d.constant.size))
        elif d.unknown.variadic:
            return VarType(dtype, None)
        else:
            dims.append(None)
    if len(dims) != int(t.rank):
        if t.rank == 0 and not dims:
            return VarType(dtype, ())
        raise ProgramError(f"{where}: tensor type has rank {t.rank} but {len(dims)} dimensions")
    return VarType(dtype, tuple(dims))


# ----------------------------------------------------------------------------------- parsed ops

class _Op:
    """One parsed MIL operation (protobuf -> python)."""

    def __init__(self, proto, ios: int):
        self.proto = proto
        self.type = proto.type
        self.ios = ios
        self.name = proto.outputs[0].name if proto.outputs else _attr_name(proto) or "<unnamed>"
        self.outputs = [(o.name, _parse_type(o.type, f"{self.where()}: output {o.name!r}"))
                        for o in proto.outputs]
        if proto.blocks:
            raise self.unsupported("ops with nested blocks (control flow) are not supported")
        # param -> list of ("var", name) | ("value", Value proto)
        self.inputs: dict = {}
        for k, arg in proto.inputs.items():
            binds = []
            for b in arg.arguments:
                which = b.WhichOneof("binding")
                binds.append(("var", b.name) if which == "name" else ("value", b.value))
            self.inputs[k] = binds
        # iOS16-style constexpr ops carry their parameters as attributes
        for k, v in proto.attributes.items():
            if k == "name" or (self.type == "const" and k == "val"):
                continue
            if k in self.inputs:
                raise self.error(f"parameter {k!r} given both as input and attribute")
            self.inputs[k] = [("value", v)]

    def where(self) -> str:
        return f"op {self.name!r} ({self.type})"

    def error(self, msg: str, cls=None) -> CoreMLRefError:
        return (cls or ProgramError)(f"{self.where()}: {msg}", self.name, self.type)

    def unsupported(self, msg: str) -> CoreMLRefError:
        return self.error(msg, UnsupportedOpError)


def _attr_name(proto) -> Optional[str]:
    if "name" not in proto.attributes:
        return None
    a = proto.attributes["name"]
    try:
        return a.immediateValue.tensor.strings.values[0]
    except (IndexError, AttributeError):
        return None


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


# ---- elementwise ---------------------------------------------------------------------------------

def _p(*names, opt=()):
    table = {n: True for n in names}
    table.update({n: False for n in opt})
    return lambda ios: table


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


# ---- tensor ops ----------------------------------------------------------------------------------

def _c_transpose(c):
    perm = c.ints("perm")
    return lambda a, pess: a["x"].permute(perm)


def _c_reshape(c):
    shape = c.ints("shape")
    ios = c.ios
    op = c.op

    def run(a, pess):
        x = a["x"]
        xs = list(x.shape)
        tgt = list(shape)
        if 0 in tgt:
            if ios >= 17:        # iOS17: 0 copies the dim aligned from the right, 1 if out of range
                for i, v in enumerate(tgt):
                    if v == 0:
                        j = len(xs) - (len(tgt) - i)
                        tgt[i] = xs[j] if j >= 0 else 1
            else:                # iOS15/16: 0 copies the same position; len(shape) == rank(x)
                if len(tgt) != len(xs):
                    raise op.error(f"shape {shape} has a 0 but a length different from rank {len(xs)}")
                tgt = [xs[i] if v == 0 else v for i, v in enumerate(tgt)]
        if sum(1 for v in tgt if v == -1) > 1 or any(v < -1 for v in tgt):
            raise op.error(f"invalid shape {shape}")
        return x.reshape(tgt)
    return run


def _c_expand_dims(c):
    axes = c.ints("axes")

    def run(a, pess):
        x = a["x"]
        r = x.dim() + len(axes)
        norm = sorted(_axis(ax, r, c.op) for ax in axes)
        if len(set(norm)) != len(norm):
            raise c.op.error(f"repeated axes {axes}")
        for ax in norm:
            x = x.unsqueeze(ax)
        return x
    return run


def _c_squeeze(c):
    axes = c.ints("axes", None)

    def run(a, pess):
        x = a["x"]
        if axes is None:
            return x.reshape([d for d in x.shape if d != 1])
        norm = sorted({_axis(ax, x.dim(), c.op) for ax in axes})
        for ax in norm:
            if x.shape[ax] != 1:
                raise c.op.error(f"cannot squeeze axis {ax} of size {x.shape[ax]}")
        return x.reshape([d for i, d in enumerate(x.shape) if i not in norm])
    return run


def _c_slice_by_index(c):
    op = c.op
    begin = c.ints("begin") if c.is_const("begin") else None
    end = c.ints("end") if c.is_const("end") else None
    if begin is None or end is None:
        raise op.unsupported("non-constant begin/end are not supported")
    stride = c.ints("stride", None)
    bm, em, sm = c.bools("begin_mask", None), c.bools("end_mask", None), c.bools("squeeze_mask", None)

    def run(a, pess):
        x = a["x"]
        r = x.dim()
        for nm, v in (("begin", begin), ("end", end), ("stride", stride), ("begin_mask", bm),
                      ("end_mask", em), ("squeeze_mask", sm)):
            if v is not None and len(v) != r:
                raise op.error(f"{nm} has {len(v)} entries for a rank-{r} input")
        squeeze = []
        for d in range(r):
            n = x.shape[d]
            s = 1 if stride is None else stride[d]
            if s == 0:
                raise op.error("stride 0")
            b = None if (bm and bm[d]) else begin[d]
            e = None if (em and em[d]) else end[d]
            if sm and sm[d]:
                i = begin[d] + n if begin[d] < 0 else begin[d]
                if not 0 <= i < n:
                    raise op.error(f"squeezed index {begin[d]} out of range for dim {d} of size {n}")
                x = x.narrow(d, i, 1)
                squeeze.append(d)
                continue
            start, stop, step = slice(b, e, s).indices(n)
            idx = range(start, stop, step)
            if step == 1:
                x = x.narrow(d, start, len(idx))
            elif step > 0:
                x = x[(slice(None),) * d + (slice(start, stop, step),)]
            else:
                x = x.index_select(d, torch.tensor(list(idx), dtype=torch.long))
        if squeeze:
            x = x.reshape([s for i, s in enumerate(x.shape) if i not in squeeze])
        return x
    return run


def _c_slice_by_size(c):
    begin = c.ints("begin")
    size = c.ints("size")

    def run(a, pess):
        x = a["x"]
        for d, (b, s) in enumerate(zip(begin, size)):
            n = x.shape[d]
            b = b + n if b < 0 else b
            s = n - b if s == -1 else s
            if b < 0 or s < 0 or b + s > n:
                raise c.op.error(f"slice begin {begin} size {size} out of range for {tuple(x.shape)}")
            x = x.narrow(d, b, s)
        return x
    return run


def _c_concat(c):
    axis = c.int("axis")
    inter = c.bool("interleave", False)

    def run(a, pess):
        vals = a["values"]
        ax = _axis(axis, vals[0].dim(), c.op)
        if not inter:
            return torch.cat(vals, ax)
        if len({v.shape[ax] for v in vals}) != 1:
            raise c.op.error("interleave needs equal sizes along the axis")
        st = torch.stack(vals, ax + 1)
        shp = list(vals[0].shape)
        shp[ax] *= len(vals)
        return st.reshape(shp)
    return run


def _c_stack(c):
    axis = c.int("axis")

    def run(a, pess):
        vals = a["values"]
        return torch.stack(vals, _axis(axis, vals[0].dim() + 1, c.op))
    return run


def _c_split(c):
    axis = c.int("axis")
    sizes = c.ints("split_sizes", None)
    num = c.int("num_splits", None) if c.has("num_splits") else None
    if (sizes is None) == (num is None):
        raise c.op.error("exactly one of num_splits / split_sizes must be given")
    nout = len(c.op.outputs)

    def run(a, pess):
        x = a["x"]
        ax = _axis(axis, x.dim(), c.op)
        n = x.shape[ax]
        if sizes is not None:
            sz = list(sizes)
            if sum(sz) != n:
                raise c.op.error(f"split_sizes {sz} do not add up to {n}")
        else:
            if num != nout:
                raise c.op.error(f"num_splits {num} but {nout} outputs")
            if n % num:
                raise c.op.error(f"size {n} not divisible by num_splits {num}")
            sz = [n // num] * num
        return list(torch.split(x, sz, ax))
    return run


def _c_tile(c):
    reps = c.ints("reps")

    def run(a, pess):
        x = a["x"]
        if len(reps) != x.dim():
            raise c.op.error(f"reps {reps} length differs from rank {x.dim()}")
        return x.repeat(reps)
    return run


def _c_pad(c):
    pad = c.ints("pad")
    mode = c.str("mode", "constant", choices=("constant", "reflect", "replicate"))
    val = c.float("constant_val", 0.0)
    if len(pad) % 2:
        raise c.op.error(f"pad {pad} has odd length")

    def run(a, pess):
        x = a["x"]
        n = len(pad) // 2
        if n > x.dim():
            raise c.op.error(f"pad covers {n} dims of a rank-{x.dim()} input")
        tp = []
        for i in reversed(range(n)):            # MIL: forward order over the last n dims
            tp += [pad[2 * i], pad[2 * i + 1]]
        if mode == "constant":
            return F.pad(x, tp, value=val)
        if n > 3:
            raise c.op.unsupported(f"{mode} padding of {n} dims")
        lead = x.shape[:x.dim() - n]
        y = F.pad(x.reshape(1, -1, *x.shape[x.dim() - n:]), tp, mode=mode)
        return y.reshape(*lead, *y.shape[2:])
    return run


def _c_identity(c):
    return lambda a, pess: a["x"]


def _c_select(c):
    return lambda a, pess: torch.where(a["cond"] if a["cond"].dtype == torch.bool else a["cond"] != 0,
                                       a["a"], a["b"])


# ---- gather --------------------------------------------------------------------------------------

def _norm_indices(idx: torch.Tensor, n: int, ios: int, op: _Op) -> torch.Tensor:
    idx = idx.to(torch.long)
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if hi >= n or lo < -n or (lo < 0 and ios >= 17):
            raise op.error(f"gather index out of range [{lo}, {hi}] for a dimension of size {n}"
                           + (" (negative indices are out of bounds from iOS17 on)" if lo < 0 else ""))
        if lo < 0:
            idx = torch.where(idx < 0, idx + n, idx)
    return idx


def _c_gather(c):
    axis = c.int("axis", 0)
    bd = c.int("batch_dims", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def g(x, idx, ax, bdims):
        if bdims == 0:
            flat = _norm_indices(idx.reshape(-1), x.shape[ax], ios, op)
            y = x.index_select(ax, flat)
            return y.reshape(*x.shape[:ax], *idx.shape, *x.shape[ax + 1:])
        if x.shape[0] != idx.shape[0]:
            raise op.error("batch dims of x and indices differ")
        return torch.stack([g(x[i], idx[i], ax - 1, bdims - 1) for i in range(x.shape[0])])

    def run(a, pess):
        x, idx = a["x"], a["indices"]
        ax = _axis(axis, x.dim(), op)
        if bd < 0 or bd > ax:
            raise op.error(f"batch_dims {bd} invalid for axis {ax}")
        return g(x, idx, ax, bd)
    return run


def _c_gather_along_axis(c):
    axis = c.int("axis", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def run(a, pess):
        x, idx = a["x"], a["indices"]
        ax = _axis(axis, x.dim(), op)
        if idx.dim() != x.dim() or any(i != j for d, (i, j) in enumerate(zip(idx.shape, x.shape)) if d != ax):
            raise op.error(f"indices {tuple(idx.shape)} do not match x {tuple(x.shape)} off axis {ax}")
        return torch.gather(x, ax, _norm_indices(idx, x.shape[ax], ios, op))
    return run


def _c_gather_nd(c):
    bd = c.int("batch_dims", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def g(x, idx, bdims):
        if bdims:
            return torch.stack([g(x[i], idx[i], bdims - 1) for i in range(x.shape[0])])
        k = idx.shape[-1]
        if k > x.dim():
            raise op.error(f"indices last dim {k} > rank {x.dim()}")
        flat = idx.reshape(-1, k)
        cols = tuple(_norm_indices(flat[:, j], x.shape[j], ios, op) for j in range(k))
        y = x[cols]
        return y.reshape(*idx.shape[:-1], *x.shape[k:])

    return lambda a, pess: g(a["x"], a["indices"], bd)


# ---- linear algebra ------------------------------------------------------------------------------

def _mm_pess(x, y):
    """fp16-accumulated matmul: chunks of K in fp32, rounded, accumulated in fp16."""
    k = x.shape[-1]
    acc = None
    for k0 in range(0, k, FP16_ACC_CHUNK):
        part = _f16(torch.matmul(x[..., k0:k0 + FP16_ACC_CHUNK], y[..., k0:k0 + FP16_ACC_CHUNK, :]))
        acc = part if acc is None else _f16(acc + part)
    return acc


def _c_linear(c):
    def run(a, pess):
        x, w, b = a["x"], a["weight"], a.get("bias")
        if w.dim() != 2 or x.shape[-1] != w.shape[1]:
            raise c.op.error(f"x {tuple(x.shape)} and weight {tuple(w.shape)} do not match")
        if pess and c.fp16:
            y = _mm_pess(x, w.t())
            return y if b is None else _f16(y + b)
        return F.linear(x, w, b)
    return run


def _c_matmul(c):
    tx, ty = c.bool("transpose_x", False), c.bool("transpose_y", False)

    def run(a, pess):
        x, y = a["x"], a["y"]
        if tx and x.dim() >= 2:
            x = x.transpose(-1, -2)
        if ty and y.dim() >= 2:
            y = y.transpose(-1, -2)
        if pess and c.fp16 and x.dim() >= 2 and y.dim() >= 2:
            return _mm_pess(x, y)
        return torch.matmul(x, y)
    return run


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_PAD_TYPES = ("valid", "same", "same_lower", "custom")


def _spatial_pads(op, pad_type, pad, in_sp, k_eff, strides):
    """[(before, after)] per spatial dim, following MIL's aggregated_pad."""
    n = len(k_eff)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    out = []
    for i, k, s in zip(in_sp, k_eff, strides):
        total = max(0, s * math.ceil(i / s) - i + k - s)
        small, big = total // 2, total - total // 2
        out.append((small, big) if pad_type == "same" else (big, small))
    return out


def _c_conv(c):
    wt = c.in_type("weight")
    if wt.shape is None or len(wt.shape) not in (3, 4, 5):
        raise c.op.unsupported(f"weight of type {wt} (1-3 spatial dims supported)")
    n = len(wt.shape) - 2
    strides = c.ints("strides", [1] * n, length=n)
    dil = c.ints("dilations", [1] * n, length=n)
    groups = c.int("groups", 1)
    pad_type = c.str("pad_type", "valid", choices=_PAD_TYPES)
    pad = c.ints("pad", [0] * 2 * n, length=2 * n)
    conv = _CONV[n]
    op = c.op

    def run(a, pess):
        x, w, b = a["x"], a["weight"], a.get("bias")
        if x.dim() != n + 2 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
            raise op.error(f"x {tuple(x.shape)}, weight {tuple(w.shape)}, groups {groups} do not match")
        k_eff = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]
        pads = _spatial_pads(op, pad_type, pad, x.shape[2:], k_eff, strides)
        if all(p0 == p1 for p0, p1 in pads):
            padding = [p0 for p0, _ in pads]
        else:
            tp = []
            for p0, p1 in reversed(pads):
                tp += [p0, p1]
            x = F.pad(x, tp)
            padding = [0] * n
        if not (pess and c.fp16):
            return conv(x, w, b, strides, padding, dil, groups)
        cin = w.shape[1]
        acc = None
        for c0 in range(0, cin, FP16_ACC_CHUNK):
            c1 = min(cin, c0 + FP16_ACC_CHUNK)
            if groups == 1:
                xs = x[:, c0:c1]
            else:
                xs = x.reshape(x.shape[0], groups, cin, *x.shape[2:])[:, :, c0:c1].reshape(
                    x.shape[0], groups * (c1 - c0), *x.shape[2:])
            part = _f16(conv(xs, w[:, c0:c1], None, strides, padding, dil, groups))
            acc = part if acc is None else _f16(acc + part)
        if b is not None:
            acc = _f16(acc + b.reshape(1, -1, *([1] * n)))
        return acc
    return run


def _c_pool(kind):
    def comp(c):
        ks = c.ints("kernel_sizes")
        n = len(ks)
        strides = c.ints("strides", [1] * n, length=n)
        pad_type = c.str("pad_type", choices=_PAD_TYPES)
        pad = c.ints("pad", [0] * 2 * n, length=2 * n)
        ceil = c.bool("ceil_mode", False)
        excl = c.bool("exclude_padding_from_average", False) if kind == "avg" else False
        op = c.op

        def run(a, pess):
            x = a["x"]
            if x.dim() != n + 2:
                raise op.error(f"input rank {x.dim()} for {n} kernel dims")
            sp = list(x.shape[2:])
            pads = _spatial_pads(op, pad_type, pad, sp, ks, strides)
            outs, extra = [], []
            for i, k, s, (p0, p1) in zip(sp, ks, strides, pads):
                span = i + p0 + p1 - k
                o = (span + (s - 1 if ceil else 0)) // s + 1
                if ceil and (o - 1) * s >= i + p0 and (p0 > 0 or p1 > 0):
                    o -= 1
                outs.append(o)
                extra.append(max(0, (o - 1) * s + k - (i + p0 + p1)))   # ceil-mode overhang
            tp, tp_extra = [], []
            for (p0, p1), e in zip(reversed(pads), reversed(extra)):
                tp += [p0, p1]
                tp_extra += [0, e]
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n] if kind == "max" else \
                {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
            if kind == "max":
                xp = F.pad(F.pad(x, tp, value=-math.inf), tp_extra, value=-math.inf)
                return pool(xp, ks, strides)
            xp = F.pad(F.pad(x, tp, value=0.0), tp_extra, value=0.0)
            ssum = pool(xp, ks, strides, divisor_override=1) if n > 1 else \
                pool(xp, ks, strides) * ks[0]
            ones = torch.ones((1, 1, *sp), dtype=x.dtype)
            if excl:
                mask = F.pad(F.pad(ones, tp, value=0.0), tp_extra, value=0.0)
            else:
                mask = F.pad(F.pad(ones, tp, value=1.0), tp_extra, value=0.0)
            cnt = pool(mask, ks, strides, divisor_override=1) if n > 1 else pool(mask, ks, strides) * ks[0]
            return ssum / cnt
        return run
    return comp


# ---- normalization / activations -----------------------------------------------------------------

def _c_batch_norm(c):
    eps = c.float("epsilon", 1e-5)

    def run(a, pess):
        x, m, v = a["x"], a["mean"], a["variance"]
        g, b = a.get("gamma"), a.get("beta")
        if x.dim() < 2:
            raise c.op.error(f"rank {x.dim()} input")
        if not (pess and c.fp16):
            return F.batch_norm(x, m.reshape(-1), v.reshape(-1), None if g is None else g.reshape(-1),
                                None if b is None else b.reshape(-1), False, 0.0, eps)
        shp = (1, -1) + (1,) * (x.dim() - 2)
        y = _f16(_f16(x - m.reshape(shp)) * _f16(torch.rsqrt(v.reshape(shp) + eps)))
        if g is not None:
            y = _f16(y * g.reshape(shp))
        if b is not None:
            y = y + b.reshape(shp)
        return y
    return run


def _c_layer_norm(c):
    axes = c.ints("axes", None)
    eps = c.float("epsilon", 1e-5)

    def run(a, pess):
        x, g, b = a["x"], a.get("gamma"), a.get("beta")
        r = x.dim()
        ax = list(range(r)) if axes is None else sorted(_axis(i, r, c.op) for i in axes)
        shp = [x.shape[i] for i in ax]
        for nm, t in (("gamma", g), ("beta", b)):
            if t is not None and list(t.shape) != shp:
                raise c.op.error(f"{nm} shape {tuple(t.shape)} != normalized shape {tuple(shp)}")
        trailing = ax == list(range(r - len(ax), r))
        if trailing and not (pess and c.fp16):
            return F.layer_norm(x, shp, g, b, eps)
        bshape = [x.shape[i] if i in ax else 1 for i in range(r)]
        if not (pess and c.fp16):
            mean = x.mean(ax, keepdim=True)
            d = x - mean
            var = (d * d).mean(ax, keepdim=True)
            y = d * torch.rsqrt(var + eps)
            if g is not None:
                y = y * g.reshape(bshape)
            return y if b is None else y + b.reshape(bshape)
        mean = _f16(x.mean(ax, keepdim=True))
        d = _f16(x - mean)
        var = _f16(_f16(d * d).mean(ax, keepdim=True))
        y = _f16(d * _f16(torch.rsqrt(var + eps)))
        if g is not None:
            y = _f16(y * g.reshape(bshape))
        return y if b is None else y + b.reshape(bshape)
    return run


def _softmax(x, ax, pess):
    if not pess:
        return torch.softmax(x, ax)
    z = _f16(x - x.amax(ax, keepdim=True))
    e = _f16(torch.exp(z))
    return e / _f16(e.sum(ax, keepdim=True))


def _c_softmax(c):
    axis = c.int("axis", -1)
    return lambda a, pess: _softmax(a["x"], _axis(axis, a["x"].dim(), c.op), pess and c.fp16)


def _c_sdpa(c):
    def run(a, pess):
        q, k, v, m = a["query"], a["key"], a["value"], a.get("attn_mask")
        if q.dim() < 3 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise c.op.error(f"query {tuple(q.shape)}, key {tuple(k.shape)}, value {tuple(v.shape)} mismatch")
        scale = 1.0 / math.sqrt(q.shape[-1])
        p16 = pess and c.fp16
        kt = k.transpose(-1, -2)
        s = _f16(_mm_pess(q, kt) * scale) if p16 else torch.matmul(q, kt) * scale
        if m is not None:
            if m.dtype == torch.bool:
                s = s.masked_fill(~m, -math.inf)
            else:
                s = s + m
                if p16:
                    s = _f16(s)
        p = _softmax(s, -1, p16)
        return _mm_pess(p, v) if p16 else torch.matmul(p, v)
    return run


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


# ---- constexpr (weight decompression, evaluated once at load) ------------------------------------

def _np_const(c, p):
    v = c.const(p)
    if isinstance(v, str):
        raise c.op.error(f"parameter {p!r} must be a tensor")
    return np.asarray(v)


def _c_affine_dequantize(c):
    q, zp, sc = _np_const(c, "quantized_data"), _np_const(c, "zero_point"), _np_const(c, "scale")
    axis = c.int("axis")
    ax = _axis(axis, q.ndim, c.op)

    def promote(p, nm):
        if p.ndim == 0:
            return p.reshape([1] * q.ndim)
        if p.ndim != 1 or p.shape[0] != q.shape[ax]:
            raise c.op.error(f"{nm} of shape {p.shape} for data {q.shape} along axis {ax}")
        shp = [1] * q.ndim
        shp[ax] = -1
        return p.reshape(shp)
    out = (q.astype(np.float32) - promote(zp, "zero_point").astype(np.float32)) * \
        promote(sc, "scale").astype(np.float32)
    return lambda a, pess: torch.from_numpy(out.astype(sc.dtype))


def _c_constexpr_cast(c):
    v = _np_const(c, "source_val")
    s = c.str("output_dtype", choices=("fp16", "fp32"))
    want = _DTYPE_STR[s]
    if c.out_type().dtype != want:
        raise c.op.error(f"output_dtype {s} but the output is declared {c.out_type().dtype}")
    return lambda a, pess: torch.from_numpy(v.astype(_NP_DTYPE[want]))


def _block_repeat(p, shape, c, nm):
    if p.ndim != len(shape):
        raise c.op.error(f"{nm} rank {p.ndim} != data rank {len(shape)}")
    for ax, (d, s) in enumerate(zip(shape, p.shape)):
        if s == 0 or d % s:
            raise c.op.error(f"{nm} shape {p.shape} does not tile data shape {tuple(shape)}")
        if d // s > 1:
            p = np.repeat(p, d // s, axis=ax)
    return p


_IDX_BITS = {"UINT1": 1, "UINT2": 2, "UINT3": 3, "UINT4": 4, "UINT6": 6, "UINT8": 8}


def _lut_dense(c, idx: np.ndarray, lut: np.ndarray, va, idx_dtype: str) -> np.ndarray:
    """iOS18 LUT decompression: per-group palettes (block-tiled over the indices), vector entries
    filled along ``vector_axis``."""
    if lut.ndim != idx.ndim + 2:
        raise c.op.error(f"lut rank {lut.ndim} != indices rank {idx.ndim} + 2")
    npal, vs = lut.shape[-2], lut.shape[-1]
    bits = _IDX_BITS.get(idx_dtype)
    if bits is None or npal != (1 << bits):
        raise c.op.error(f"{npal} palettes for {idx_dtype} indices")
    if vs > 1:
        if va is None:
            raise c.op.error("vector_axis is required when the lut holds vectors")
        va = _axis(va, idx.ndim, c.op)
        idx = np.swapaxes(idx, -1, va)
        lut = np.swapaxes(lut, -3, va)
    groups = lut.shape[:-2]
    # group id of every element: block index along each axis, row-major over the group grid
    gid = np.zeros(idx.shape, np.int64)
    for ax, (d, g) in enumerate(zip(idx.shape, groups)):
        if d % g:
            raise c.op.error(f"lut groups {tuple(groups)} do not tile indices {idx.shape}")
        shp = [1] * idx.ndim
        shp[ax] = d
        gid = gid * g + (np.arange(d) // (d // g)).reshape(shp)
    table = np.ascontiguousarray(lut).reshape(-1, npal, vs)
    out = table[gid.reshape(-1), idx.reshape(-1).astype(np.int64)]          # [N, vs]
    if vs > 1:
        out = out.reshape(*idx.shape[:-1], idx.shape[-1] * vs)
        out = np.swapaxes(out, -1, va)
    else:
        out = out.reshape(idx.shape)
    return np.ascontiguousarray(out)


def _blockwise(c, data: np.ndarray, scale: np.ndarray, off) -> np.ndarray:
    """scale * (data - offset), scale/offset block-tiled over data (iOS18 blockwise_shift_scale)."""
    if off is not None and off.shape != scale.shape:
        raise c.op.error(f"offset shape {off.shape} != scale shape {scale.shape}")
    s = _block_repeat(scale, data.shape, c, "scale").astype(np.float32)
    d = data.astype(np.float32)
    if off is not None:
        d = d - _block_repeat(off, data.shape, c, "offset").astype(np.float32)
    return (s * d).astype(scale.dtype)


def _sparse_dense(c, nz: np.ndarray, bits: np.ndarray, shape) -> np.ndarray:
    pos = np.flatnonzero(bits.reshape(-1))
    if pos.size != nz.size:
        raise c.op.error(f"mask has {pos.size} set bits for {nz.size} non-zero values")
    out = np.zeros(int(np.prod(shape)), nz.dtype)
    out[pos] = nz.reshape(-1)
    return out.reshape(shape)


def _const_kernel(*arrays):
    ts = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return lambda a, pess: ts[0] if len(ts) == 1 else ts


def _c_lut_to_dense(c):
    lut = _np_const(c, "lut")
    if c.ios < 18:                                   # iOS16: packed uint8 indices + shape
        packed = _np_const(c, "indices")
        shape = [int(s) for s in _np_const(c, "shape").reshape(-1)]
        nbits = int(round(math.log2(lut.size)))
        if lut.ndim != 1 or (1 << nbits) != lut.size or nbits not in (1, 2, 4, 6, 8):
            raise c.op.error(f"lut of shape {lut.shape} (2/4/16/64/256 entries expected)")
        idx = _unpack_bits(packed, nbits, int(np.prod(shape)), False) if nbits < 8 else \
            packed.reshape(-1)[:int(np.prod(shape))]
        return _const_kernel(lut[idx.astype(np.int64)].reshape(shape))
    va = c.int("vector_axis", None) if c.has("vector_axis") else None
    return _const_kernel(_lut_dense(c, _np_const(c, "indices"), lut, va, c.in_type("indices").dtype))


def _c_blockwise_shift_scale(c):
    off = _np_const(c, "offset") if c.has("offset") else None
    return _const_kernel(_blockwise(c, _np_const(c, "data"), _np_const(c, "scale"), off))


def _c_sparse_to_dense(c):
    nz = _np_const(c, "nonzero_data")
    mask = _np_const(c, "mask")
    if c.ios < 18:                                   # iOS16: packed uint8 bit mask + shape
        shape = [int(s) for s in _np_const(c, "shape").reshape(-1)]
        bits = np.unpackbits(mask.astype(np.uint8), bitorder="little")[:int(np.prod(shape))]
    else:                                            # iOS18: a uint1 tensor of the dense shape
        shape, bits = list(mask.shape), mask
    return _const_kernel(_sparse_dense(c, nz, bits, shape))


def _c_lut_to_sparse(c):
    """(mask, nonzero data) of de-palettized sparse weights (joint pruning + palettization)."""
    mask = _np_const(c, "indices_mask")
    nz_idx = _np_const(c, "indices_nonzero_data")
    lut = _np_const(c, "lut")
    va = c.int("vector_axis", None) if c.has("vector_axis") else None
    idx = _sparse_dense(c, nz_idx, mask, mask.shape)
    dense = _lut_dense(c, idx, lut, va, c.in_type("indices_nonzero_data").dtype)
    vs = lut.shape[-1]
    out_mask = np.repeat(mask, vs, axis=_axis(va, mask.ndim, c.op)) if vs > 1 else mask
    return _const_kernel(out_mask, dense[out_mask != 0].reshape(-1))


def _c_sparse_blockwise_shift_scale(c):
    """(mask, nonzero data) of dequantized sparse weights (joint pruning + linear quantization)."""
    mask = _np_const(c, "data_mask")
    data = _sparse_dense(c, _np_const(c, "nonzero_data"), mask, mask.shape)
    off = _np_const(c, "offset") if c.has("offset") else None
    deq = _blockwise(c, data, _np_const(c, "scale"), off)
    return _const_kernel(mask, deq[mask != 0].reshape(-1))


def _gather_params(ios):
    t = {"x": True, "indices": True, "axis": False}
    if ios >= 16:
        t["batch_dims"] = False
    if ios >= 17:
        t["validate_indices"] = False
    return t


def _gather_nd_params(ios):
    t = {"x": True, "indices": True}
    if ios >= 16:
        t["batch_dims"] = False
    if ios >= 17:
        t["validate_indices"] = False
    return t


def _gather_axis_params(ios):
    t = {"x": True, "indices": True, "axis": False}
    if ios >= 17:
        t["validate_indices"] = False
    return t


def _argmax_params(ios):
    t = {"x": True, "axis": False, "keep_dims": False}
    if ios >= 17:
        t["output_dtype"] = False
    return t


def _lut_params(ios):
    if ios >= 18:
        return {"indices": True, "lut": True, "vector_axis": False}
    return {"indices": True, "lut": True, "shape": True}


def _sparse_params(ios):
    if ios >= 18:
        return {"nonzero_data": True, "mask": True}
    return {"nonzero_data": True, "mask": True, "shape": True}


_POOL = _p("x", "kernel_sizes", "pad_type", opt=("strides", "pad", "ceil_mode"))

_OPS: dict = {
    # elementwise binary (numpy broadcasting)
    "add": _OpDef(_p("x", "y"), _binary(torch.add)),
    "sub": _OpDef(_p("x", "y"), _binary(torch.sub)),
    "mul": _OpDef(_p("x", "y"), _binary(torch.mul)),
    "real_div": _OpDef(_p("x", "y"), _binary(torch.div, float_only=True)),
    "floor_div": _OpDef(_p("x", "y"), _binary(lambda x, y: torch.div(x, y, rounding_mode="floor"))),
    "mod": _OpDef(_p("x", "y"), _binary(torch.remainder)),
    "pow": _OpDef(_p("x", "y"), _binary(torch.pow, float_only=True)),
    "maximum": _OpDef(_p("x", "y"), _binary(torch.maximum)),
    "minimum": _OpDef(_p("x", "y"), _binary(torch.minimum)),
    "equal": _OpDef(_p("x", "y"), _binary(torch.eq), same_float=False),
    "not_equal": _OpDef(_p("x", "y"), _binary(torch.ne), same_float=False),
    "greater": _OpDef(_p("x", "y"), _binary(torch.gt), same_float=False),
    "greater_equal": _OpDef(_p("x", "y"), _binary(torch.ge), same_float=False),
    "less": _OpDef(_p("x", "y"), _binary(torch.lt), same_float=False),
    "less_equal": _OpDef(_p("x", "y"), _binary(torch.le), same_float=False),
    "logical_and": _OpDef(_p("x", "y"), _binary(torch.logical_and, bool_only=True)),
    "logical_or": _OpDef(_p("x", "y"), _binary(torch.logical_or, bool_only=True)),
    "logical_xor": _OpDef(_p("x", "y"), _binary(torch.logical_xor, bool_only=True)),
    "logical_not": _OpDef(_p("x"), _unary(torch.logical_not, float_only=False)),
    # elementwise unary / activations
    "relu": _OpDef(_p("x"), _unary(torch.relu)),
    "relu6": _OpDef(_p("x"), _unary(lambda x: torch.clamp(x, 0.0, 6.0))),
    "sigmoid": _OpDef(_p("x"), _unary(torch.sigmoid)),
    "tanh": _OpDef(_p("x"), _unary(torch.tanh)),
    "silu": _OpDef(_p("x"), _unary(F.silu)),
    "softplus": _OpDef(_p("x"), _unary(F.softplus)),
    "exp": _OpDef(_p("x"), _unary(torch.exp)),
    "exp2": _OpDef(_p("x"), _unary(torch.exp2)),
    "sqrt": _OpDef(_p("x"), _unary(torch.sqrt)),
    "erf": _OpDef(_p("x"), _unary(torch.erf)),
    "abs": _OpDef(_p("x"), _unary(torch.abs, float_only=False)),
    "square": _OpDef(_p("x"), _unary(torch.square, float_only=False)),
    "floor": _OpDef(_p("x"), _unary(torch.floor)),
    "ceil": _OpDef(_p("x"), _unary(torch.ceil)),
    "sign": _OpDef(_p("x"), _unary(torch.sign, float_only=False)),
    "sin": _OpDef(_p("x"), _unary(torch.sin)),
    "cos": _OpDef(_p("x"), _unary(torch.cos)),
    "rsqrt": _OpDef(_p("x", opt=("epsilon",)), _c_eps_unary(lambda x, e: torch.rsqrt(x + e), 1e-12),
                    static=("epsilon",)),
    "inverse": _OpDef(_p("x", opt=("epsilon",)), _c_eps_unary(lambda x, e: 1.0 / (x + e), 1e-4),
                      static=("epsilon",)),
    "log": _OpDef(_p("x", opt=("epsilon",)), _c_eps_unary(lambda x, e: torch.log(x + e), 1e-45),
                  static=("epsilon",)),
    "leaky_relu": _OpDef(_p("x", "alpha"),
                         _c_alpha(lambda x, al: torch.where(x >= 0, x, al * x), [("alpha", 0.01)]),
                         static=("alpha",)),
    "elu": _OpDef(_p("x", "alpha"),
                  _c_alpha(lambda x, al: torch.where(x > 0, x, al * (torch.exp(x) - 1)), [("alpha", 1.0)]),
                  static=("alpha",)),
    "clip": _OpDef(_p("x", "alpha", "beta"), _c_clip, static=("alpha", "beta")),
    "gelu": _OpDef(_p("x", opt=("mode",)), _c_gelu, static=("mode",)),
    "softmax": _OpDef(_p("x", opt=("axis",)), _c_softmax, static=("axis",)),
    "cast": _OpDef(_p("x", "dtype"), _c_cast, static=("dtype",), same_float=False),
    "identity": _OpDef(_p("x"), _c_identity),
    "select": _OpDef(_p("cond", "a", "b"), _c_select),
    # tensor shape / movement
    "transpose": _OpDef(_p("x", "perm"), _c_transpose, static=("perm",)),
    "reshape": _OpDef(_p("x", "shape"), _c_reshape, static=("shape",)),
    "expand_dims": _OpDef(_p("x", "axes"), _c_expand_dims, static=("axes",)),
    "squeeze": _OpDef(_p("x", opt=("axes",)), _c_squeeze, static=("axes",)),
    "slice_by_index": _OpDef(_p("x", "begin", "end", opt=("stride", "begin_mask", "end_mask",
                                                            "squeeze_mask")),
                             _c_slice_by_index,
                             static=("begin", "end", "stride", "begin_mask", "end_mask", "squeeze_mask")),
    "slice_by_size": _OpDef(_p("x", "begin", "size"), _c_slice_by_size, static=("begin", "size")),
    "concat": _OpDef(_p("values", "axis", opt=("interleave",)), _c_concat, static=("axis", "interleave"),
                     variadic=("values",)),
    "stack": _OpDef(_p("values", "axis"), _c_stack, static=("axis",), variadic=("values",)),
    "split": _OpDef(_p("x", "axis", opt=("num_splits", "split_sizes")), _c_split,
                    static=("axis", "num_splits", "split_sizes")),
    "tile": _OpDef(_p("x", "reps"), _c_tile, static=("reps",)),
    "pad": _OpDef(_p("x", "pad", opt=("mode", "constant_val")), _c_pad,
                  static=("pad", "mode", "constant_val")),
    "gather": _OpDef(_gather_params, _c_gather, static=("axis", "batch_dims", "validate_indices")),
    "gather_nd": _OpDef(_gather_nd_params, _c_gather_nd, static=("batch_dims", "validate_indices")),
    "gather_along_axis": _OpDef(_gather_axis_params, _c_gather_along_axis, static=("axis", "validate_indices")),
    # linear algebra / conv / pooling
    "linear": _OpDef(_p("x", "weight", opt=("bias",)), _c_linear),
    "matmul": _OpDef(_p("x", "y", opt=("transpose_x", "transpose_y")), _c_matmul,
                     static=("transpose_x", "transpose_y")),
    "conv": _OpDef(_p("x", "weight", opt=("bias", "strides", "pad_type", "pad", "dilations", "groups")),
                   _c_conv, static=("strides", "pad_type", "pad", "dilations", "groups")),
    "avg_pool": _OpDef(lambda ios: {**_POOL(ios), "exclude_padding_from_average": False}, _c_pool("avg"),
                       static=("kernel_sizes", "strides", "pad_type", "pad", "ceil_mode",
                               "exclude_padding_from_average")),
    "max_pool": _OpDef(_POOL, _c_pool("max"),
                       static=("kernel_sizes", "strides", "pad_type", "pad", "ceil_mode")),
    "scaled_dot_product_attention": _OpDef(_p("query", "key", "value", opt=("attn_mask",)), _c_sdpa,
                                           min_ios=18, same_float=False),
    # normalization
    "batch_norm": _OpDef(_p("x", "mean", "variance", opt=("gamma", "beta", "epsilon")), _c_batch_norm,
                         static=("epsilon",)),
    "layer_norm": _OpDef(_p("x", opt=("axes", "gamma", "beta", "epsilon")), _c_layer_norm,
                         static=("axes", "epsilon")),
    # reductions
    "reduce_sum": _OpDef(_REDUCE_PARAMS, _reduce(_red_sum, _pess_sum), static=("axes", "keep_dims")),
    "reduce_mean": _OpDef(_REDUCE_PARAMS, _reduce(_red_mean, _pess_mean), static=("axes", "keep_dims")),
    "reduce_max": _OpDef(_REDUCE_PARAMS, _reduce(lambda x, ax, k: x.amax(ax, keepdim=k)),
                         static=("axes", "keep_dims")),
    "reduce_min": _OpDef(_REDUCE_PARAMS, _reduce(lambda x, ax, k: x.amin(ax, keepdim=k)),
                         static=("axes", "keep_dims")),
    "reduce_prod": _OpDef(_REDUCE_PARAMS, _reduce(_red_prod), static=("axes", "keep_dims")),
    "reduce_l2_norm": _OpDef(_REDUCE_PARAMS, _reduce(_red_l2, _pess_l2), static=("axes", "keep_dims")),
    "reduce_l1_norm": _OpDef(_REDUCE_PARAMS, _reduce(lambda x, ax, k: x.abs().sum(ax, keepdim=k)),
                             static=("axes", "keep_dims")),
    "reduce_sum_square": _OpDef(_REDUCE_PARAMS, _reduce(lambda x, ax, k: (x * x).sum(ax, keepdim=k),
                                                        _pess_sumsq), static=("axes", "keep_dims")),
    "reduce_log_sum_exp": _OpDef(_REDUCE_PARAMS, _reduce(lambda x, ax, k: torch.logsumexp(x, ax, keepdim=k)),
                                 static=("axes", "keep_dims")),
    "reduce_argmax": _OpDef(_argmax_params, _argreduce(torch.argmax),
                            static=("axis", "keep_dims", "output_dtype")),
    "reduce_argmin": _OpDef(_argmax_params, _argreduce(torch.argmin),
                            static=("axis", "keep_dims", "output_dtype")),
    # weight decompression (constexpr: evaluated at load time)
    "constexpr_affine_dequantize": _OpDef(_p("quantized_data", "zero_point", "scale", "axis"),
                                          _c_affine_dequantize, constexpr=True, min_ios=16, same_float=False),
    "constexpr_cast": _OpDef(_p("source_val", "output_dtype"), _c_constexpr_cast, constexpr=True,
                             min_ios=16, same_float=False),
    "constexpr_lut_to_dense": _OpDef(_lut_params, _c_lut_to_dense, constexpr=True, min_ios=16,
                                     same_float=False),
    "constexpr_sparse_to_dense": _OpDef(_sparse_params, _c_sparse_to_dense, constexpr=True, min_ios=16,
                                        same_float=False),
    "constexpr_blockwise_shift_scale": _OpDef(_p("data", "scale", opt=("offset",)), _c_blockwise_shift_scale,
                                              constexpr=True, min_ios=18, same_float=False),
    "constexpr_lut_to_sparse": _OpDef(_p("indices_mask", "indices_nonzero_data", "lut", opt=("vector_axis",)),
                                      _c_lut_to_sparse, constexpr=True, min_ios=18, same_float=False),
    "constexpr_sparse_blockwise_shift_scale": _OpDef(_p("data_mask", "nonzero_data", "scale", opt=("offset",)),
                                                     _c_sparse_blockwise_shift_scale, constexpr=True,
                                                     min_ios=18, same_float=False),
}

#: op types the interpreter evaluates (plus ``const``)
SUPPORTED_OPS = tuple(sorted(["const", *_OPS]))


# ------------------------------------------------------------------------------------------ program

@dataclass
class _Bound:
    kind: int                 # 0 const tensor, 1 runtime var, 2 variadic list of (kind, ref)
    ref: object
    nf: int = 0               # const: 0 finite, 1 holds +-inf, 2 holds NaN


def _nf_state(t: torch.Tensor) -> tuple:
    """(state, max |x| over the finite values): state 0 all finite, 1 some +-inf, 2 some NaN."""
    if not t.is_floating_point() or not t.numel():
        return 0, 0.0
    m = float(torch.linalg.vector_norm(t, ord=math.inf))      # max |x|, NaN-propagating
    if math.isfinite(m):
        return 0, m
    if math.isnan(m):
        return 2, m
    fin = torch.where(torch.isfinite(t), t.abs(), torch.zeros((), dtype=t.dtype))
    return 1, float(fin.max())


@dataclass
class _Compiled:
    name: str
    type: str
    bind: list                # [(param, _Bound)]
    fn: Callable
    outputs: list             # [(name, VarType, torch dtype)]
    free: tuple = ()          # runtime vars whose last use is this op


@dataclass
class InputInfo:
    name: str
    type: VarType                     # the MIL function input
    image: Optional[dict] = None      # {"color_space", "width", "height"} for ImageType inputs


class Program:
    """A parsed, weight-loaded, precompiled ML Program. Build with :func:`load_program`."""

    def __init__(self, path: Union[str, Path], function: Optional[str] = None):
        t0 = time.perf_counter()
        self.path = Path(path)
        if not self.path.is_dir():
            raise ProgramError(f"{self.path}: not an .mlpackage directory")
        self.spec = read_spec(self.path)
        if self.spec.WhichOneof("Type") != "mlProgram":
            raise UnsupportedOpError(f"{self.path.name}: model type {self.spec.WhichOneof('Type')!r}, "
                                     f"only ML Programs (mlProgram) are interpreted")
        prog = self.spec.mlProgram
        fname = function or self.spec.description.defaultFunctionName or "main"
        if fname not in prog.functions:
            raise ProgramError(f"{self.path.name}: no function {fname!r} (has {sorted(prog.functions)})")
        fn = prog.functions[fname]
        self.function = fname
        self.opset = fn.opset
        if not self.opset.startswith("CoreML") or not self.opset[6:].isdigit():
            raise UnsupportedOpError(f"{self.path.name}: unknown opset {self.opset!r}")
        self.ios = int(self.opset[6:]) + 10
        if not 15 <= self.ios <= 19:
            raise UnsupportedOpError(f"{self.path.name}: opset {self.opset} (iOS{self.ios}) is not supported "
                                     f"(CoreML5..CoreML9)")
        if self.opset not in fn.block_specializations:
            raise ProgramError(f"{self.path.name}: no block for opset {self.opset}")
        block = fn.block_specializations[self.opset]
        self._data_dir = self.path / _DATA_DIR
        self._load_warnings: list = []
        self._weights: dict = {}
        self._blob_files: dict = {}

        # inputs (function) + ImageType details (description)
        desc_in = {f.name: f for f in self.spec.description.input}
        self.inputs: list = []
        self._types: dict = {}
        for nv in fn.inputs:
            vt = _parse_type(nv.type, f"function input {nv.name!r}")
            image = None
            feat = desc_in.get(nv.name)
            if feat is not None and feat.type.WhichOneof("Type") == "imageType":
                from coremltools.proto import FeatureTypes_pb2 as ft
                it = feat.type.imageType
                image = {"color_space": ft.ImageFeatureType.ColorSpace.Name(it.colorSpace),
                         "width": int(it.width), "height": int(it.height)}
            self.inputs.append(InputInfo(nv.name, vt, image))
            self._types[nv.name] = vt
        if [i.name for i in self.inputs] != [f.name for f in self.spec.description.input]:
            raise ProgramError(f"{self.path.name}: function inputs {[i.name for i in self.inputs]} != model "
                               f"description inputs {[f.name for f in self.spec.description.input]}")
        self.output_names = list(block.outputs)

        # parse + compile
        self._consts: dict = {}           # name -> numpy array | str   (declared dtype)
        self._kconsts: dict = {}          # name -> torch tensor for kernels (fp16 widened to fp32)
        self._ops: list = []
        hist: dict = collections.Counter()
        n_const = 0
        for proto in block.operations:
            op = _Op(proto, self.ios)
            hist[op.type] += 1
            if op.type == "const":
                n_const += 1
                self._add_const(op)
                continue
            self._compile(op)
        for o in self.output_names:
            if o not in self._types:
                raise ProgramError(f"{self.path.name}: block output {o!r} is never produced")
        self._plan_frees()

        out16 = any(t.dtype == "FLOAT16" for c in self._ops for _, t, _ in c.outputs)
        self.precision = "fp16" if out16 else "fp32"
        self.load_time_s = time.perf_counter() - t0
        self.diagnostics = {
            "path": str(self.path), "opset": self.opset, "ios": self.ios, "precision": self.precision,
            "op_count": len(self._ops), "const_count": n_const,
            "weight_blobs": sum(int(v.get("count", 0)) for v in self._blob_files.values()),
            "op_types": dict(sorted((k, v) for k, v in hist.items() if k != "const")),
            "load_time_s": round(self.load_time_s, 3),
            "first_nonfinite": None, "overflow_warnings": [], "warnings": list(self._load_warnings),
            "run_time_s": None, "pessimistic": None,
        }
        self._weights.clear()     # blobs were copied or viewed into tensors; drop the file map

    # ---------------------------------------------------------------- values and types
    def _weight_data(self, file_name: str, where: str) -> np.ndarray:
        if not file_name.startswith("@model_path/"):
            raise ProgramError(f"{where}: weight file {file_name!r} is not under @model_path/")
        path = self._data_dir / file_name[len("@model_path/"):]
        key = str(path)
        if key not in self._weights:
            if not path.is_file():
                raise ProgramError(f"{where}: weight file {path} is missing")
            try:
                self._blob_files[key] = read_weight_blobs(path)   # walk: header count, every sentinel
            except CoreMLStructureError as e:
                # every blob the program uses is still checked on its own (read_weight_blob), so the
                # op whose weights are damaged is the one named; the walk failure stays a warning
                self._blob_files[key] = {"error": str(e)}
                self._load_warnings.append(f"weight file walk: {e}")
            self._weights[key] = np.fromfile(path, dtype=np.uint8)
        return self._weights[key]

    def _value(self, value, vt: VarType, where: str):
        """A MIL Value (immediate or blob) -> numpy array of the declared dtype (str for strings)."""
        if vt.shape is None or any(d is None for d in vt.shape):
            raise ProgramError(f"{where}: constant with unknown shape {vt}")
        shape = vt.shape
        n = int(np.prod(shape)) if shape else 1
        dt = vt.dtype
        kind = value.WhichOneof("value")
        if dt == "BFLOAT16" or dt.startswith("FLOAT8"):
            raise UnsupportedOpError(f"{where}: {dt} constants are not supported")
        if kind == "blobFileValue":
            bfv = value.blobFileValue
            data = self._weight_data(bfv.fileName, where)
            try:
                bdt, raw = read_weight_blob(data, int(bfv.offset), bfv.fileName)
            except CoreMLStructureError as e:
                raise ProgramError(f"{where}: {e}") from e
            if _BLOB_CODE.get(dt) != bdt:
                held = {v: k for k, v in _BLOB_CODE.items()}.get(bdt, f"dtype code {bdt}")
                raise ProgramError(f"{where}: weight blob at offset {bfv.offset} holds {held}, the program "
                                   f"declares {dt}")
            if dt in _SUBBYTE_BITS:
                bits = _SUBBYTE_BITS[dt]
                if raw.size != math.ceil(n * bits / 8):
                    raise ProgramError(f"{where}: blob has {raw.size} bytes for {n} {dt} values")
                arr = _unpack_bits(raw, bits, n, dt == "INT4")
            else:
                item = np.dtype(_NP_DTYPE[dt]).itemsize
                if raw.size != n * item:
                    raise ProgramError(f"{where}: blob has {raw.size} bytes for {n} {dt} values of shape "
                                       f"{shape}")
                arr = raw.view(_NP_DTYPE[dt])
            return arr.reshape(shape)
        if kind != "immediateValue":
            raise ProgramError(f"{where}: value without data")
        iv = value.immediateValue
        if iv.WhichOneof("value") != "tensor":
            raise UnsupportedOpError(f"{where}: immediate {iv.WhichOneof('value')} values are not supported")
        t = iv.tensor
        field = t.WhichOneof("value")
        if dt == "STRING":
            vals = [s.decode() if isinstance(s, bytes) else s for s in t.strings.values]
            if len(vals) != n:
                raise ProgramError(f"{where}: {len(vals)} strings for shape {shape}")
            return vals[0] if shape == () else np.array(vals, dtype=object).reshape(shape)
        if field == "bytes":
            raw = np.frombuffer(t.bytes.values, np.uint8)
            if dt in _SUBBYTE_BITS:
                arr = _unpack_bits(raw, _SUBBYTE_BITS[dt], n, dt == "INT4")
            else:
                arr = raw.view(_NP_DTYPE[dt]) if raw.size else np.zeros(0, _NP_DTYPE[dt])
        elif field in ("floats", "doubles", "ints", "longInts", "bools"):
            src = getattr(t, field).values
            arr = np.asarray(src, {"floats": np.float32, "doubles": np.float64, "ints": np.int64,
                                   "longInts": np.int64, "bools": np.bool_}[field])
            if _kind(dt) == "int" and arr.dtype.kind == "f":
                raise ProgramError(f"{where}: float data for a {dt} constant")
            arr = arr.astype(_NP_DTYPE[dt])
        elif field is None:
            arr = np.zeros(0, _NP_DTYPE[dt])
        else:
            raise UnsupportedOpError(f"{where}: tensor field {field!r}")
        if arr.size != n:
            raise ProgramError(f"{where}: {arr.size} values for shape {shape}")
        return arr.reshape(shape)

    def _add_const(self, op: _Op):
        val = op.proto.attributes["val"] if "val" in op.proto.attributes else None
        if val is None or len(op.outputs) != 1:
            raise op.error("const without a 'val' attribute or with several outputs")
        name, vt = op.outputs[0]
        declared = _parse_type(val.type, op.where())
        if declared.dtype != vt.dtype or declared.shape != vt.shape:
            raise op.error(f"value type {declared} != output type {vt}")
        self._define(name, vt, op)
        self._consts[name] = self._value(val, vt, op.where())

    def _define(self, name, vt, op):
        if name in self._types:
            raise op.error(f"variable {name!r} defined twice")
        self._types[name] = vt

    def _is_const_binding(self, b) -> bool:
        return b[0] == "value" or b[1] in self._consts

    def _binding_type(self, b, op: _Op) -> VarType:
        if b[0] == "value":
            return _parse_type(b[1].type, op.where())
        if b[1] not in self._types:
            raise op.error(f"input {b[1]!r} is used before it is defined")
        return self._types[b[1]]

    def _const_value(self, b, op: _Op):
        if b[0] == "value":
            return self._value(b[1], _parse_type(b[1].type, op.where()), op.where())
        return self._consts[b[1]]

    def _kernel_const(self, b, op: _Op) -> torch.Tensor:
        key = b[1] if b[0] == "var" else None
        if key is not None and key in self._kconsts:
            return self._kconsts[key]
        v = self._const_value(b, op)
        if isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object):
            raise op.error("a string constant where a tensor is expected")
        arr = np.asarray(v)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        elif arr.dtype in (np.uint32, np.uint64):
            arr = arr.astype(np.int64)
        arr = np.ascontiguousarray(arr)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())   # weights: read-only mmap views
        if t.dtype == torch.float16:
            t = t.float()
        if key is not None:
            self._kconsts[key] = t
        return t

    # ---------------------------------------------------------------- compile
    def _compile(self, op: _Op):
        d = _OPS.get(op.type)
        if d is None:
            raise op.unsupported(f"unknown op type {op.type!r}")
        if self.ios < d.min_ios:
            raise op.unsupported(f"not available in opset {self.opset} (needs iOS{d.min_ios})")
        params = d.params(self.ios)
        for p in op.inputs:
            if p not in params:
                raise op.unsupported(f"unknown parameter {p!r} (known: {', '.join(params)})")
        for p, req in params.items():
            if req and p not in op.inputs:
                raise op.error(f"missing required parameter {p!r}")
        for p, binds in op.inputs.items():
            if p not in d.variadic and len(binds) != 1:
                raise op.error(f"parameter {p!r} bound to {len(binds)} values")
            for b in binds:
                self._binding_type(b, op)                  # defined before use
        # float dtype domain: float inputs carry the output's float dtype
        if d.same_float and op.outputs and _kind(op.outputs[0][1].dtype) == "float":
            want = op.outputs[0][1].dtype
            for p, binds in op.inputs.items():
                if p in d.static:
                    continue
                for b in binds:
                    t = self._binding_type(b, op)
                    if _kind(t.dtype) == "float" and t.dtype != want:
                        raise op.error(f"input {p!r} is {t.dtype} but the output is {want} "
                                       f"(mixed precision inside an op)")
        ctx = _Ctx(op, self)
        for p in d.static:
            if p in op.inputs and not ctx.is_const(p):
                raise op.unsupported(f"parameter {p!r} must be a constant here")
        fn = d.compile(ctx)
        outs = [(n, vt, _TORCH_DTYPE.get(vt.dtype)) for n, vt in op.outputs]
        for n, vt, tdt in outs:
            if tdt is None:
                raise op.unsupported(f"output {n!r} has unsupported dtype {vt.dtype}")
        if d.constexpr:
            for p, binds in op.inputs.items():
                if not all(self._is_const_binding(b) for b in binds):
                    raise op.error(f"constexpr parameter {p!r} is not constant")
            res = fn({}, False)
            res = list(res) if isinstance(res, (list, tuple)) else [res]
            if len(res) != len(outs):
                raise op.error(f"{len(res)} results for {len(outs)} outputs")
            for (n, vt, tdt), t in zip(outs, res):
                t = self._conform(op.name, op.type, t, vt, tdt)
                self._define(n, vt, op)
                self._consts[n] = t.numpy()
            return
        bind = []
        for p, binds in op.inputs.items():
            if p in d.static:
                continue
            items = []
            for b in binds:
                if self._is_const_binding(b):
                    kt = self._kernel_const(b, op)
                    items.append(_Bound(0, kt, _nf_state(kt)[0]))
                else:
                    items.append(_Bound(1, b[1]))
            bind.append((p, _Bound(2, items) if p in d.variadic else items[0]))
        for n, vt, _ in outs:
            self._define(n, vt, op)
        self._ops.append(_Compiled(op.name, op.type, bind, fn, outs))

    def _plan_frees(self):
        last: dict = {}
        for i, c in enumerate(self._ops):
            for _, b in c.bind:
                for x in (b.ref if b.kind == 2 else [b]):
                    if x.kind == 1:
                        last[x.ref] = i
        keep = set(self.output_names)
        per: dict = collections.defaultdict(list)
        for name, i in last.items():
            if name not in keep:
                per[i].append(name)
        for i, c in enumerate(self._ops):
            c.free = tuple(per.get(i, ()))

    @staticmethod
    def _conform(name, typ, t, vt: VarType, tdt) -> torch.Tensor:
        """Round/cast a kernel result to the declared dtype; check kind and shape."""
        where = f"op {name!r} ({typ})"
        if not isinstance(t, torch.Tensor):
            raise ProgramError(f"{where}: kernel returned {type(t).__name__}", name, typ)
        want = _kind(vt.dtype)
        got = _torch_kind(t)
        if want != got:
            raise ProgramError(f"{where}: computed a {got} tensor but the output is declared {vt}", name, typ)
        if t.dtype != tdt:
            t = t.to(tdt)
        if vt.shape is not None:
            if t.dim() != len(vt.shape) or any(d is not None and d != s for d, s in zip(vt.shape, t.shape)):
                raise ProgramError(f"{where}: output shape {tuple(t.shape)} disagrees with the declared type "
                                   f"{vt}", name, typ)
        return t

    # ---------------------------------------------------------------- inputs
    def _feed(self, info: InputInfo, value) -> torch.Tensor:
        vt = info.type
        if info.image is not None:
            arr = self._image_array(info, value)
        else:
            arr = np.asarray(value)
        dt = vt.dtype
        if _kind(dt) == "int":
            if arr.dtype.kind == "f":
                if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                    raise ProgramError(f"input {info.name!r}: non-integer values for a {dt} input")
            elif arr.dtype.kind not in "iub":
                raise ProgramError(f"input {info.name!r}: {arr.dtype} data for a {dt} input")
            info_ = np.iinfo(_NP_DTYPE[dt])
            if arr.size and (arr.min() < info_.min or arr.max() > info_.max):
                raise ProgramError(f"input {info.name!r}: values outside the {dt} range")
        elif _kind(dt) == "float" and arr.dtype.kind not in "fiub":
            raise ProgramError(f"input {info.name!r}: {arr.dtype} data for a {dt} input")
        if vt.shape is not None:
            if arr.ndim != len(vt.shape) or any(d is not None and d != s for d, s in zip(vt.shape, arr.shape)):
                raise ProgramError(f"input {info.name!r}: shape {arr.shape} does not match the declared {vt}")
        arr = np.ascontiguousarray(arr.astype(_NP_DTYPE[dt]))
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        elif arr.dtype in (np.uint32, np.uint64):
            arr = arr.astype(np.int64)
        return torch.from_numpy(arr)

    def _image_array(self, info: InputInfo, value) -> np.ndarray:
        img = info.image
        cs = img["color_space"]
        gray = cs.startswith("GRAYSCALE")
        try:
            from PIL import Image
            if isinstance(value, Image.Image):
                value = np.asarray(value.convert("L" if gray else "RGB"))
        except ImportError:   # pragma: no cover
            pass
        arr = np.asarray(value)
        H, W = img["height"], img["width"]
        if arr.dtype == np.uint8:
            if gray:
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
                if arr.shape != (H, W):
                    raise ProgramError(f"input {info.name!r}: grayscale image of shape {arr.shape}, "
                                       f"expected ({H}, {W})")
                chw = arr[None].astype(np.float32)
            else:
                if arr.shape != (H, W, 3):
                    raise ProgramError(f"input {info.name!r}: uint8 image of shape {arr.shape}, expected "
                                       f"({H}, {W}, 3) RGB")
                chw = arr.transpose(2, 0, 1).astype(np.float32)
        elif arr.dtype.kind == "f":
            c = 1 if gray else 3
            if arr.ndim == 3:
                arr = arr[None]
            if arr.shape != (1, c, H, W):
                raise ProgramError(f"input {info.name!r}: float image of shape {arr.shape}, expected "
                                   f"(1, {c}, {H}, {W}) with 0..255 values")
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ProgramError(f"input {info.name!r}: float image values outside 0..255")
            if arr.size and arr.max() <= 1.0:
                self.diagnostics["warnings"].append(
                    f"input {info.name!r}: every pixel is <= 1.0; ImageType inputs take 0..255 values "
                    f"(the program applies its own scale)")
            chw = arr[0].astype(np.float32)
        else:
            raise ProgramError(f"input {info.name!r}: image data of dtype {arr.dtype}; pass uint8 HxWx3 "
                               f"or float [1,3,H,W] 0..255")
        if cs == "BGR":
            chw = chw[::-1]
        return np.ascontiguousarray(chw[None])

    # ---------------------------------------------------------------- run
    def _execute(self, inputs: dict, pessimistic: bool, keep_all: bool = False):
        names = [i.name for i in self.inputs]
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise ProgramError(f"{self.path.name}: inputs {sorted(inputs)} != expected {names}")
        self.diagnostics["warnings"] = list(self._load_warnings)
        env = {i.name: self._feed(i, inputs[i.name]) for i in self.inputs}
        acts = {} if keep_all else None
        first_bad = None
        overflow = []
        check_overflow = self.precision == "fp32"
        state: dict = {}          # runtime vars holding non-finite values: 1 +-inf, 2 NaN
        for n, t in env.items():
            st, _ = _nf_state(t)
            if st:
                state[n] = st
                first_bad = first_bad or {"name": n, "type": "input", "value": "nan" if st == 2 else "inf",
                                          "inputs_finite": False}
                self.diagnostics["warnings"].append(f"input {n!r} holds non-finite values")
        t0 = time.perf_counter()
        with torch.no_grad():
            for c in self._ops:
                a = {}
                in_state = 0
                for p, b in c.bind:
                    if b.kind == 0:
                        a[p] = b.ref
                        in_state = max(in_state, b.nf)
                    elif b.kind == 1:
                        v = env[b.ref]
                        a[p] = v.float() if v.dtype == torch.float16 else v
                        in_state = max(in_state, state.get(b.ref, 0))
                    else:
                        vals = []
                        for x in b.ref:
                            if x.kind == 0:
                                v = x.ref
                                in_state = max(in_state, x.nf)
                            else:
                                v = env[x.ref]
                                in_state = max(in_state, state.get(x.ref, 0))
                            vals.append(v.float() if v.dtype == torch.float16 else v)
                        a[p] = vals
                try:
                    res = c.fn(a, pessimistic)
                except CoreMLRefError:
                    raise
                except Exception as e:  # noqa: BLE001 - a kernel failure names the op
                    raise ProgramError(f"op {c.name!r} ({c.type}): {type(e).__name__}: {e}", c.name, c.type) from e
                res = res if isinstance(res, (list, tuple)) else (res,)
                if len(res) != len(c.outputs):
                    raise ProgramError(f"op {c.name!r} ({c.type}): {len(res)} results for {len(c.outputs)} "
                                       f"outputs", c.name, c.type)
                for t, (n, vt, tdt) in zip(res, c.outputs):
                    t = self._conform(c.name, c.type, t, vt, tdt)
                    env[n] = t
                    if t.is_floating_point() and t.numel():
                        st, m = _nf_state(t)
                        if st:
                            state[n] = st
                            # the origin: inf from finite inputs, or NaN from NaN-free inputs (a -inf
                            # attention mask flowing through an add is not an origin)
                            if first_bad is None and (in_state == 0 or (st == 2 and in_state < 2)):
                                first_bad = {"name": n, "type": c.type, "value": "nan" if st == 2 else "inf",
                                             "inputs_finite": in_state == 0}
                        if check_overflow and st < 2 and m > OVERFLOW_WARN:
                            overflow.append({"name": n, "type": c.type, "max_abs": m})
                    if keep_all:
                        acts[n] = t
                for n in c.free:
                    env.pop(n, None)
        dt = time.perf_counter() - t0
        diag = self.diagnostics
        diag["first_nonfinite"] = first_bad
        diag["overflow_warnings"] = overflow
        if overflow:
            diag["warnings"].append(
                f"{len(overflow)} op(s) produce activations above {OVERFLOW_WARN:g} (10% of the fp16 max); "
                f"an fp16 export may overflow (first: {overflow[0]['name']!r} ({overflow[0]['type']}), "
                f"max |x| {overflow[0]['max_abs']:.4g})")
        diag["run_time_s"] = dt
        diag["pessimistic"] = bool(pessimistic)
        outs = {}
        for o in self.output_names:
            if o in env:
                outs[o] = env[o]
            elif acts is not None and o in acts:
                outs[o] = acts[o]
            else:
                outs[o] = torch.from_numpy(np.ascontiguousarray(self._consts[o]))
        return outs, acts

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy().copy()

    def run(self, inputs: dict, pessimistic: bool = False) -> dict:
        """Evaluate the program: ``{input name: array}`` -> ``{output name: numpy array}`` (declared
        dtypes). See the module docstring for ImageType inputs and for ``pessimistic``."""
        outs, _ = self._execute(dict(inputs), pessimistic)
        return {k: self._np(v) for k, v in outs.items()}

    def activations(self, inputs: dict, pessimistic: bool = False) -> dict:
        """Every op output of one run, in program order: ``{var name: numpy array}``."""
        _, acts = self._execute(dict(inputs), pessimistic, keep_all=True)
        return {k: self._np(v) for k, v in acts.items()}

    @property
    def ops(self) -> list:
        """[(output name, op type)] of the compiled (non-const) ops in program order."""
        return [(c.name, c.type) for c in self._ops]

    def op_outputs(self) -> dict:
        """{var name: (op output name, op type)} for every non-const op output."""
        return {n: (c.name, c.type) for c in self._ops for n, _, _ in c.outputs}

    def constants(self) -> dict:
        """{const name: numpy array | str} (decompressed constexpr results included)."""
        return dict(self._consts)

    def __repr__(self):
        return (f"Program({self.path.name!r}, {getattr(self, 'opset', '?')}, {getattr(self, 'precision', '?')}, "
                f"{len(getattr(self, '_ops', []))} ops)")


def read_spec(path: Union[str, Path]):
    """The Model protobuf of a saved .mlpackage, read without touching the package.

    Same result as ``coremltools.models.MLModel(path, skip_model_load=True).get_spec()``, which
    rewrites the package's Manifest.json as a side effect; this follows the manifest's root model
    entry and parses that file with coremltools' ``Model_pb2``."""
    from coremltools.proto import Model_pb2

    path = Path(path)
    try:
        manifest = json.loads((path / "Manifest.json").read_text())
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    except (OSError, ValueError, KeyError) as e:
        raise ProgramError(f"{path.name}: unreadable package manifest ({type(e).__name__}: {e})") from e
    model_file = path / "Data" / entry["path"]
    if not model_file.is_file():
        raise ProgramError(f"{path.name}: root model file {entry['path']!r} is missing")
    spec = Model_pb2.Model()
    spec.ParseFromString(model_file.read_bytes())
    return spec


# ------------------------------------------------------------------------------------------- cache

_CACHE: "collections.OrderedDict" = collections.OrderedDict()
CACHE_SIZE = 2                 # programs hold their weights (fp16 ones also an fp32 copy)


def _cache_key(path: Path, function):
    stamp = []
    for f in sorted((path / "Data").rglob("*")):
        if f.is_file():
            st = f.stat()
            stamp.append((str(f.relative_to(path)), st.st_size, st.st_mtime_ns))
    return (str(path.resolve()), function, tuple(stamp))


def load_program(path: Union[str, Path], function: Optional[str] = None, cache: bool = True) -> Program:
    """Parse a saved ``.mlpackage``, load its weights and precompile its op list.

    Programs are cached (least recently used, :data:`CACHE_SIZE` entries) by path and the size and
    modification time of every file under the package's ``Data/``, so an edited package is reloaded."""
    path = Path(path)
    if not cache:
        return Program(path, function)
    key = _cache_key(path, function)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    prog = Program(path, function)
    _CACHE[key] = prog
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prog


def clear_cache():
    _CACHE.clear()


# ------------------------------------------------------------------------------------ verification

def _rows(prog: Program, inputs) -> tuple:
    """Split batched inputs into per-run feeds for a static-batch program: (n, [feed dicts]).

    A tensor input declared ``[1, ...]`` given as ``[N, ...]`` runs N times; an ImageType input takes
    uint8 ``[N, H, W, 3]`` (or one ``H x W x 3``) or float ``[N, 3, H, W]`` (or one ``[3, H, W]``)."""
    if not isinstance(inputs, dict):
        if len(prog.inputs) != 1:
            raise ValueError(f"the program has inputs {[i.name for i in prog.inputs]}: pass a dict")
        inputs = {prog.inputs[0].name: inputs}
    feeds, n = None, None
    for info in prog.inputs:
        if info.name not in inputs:
            raise ValueError(f"missing input {info.name!r}")
        arr = inputs[info.name]
        try:
            from PIL import Image
            if isinstance(arr, Image.Image):
                arr = [arr]
        except ImportError:  # pragma: no cover
            pass
        if isinstance(arr, list):
            rows = arr
        else:
            arr = np.asarray(arr)
            if info.image is not None:
                H, W = info.image["height"], info.image["width"]
                if arr.dtype == np.uint8:
                    rows = [arr] if arr.shape[:2] == (H, W) else list(arr)
                else:
                    rows = [a[None] for a in arr] if arr.ndim == 4 else [arr]
            else:
                shp = info.type.shape
                if shp and shp[0] == 1 and arr.ndim == len(shp) and arr.shape[0] != 1:
                    rows = [a[None] for a in arr]
                else:
                    rows = [arr]
        if n is None:
            n, feeds = len(rows), [dict() for _ in rows]
        elif len(rows) != n:
            raise ValueError(f"inputs have different batch sizes ({n} vs {len(rows)})")
        for f, r in zip(feeds, rows):
            f[info.name] = r
    return n, feeds


def run_rows(prog: Program, inputs, output: Optional[str] = None, pessimistic: bool = False):
    """Run a batch one row at a time (our programs have a static batch of 1): ``(outputs [N, ...],
    first non-finite origin or None)``; each run's output is flattened into one row."""
    out_name = output or (prog.output_names[0] if len(prog.output_names) == 1 else None)
    if out_name is None:
        raise ValueError(f"the program has outputs {prog.output_names}: name one with output=")
    n, feeds = _rows(prog, inputs)
    got, nonfinite = [], None
    for f in feeds:
        got.append(np.asarray(prog.run(f, pessimistic)[out_name], np.float32).reshape(1, -1))
        nonfinite = nonfinite or prog.diagnostics["first_nonfinite"]
    return np.concatenate(got, 0), nonfinite


def _localize(prog: Program, feed: dict, baseline, activations, pessimistic: bool, rtol: float):
    """First op (program order) whose output departs from the baseline program's or from the given
    reference activations (``{name: array}``; fp16 names match with their ``_cast_fp16`` suffix dropped)."""
    if baseline is not None:
        base = baseline if isinstance(baseline, Program) else load_program(baseline)
        d = diff_programs(base, prog, feed, pessimistic=pessimistic, rtol=rtol)
        return d.get("first_divergent_op")
    acts = prog.activations(feed, pessimistic)
    owners = prog.op_outputs()
    for name, val in acts.items():
        ref = activations.get(name)
        if ref is None and name.endswith("_cast_fp16"):
            ref = activations.get(name[:-len("_cast_fp16")])
        if ref is None:
            continue
        ref = np.asarray(ref)
        if ref.size != val.size or val.dtype.kind != "f":
            continue
        ref = ref.reshape(val.shape).astype(np.float64)
        diff = float(np.max(np.abs(val.astype(np.float64) - ref))) if val.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        if not np.isfinite(diff) or diff > rtol * max(scale, 1e-6):
            op_name, op_type = owners[name]
            return {"name": op_name, "type": op_type, "var": name, "max_abs_diff": diff,
                    "max_abs_reference": scale}
    return None


REFERENCE_RUNTIME = ("clipdeploy Core ML reference interpreter (clipdeploy.latency.coreml_ref): evaluates the "
                     "ML Program the converter wrote, with fp16 emulated; not Apple's kernels")


def evaluate(path, inputs, pessimistic: bool = False) -> tuple:
    """A saved package (loaded uncached) on a batch of inputs, row by row: ``(outputs [N, ...], info)``;
    ``info``: runtime, opset, program precision, op count, seconds per run, the first non-finite
    origin, overflow warnings. What the export gate and ``clip-latency verify`` run."""
    prog = load_program(path, cache=False)
    t0 = time.perf_counter()
    got, nonfinite = run_rows(prog, inputs, pessimistic=pessimistic)
    seconds = time.perf_counter() - t0
    d = prog.diagnostics
    return got, {"runtime": REFERENCE_RUNTIME, "opset": prog.opset, "program_precision": prog.precision,
                 "ops": d["op_count"], "seconds_per_run": round(seconds / max(1, len(got)), 4),
                 "first_nonfinite": nonfinite, "overflow_warnings": d["overflow_warnings"][:5]}


def verify_mlpackage(path, inputs, reference, precision: Optional[str] = None, *, other_tower=None,
                     output: Optional[str] = None, pessimistic: bool = False, baseline=None,
                     activations: Optional[dict] = None, localize_rtol: Optional[float] = None,
                     check: bool = True) -> dict:
    """Run a saved package through the interpreter and compare with a reference.

    ``inputs``: ``{name: array}`` or one array (single-input programs), batched along dim 0; a
    static-batch-1 program runs row by row. ``reference``: ``[N, D]`` expected outputs (e.g. the
    PyTorch embeddings). ``precision``: "fp32" | "fp16" thresholds (default: the program's own);
    the thresholds are :data:`clipdeploy.latency.parity.THRESHOLDS` (fp32: max abs <= 1e-5; fp16:
    max abs <= 1.5e-3 and cosine >= 0.99995). ``other_tower`` ([M, D]) adds zero-shot top-1 agreement.
    On failure the first op that departs (on the first input row) is named when ``baseline`` (another
    package / Program, e.g. the unmodified export: any difference counts) or ``activations``
    (reference activations by var name, e.g. from :func:`torch_activations`: a difference above
    ``localize_rtol`` x the activation's max magnitude, default 1e-4 for fp32 programs, 1e-2 for fp16)
    is given; a non-finite output names the op where the first non-finite value arose.

    Returns the figures (``max_abs``, ``cosine_min``, ``cosine_mean``, ``finite``, ``n``, ``passed``,
    ``failures``, ``thresholds``, ``diagnostics``, ``seconds_per_run``, ...). Raises
    :class:`VerificationError` on failure unless ``check=False``; interpreter errors (unknown op, bad
    attribute value, shape mismatch) propagate as :class:`CoreMLRefError` naming the op."""
    from .parity import THRESHOLDS, failures as missed_bars

    prog = path if isinstance(path, Program) else load_program(path)
    precision = precision or prog.precision
    if precision not in THRESHOLDS:
        raise ValueError(f"precision must be one of {sorted(THRESHOLDS)}, not {precision!r}")
    t0 = time.perf_counter()
    got, nonfinite = run_rows(prog, inputs, output, pessimistic)
    elapsed = time.perf_counter() - t0
    ref = np.asarray(reference, np.float64)
    if ref.ndim == 1:
        ref = ref[None]
    got64 = got.astype(np.float64).reshape(ref.shape) if got.size == ref.size else got.astype(np.float64)
    figures = {"path": str(prog.path), "precision": precision, "program_precision": prog.precision,
               "opset": prog.opset, "n": int(got64.shape[0]), "pessimistic": bool(pessimistic),
               "seconds_per_run": elapsed / max(1, got64.shape[0])}
    failures = []
    if got64.shape != ref.shape:
        raise ValueError(f"interpreter output shape {got64.shape} != reference {ref.shape}")
    finite = bool(np.isfinite(got64).all())
    figures["finite"] = finite
    if finite:
        cos = (_unit(ref) * _unit(got64)).sum(-1)
        figures.update(max_abs=float(np.abs(ref - got64).max()), cosine_min=float(cos.min()),
                       cosine_mean=float(cos.mean()))
        if other_tower is not None:
            other = _unit(other_tower)
            figures["zero_shot_agreement"] = float(np.mean((ref @ other.T).argmax(-1) ==
                                                           (got64 @ other.T).argmax(-1)))
    else:
        figures.update(max_abs=float("inf"), cosine_min=float("nan"), cosine_mean=float("nan"))
        failures.append("non-finite outputs" + (f" (first non-finite value at op {nonfinite['name']!r} "
                                                 f"({nonfinite['type']}))" if nonfinite else ""))
    if finite:
        failures += missed_bars(figures, precision)
    figures["thresholds"] = THRESHOLDS[precision]
    figures["diagnostics"] = {k: v for k, v in prog.diagnostics.items()}
    op = None
    if failures and (baseline is not None or activations is not None):
        _, feeds = _rows(prog, inputs)
        rtol = localize_rtol if localize_rtol is not None else (1e-4 if prog.precision == "fp32" else 1e-2)
        op = _localize(prog, feeds[0], baseline, activations, pessimistic,
                       0.0 if baseline is not None and localize_rtol is None else rtol)
        figures["first_divergent_op"] = op
    if failures and op is None and nonfinite is not None:
        op = nonfinite
    figures["failures"] = failures
    figures["passed"] = not failures
    if failures and check:
        where = f"; first departing op {op['name']!r} ({op['type']})" if op else ""
        raise VerificationError(f"{prog.path.name} ({prog.precision} program, {precision} thresholds) failed "
                                f"verification: {'; '.join(failures)}{where}", figures,
                                op["name"] if op else None, op["type"] if op else None)
    return figures


def diff_programs(a, b, inputs: dict, pessimistic: bool = False, rtol: float = 0.0) -> dict:
    """Run two programs (paths or Programs) on the same single-run inputs and compare them op by op.

    Returns ``{"first_divergent_op": {name, type, var, max_abs_diff, max_abs_reference} | None,
    "differing_constants": [names], "changed_ops": [(output name, type in a, type in b)],
    "only_in_a": [...], "only_in_b": [...]}``. Vars are matched by name; ``rtol`` is relative to the
    largest magnitude of ``a``'s value (0: any difference counts)."""
    pa = a if isinstance(a, Program) else load_program(a)
    pb = b if isinstance(b, Program) else load_program(b)
    ca, cb = pa.constants(), pb.constants()
    differing = []
    for k in ca:
        if k in cb:
            va, vb = ca[k], cb[k]
            if isinstance(va, str) or isinstance(vb, str):
                same = va == vb
            else:
                same = np.shape(va) == np.shape(vb) and np.array_equal(np.asarray(va), np.asarray(vb))
            if not same:
                differing.append(k)
    ta, tb = dict(pa.ops), dict(pb.ops)
    changed = [(n, ta[n], tb[n]) for n in ta if n in tb and ta[n] != tb[n]]
    acts_a = pa.activations(inputs, pessimistic)
    acts_b = pb.activations(inputs, pessimistic)
    owners = pb.op_outputs()
    first = None
    for name, vb in acts_b.items():
        va = acts_a.get(name)
        if va is None or va.shape != vb.shape:
            if va is not None:
                first = {"name": owners[name][0], "type": owners[name][1], "var": name,
                         "max_abs_diff": float("inf"), "max_abs_reference": None}
                break
            continue
        if va.dtype.kind in "fc":
            x, y = va.astype(np.float64), vb.astype(np.float64)
            both_nan = np.isnan(x) & np.isnan(y)
            d = np.where(both_nan, 0.0, np.abs(x - y))
            diff = float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0
            scale = float(np.nanmax(np.abs(x))) if x.size else 0.0
        else:
            diff = float(np.count_nonzero(va != vb))
            scale = 0.0
        if diff > rtol * scale:
            first = {"name": owners[name][0], "type": owners[name][1], "var": name,
                     "max_abs_diff": diff, "max_abs_reference": scale}
            break
    return {"first_divergent_op": first, "differing_constants": differing, "changed_ops": changed,
            "only_in_a": [n for n in ta if n not in tb], "only_in_b": [n for n in tb if n not in ta]}


def torch_activations(exported_program, *args) -> dict:
    """Reference activations of a ``torch.export`` program by node name (``{name: numpy array}``): the
    names coremltools gives the MIL vars it converts them to, so they can localize a divergence in
    :func:`verify_mlpackage` (``activations=``). Pass the program that was converted (after
    ``run_decompositions``)."""
    gm = exported_program.module()
    acts: dict = {}

    class _Rec(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n.op == "call_function" and isinstance(r, torch.Tensor):
                acts[n.name] = r.detach().cpu().numpy().copy()
            return r

    with torch.no_grad():
        _Rec(gm).run(*args)
    return acts


# ------------------------------------------------------------------------------- ExecuTorch .pte

_COREML_ID = "CoreMLBackend"


def _reverse_json_end(buf: bytes) -> tuple:
    """executorch's in-memory file system stores its metadata JSON reversed at the end of the buffer:
    read it back (scanning from the end until the braces balance). Returns (metadata, start offset)."""
    i = len(buf) - 1
    if i < 0 or buf[i:i + 1] != b"{":
        raise ValueError("no reversed JSON metadata at the end of the delegate payload")
    depth, in_str = 0, False
    while i >= 0:
        ch = buf[i:i + 1]
        if ch == b'"' and buf[i + 1:i + 2] != b"\\":      # original order: the escape follows
            in_str = not in_str
        elif not in_str:
            if ch == b"{" or ch == b"[":
                depth += 1
            elif ch == b"}" or ch == b"]":
                depth -= 1
                if depth == 0:
                    break
        i -= 1
    if depth != 0:
        raise ValueError("unbalanced reversed JSON metadata in the delegate payload")
    text = buf[i:][::-1].decode("utf-8")
    return json.loads(text), i


def _unflatten(buf: bytes, out_dir: Path) -> list:
    """Write executorch's flattened directory (``flatten_directory_contents``) under ``out_dir``."""
    meta, end = _reverse_json_end(buf)
    nodes = meta.get("nodes")
    if not nodes:
        raise ValueError("flattened payload metadata has no nodes")
    written = []

    def walk(idx: int, dest: Path, depth: int):
        if depth > 64:
            raise ValueError("flattened payload nests too deep")
        node = nodes[idx]
        name = node["name"]
        if "/" in name or name in ("..", ".") or "\\" in name:
            raise ValueError(f"unsafe name {name!r} in the flattened payload")
        if int(node["kind"]) == 1:               # directory
            d = dest / name if depth else dest
            d.mkdir(parents=True, exist_ok=True)
            for child, ci in sorted(node.get("children", {}).items(), key=lambda kv: kv[1]):
                if nodes[ci]["name"] != child:
                    raise ValueError(f"child {child!r} / node name {nodes[ci]['name']!r} mismatch")
                walk(ci, d, depth + 1)
        else:
            r = node["dataRegion"]
            off, size = int(r["offset"]), int(r["size"])
            if off + size > end:
                raise ValueError(f"file {name!r} region runs into the metadata")
            p = dest / name
            p.write_bytes(buf[off:off + size])
            written.append(p)

    children = {int(i) for n in nodes for i in n.get("children", {}).values()}
    roots = [i for i in range(len(nodes)) if i not in children]
    if len(roots) != 1 or int(nodes[roots[0]]["kind"]) != 1:
        raise ValueError(f"flattened payload has no single root directory (roots {roots})")
    walk(roots[0], out_dir, 0)
    return written


def _pte_payloads(data: bytes) -> list:
    """[(method, delegate index, payload bytes, compile specs)] of every Core ML delegate in a .pte."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DataLocation

    if len(data) < 8 or data[4:6] != b"ET":
        raise ValueError(f"not an ExecuTorch program (file identifier {data[4:8]!r})")
    pte = deserialize_pte_binary(data)
    prog = pte.program
    named = {}
    if pte.named_data is not None:
        nd = pte.named_data
        for key, entry in nd.pte_data.items():
            named[key] = bytes(nd.buffers[entry.buffer_index])
    out = []
    for plan in prog.execution_plan:
        for i, d in enumerate(plan.delegates):
            if d.id != _COREML_ID:
                continue
            specs = {}
            for cs in d.compile_specs:
                try:
                    specs[cs.key] = bytes(cs.value).decode("utf-8")
                except UnicodeDecodeError:
                    specs[cs.key] = bytes(cs.value)
            if d.processed.location == DataLocation.INLINE:
                payload = bytes(prog.backend_delegate_data[d.processed.index].data)
            else:
                raise ValueError(f"delegate {i} of {plan.name!r}: payload location {d.processed.location} "
                                 f"not restored")
            if payload[:4] == b"CMJR":              # JSON reference into the named data store
                ref = json.loads(payload[4:].decode("utf-8"))
                if ref.get("key") not in named:
                    raise ValueError(f"delegate {i} of {plan.name!r} refers to missing named data "
                                     f"{ref.get('key')!r}")
                specs["function_name"] = ref.get("functionName")
                payload = named[ref["key"]]
            out.append((plan.name, i, payload, specs))
    return out


def extract_coreml_from_pte(pte_path: Union[str, Path], out_dir: Union[str, Path]) -> list:
    """Extract the Core ML model of every ``CoreMLBackend`` delegate of an ExecuTorch ``.pte``.

    Each payload is executorch's flattened directory (``model.mlpackage`` + ``metadata.json``
    [+ ``debug_info.json``]); it is written to ``out_dir/<method>_<delegate index>/`` and the list of
    ``.mlpackage`` paths is returned. A delegate compiled ahead of time (``model.mlmodelc``) has no
    protobuf program to interpret and raises :class:`UnsupportedOpError`."""
    pte_path, out_dir = Path(pte_path), Path(out_dir)
    payloads = _pte_payloads(pte_path.read_bytes())
    if not payloads:
        raise ValueError(f"{pte_path}: no {_COREML_ID} delegate in the program")
    paths = []
    for method, i, payload, specs in payloads:
        dest = out_dir / f"{method}_{i}"
        dest.mkdir(parents=True, exist_ok=True)
        files = _unflatten(payload, dest)
        pkgs = sorted({_package_root(p, dest) for p in files} - {None})
        if not pkgs:
            if any(".mlmodelc" in str(p) for p in files):
                raise UnsupportedOpError(f"{pte_path.name}: delegate {i} of {method!r} holds a compiled "
                                         f"model (model.mlmodelc), which has no MIL protobuf to interpret")
            raise ValueError(f"{pte_path.name}: delegate {i} of {method!r} holds no .mlpackage "
                             f"({[str(p.relative_to(dest)) for p in files]})")
        meta = dest / "metadata.json"
        if meta.exists():
            (dest / "compile_specs.json").write_text(json.dumps(
                {k: v for k, v in specs.items() if isinstance(v, str) or v is None}, indent=1))
        paths += pkgs
    return paths


def _package_root(p: Path, dest: Path) -> Optional[Path]:
    for parent in [p, *p.parents]:
        if parent == dest:
            return None
        if parent.suffix == ".mlpackage":
            return parent
    return None
