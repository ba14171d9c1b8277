"""Values, dtypes and errors of the Core ML reference interpreter, and the parsed MIL operation.

MIL ``DataType`` names map to the numpy dtype a constant is stored in and the torch dtype a runtime
tensor is held in (sub-byte types unpacked into int8 / uint8, unsigned 16/32-bit widened); a MIL
``ValueType`` parses to a :class:`VarType`; an ``Operation`` protobuf to an :class:`_Op` whose
errors name it. Every error the interpreter raises derives from :class:`CoreMLRefError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from clipdeploy.models.errors import ClipDeployError

FP16_MAX = 65504.0
OVERFLOW_WARN = 0.1 * FP16_MAX          # 6550.4: an fp32 activation above this may overflow in fp16
FP16_ACC_CHUNK = 32                      # pessimistic mode: fp16 accumulation granularity


# ------------------------------------------------------------------------------------------ errors

class CoreMLRefError(ClipDeployError, RuntimeError):
    """The interpreter cannot evaluate the program faithfully; the message names the op. A
    :class:`~clipdeploy.models.errors.ClipDeployError` (entry points that catch it print one line)
    and, as before, a ``RuntimeError``."""

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
