"""MILBlob v2: the weight file of a saved Core ML ML Program (``Data/com.apple.CoreML/weights/weight.bin``).

Layout: a 64-byte file header (uint32 blob count, uint32 version, padding); per blob a 64-byte metadata
record (uint32 sentinel 0xDEADBEEF, uint32 ``BlobDataType``, uint64 payload size, uint64 payload
offset, padding), the payload at its offset, and the next record at the following 64-byte boundary.
A MIL ``blobFileValue.offset`` points at a metadata record.

Read by the export's structural check (weight dtypes of a package) and by the Core ML reference
interpreter (:mod:`clipdeploy.latency.coreml_ref`); written by coremltools' own blob writer.
"""
from __future__ import annotations

import collections
import struct
from pathlib import Path

from clipdeploy.models.errors import ClipDeployError

WEIGHTS_REL = Path("Data") / "com.apple.CoreML" / "weights" / "weight.bin"

# MILBlob BlobDataType codes (coremltools' libmilstoragepython writes uint4 as 11, uint3 as 12)
BLOB_DTYPES = {1: "float16", 2: "float32", 3: "uint8", 4: "int8", 5: "bfloat16", 6: "int16",
               7: "uint16", 8: "int4", 9: "uint1", 10: "uint2", 11: "uint4", 12: "uint3",
               13: "uint6", 14: "int32", 15: "uint32", 16: "float8_e4m3fn", 17: "float8_e5m2"}


class CoreMLStructureError(ClipDeployError, RuntimeError):
    """A saved .mlpackage (or its weight file) does not have the structure it must have (a
    :class:`~clipdeploy.models.errors.ClipDeployError` and, as before, a ``RuntimeError``)."""


def read_weight_blobs(path: Path) -> dict:
    """Walk a MILBlob v2 ``weight.bin``: {"count", "version", "bytes_by_dtype", "file_size"}.

    Layout: 64-byte file header (uint32 count, uint32 version, padding); per blob a 64-byte metadata
    record (uint32 0xDEADBEEF, uint32 dtype, uint64 size, uint64 offset, padding), the data at
    ``offset``, and the next record at the following 64-byte boundary.
    """
    data = Path(path).read_bytes()
    if len(data) < 64:
        raise CoreMLStructureError(f"{path}: weight file too short ({len(data)} bytes)")
    count, version = struct.unpack_from("<II", data, 0)
    by_dtype: dict = collections.Counter()
    off, seen = 64, 0
    while off < len(data) and seen < count:
        sentinel, dtype, size, offset = struct.unpack_from("<IIQQ", data, off)
        if sentinel != 0xDEADBEEF:
            raise CoreMLStructureError(f"{path}: bad MILBlob record sentinel {sentinel:#x} at byte {off}")
        if offset + size > len(data):
            raise CoreMLStructureError(f"{path}: blob at byte {off} runs past the end of the file")
        by_dtype[BLOB_DTYPES.get(dtype, f"dtype{dtype}")] += size
        seen += 1
        off = (offset + size + 63) // 64 * 64
    if seen != count:
        raise CoreMLStructureError(f"{path}: header says {count} blobs, found {seen}")
    return {"count": count, "version": version, "bytes_by_dtype": dict(by_dtype),
            "file_size": len(data)}


def read_weight_blob(data, offset: int, path="weight.bin") -> tuple:
    """One blob of a MILBlob v2 weight file: ``(dtype code, payload)`` for the 64-byte metadata record
    at byte ``offset`` (a MIL ``blobFileValue.offset``). The code is MILBlob's ``BlobDataType``
    (1 fp16, 2 fp32, 3 uint8, 4 int8, 5 bf16, 6 int16, 7 uint16, 8 int4, 9 uint1, 10 uint2, 11 uint4,
    12 uint3, 13 uint6, 14 int32, 15 uint32, 16/17 fp8). ``data`` is the whole file as any buffer
    (bytes, memoryview, a numpy uint8 array); the payload is ``data[start:start + size]`` of that
    same type (a view for memoryview/numpy)."""
    n = len(data)
    if offset < 64 or offset + 64 > n:
        raise CoreMLStructureError(f"{path}: blob offset {offset} outside the file ({n} bytes)")
    sentinel, dtype, size, start = struct.unpack_from("<IIQQ", data, offset)
    if sentinel != 0xDEADBEEF:
        raise CoreMLStructureError(f"{path}: bad MILBlob record sentinel {sentinel:#x} at byte {offset}")
    if start + size > n:
        raise CoreMLStructureError(f"{path}: blob at byte {offset} runs past the end of the file")
    return int(dtype), data[start:start + size]
