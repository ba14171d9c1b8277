"""JSON from untrusted files (bundle manifests, tokenizer files, device reports): strict and bounded.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e999`` (parsed as inf), and a deeply nested
input raises ``RecursionError``; here each is a :class:`ValueError` with one line.
"""
from __future__ import annotations

import json
import math
import os

MAX_BYTES = 32 << 20


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:30]} is out of range")
    return v


def loads(data) -> object:
    """Parse ``data`` (str or UTF-8 bytes); :class:`ValueError` (one line) for anything but strict JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ValueError("not JSON this reader accepts (nested too deeply)") from None


def read(path, max_bytes: int = MAX_BYTES) -> object:
    """:func:`loads` of a file of at most ``max_bytes`` (checked before it is read)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ValueError(f"{size} bytes is more than the {max_bytes} this reader accepts")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"more than the {max_bytes} bytes this reader accepts")
    return loads(data)
