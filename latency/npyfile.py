"""``.npy`` files from an untrusted bundle: the header is parsed and checked against the file's size
before anything is allocated (``np.load`` trusts the header's shape; a truncated file gave a
``TypeError`` from deep inside NumPy).

Accepted: format versions 1.0 / 2.0 / 3.0, C order, a shape of non-negative ints, a dtype of
``DTYPES``, and exactly ``prod(shape) * itemsize`` bytes after the header.
"""
from __future__ import annotations

import ast
import os
import struct

import numpy as np

MAGIC = b"\x93NUMPY"
DTYPES = {"<f4": np.float32, "<f8": np.float64, "<f2": np.float16, "<i4": np.int32, "<i8": np.int64,
          "<i2": np.int16, "|i1": np.int8, "|u1": np.uint8, "|b1": np.bool_,
          "<u2": np.uint16, "<u4": np.uint32}
MAX_HEADER = 1 << 16
MAX_DIMS = 32


class NpyError(ValueError):
    """Not a usable ``.npy`` file (one line)."""


def parse_header(buf: bytes, file_size: int) -> tuple:
    """``(dtype, shape, offset)`` of a ``.npy`` whose first bytes are ``buf`` and size ``file_size``."""
    if len(buf) < 10 or not buf.startswith(MAGIC):
        raise NpyError("not an .npy file (no \\x93NUMPY magic)")
    major, minor = buf[6], buf[7]
    if major == 1:
        hlen, start = struct.unpack("<H", buf[8:10])[0], 10
    elif major in (2, 3):
        if len(buf) < 12:
            raise NpyError("truncated .npy header")
        hlen, start = struct.unpack("<I", buf[8:12])[0], 12
    else:
        raise NpyError(f".npy format version {major}.{minor} is not supported (1.0, 2.0, 3.0)")
    if hlen > MAX_HEADER:
        raise NpyError(f".npy header of {hlen} bytes is larger than {MAX_HEADER}")
    if start + hlen > len(buf) or start + hlen > file_size:
        raise NpyError("truncated .npy header")
    raw = buf[start:start + hlen]
    try:
        text = raw.decode("latin1" if major < 3 else "utf8")
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise NpyError(".npy header is not a Python dict literal") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpyError(".npy header must have exactly 'descr', 'fortran_order' and 'shape'")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(descr, str) or descr not in DTYPES:
        raise NpyError(f".npy dtype {descr!r} is not supported ({', '.join(sorted(DTYPES))})")
    if fortran is not False:
        raise NpyError(".npy arrays in Fortran order are not supported (write C order)")
    if (not isinstance(shape, tuple) or len(shape) > MAX_DIMS
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise NpyError(f".npy shape {shape!r} is not a tuple of at most {MAX_DIMS} non-negative ints")
    dtype = np.dtype(DTYPES[descr])
    count = 1
    for d in shape:
        count *= d                                           # Python ints: no overflow
    offset = start + hlen
    need = count * dtype.itemsize
    have = file_size - offset
    if need != have:
        what = "truncated" if have < need else "has trailing bytes"
        raise NpyError(f".npy file is {what}: shape {list(shape)} of {descr} needs {need} bytes of data, "
                       f"the file has {have}")
    return dtype, shape, offset


def read_npy(path, max_bytes: int = 1 << 31) -> np.ndarray:
    """The array in ``path``; :class:`NpyError` for anything but a well-formed file of at most
    ``max_bytes``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise NpyError(f"{size} bytes is more than the {max_bytes} this reader accepts")
        head = f.read(min(size, MAX_HEADER + 12))
        dtype, shape, offset = parse_header(head, size)
        f.seek(offset)
        data = f.read()
    if len(data) != size - offset:
        raise NpyError(".npy file changed while it was read")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def loads_npy(buf: bytes) -> np.ndarray:
    """:func:`read_npy` for bytes in memory (the fuzz target)."""
    dtype, shape, offset = parse_header(buf[:MAX_HEADER + 12], len(buf))
    return np.frombuffer(buf, dtype=dtype, offset=offset).reshape(shape)
