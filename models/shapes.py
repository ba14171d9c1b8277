"""The input shapes an exported artifact accepts: the ``shapes`` entry of each manifest artifact.

Every artifact records, per input dimension that may vary, one *dimension descriptor*::

    {"kind": "fixed",      "values": [77],             "reason": "..."}
    {"kind": "enumerated", "values": [8, 16, 32, 77]}                  # Core ML EnumeratedShapes
    {"kind": "dynamic",    "min": 1, "max": 77}                        # ONNX / ExecuTorch dynamic dim
    {"kind": "dynamic",    "min": 1, "max": null}                      # unbounded (ONNX batch)

Image artifacts carry ``{"batch": <descriptor>}``; text artifacts ``{"batch": ..., "length": ...}``
(``length`` = the number of token positions the ``text`` input has). A text artifact whose tower is not
causal keeps ``fixed [77]`` with the reason: such a tower attends to every position, so the padding after
EOT changes the embedding.

:func:`shortest_accepted` is what tokenizers (Python here, Java and Swift in the apps) use to emit the
shortest input an artifact accepts for a caption: the smallest accepted length that holds all its tokens
(SOT ... EOT), which for a causal tower gives exactly the 77-token embedding.

This module is shared by the exporter (which writes the descriptors), the latency harness and the apps'
golden vectors; it imports nothing from them.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

KINDS = ("fixed", "enumerated", "dynamic")


class ShapeError(ValueError):
    """A dimension descriptor is malformed, or an input does not fit it."""


def fixed(value: int, reason: Optional[str] = None) -> dict:
    d = {"kind": "fixed", "values": [int(value)]}
    if reason:
        d["reason"] = reason
    return d


def enumerated(values, reason: Optional[str] = None) -> dict:
    vals = sorted({int(v) for v in values})
    d = {"kind": "enumerated", "values": vals}
    if reason:
        d["reason"] = reason
    return d


def dynamic(lo: int, hi: Optional[int], reason: Optional[str] = None) -> dict:
    d = {"kind": "dynamic", "min": int(lo), "max": None if hi is None else int(hi)}
    if reason:
        d["reason"] = reason
    return d


def validate(desc, what: str = "dimension") -> dict:
    """``desc`` if it is a well-formed descriptor, else :class:`ShapeError` naming the problem."""
    if not isinstance(desc, dict) or desc.get("kind") not in KINDS:
        raise ShapeError(f"{what}: a shape descriptor needs kind one of {', '.join(KINDS)}, got {desc!r}")
    kind = desc["kind"]
    if kind in ("fixed", "enumerated"):
        vals = desc.get("values")
        if not isinstance(vals, list) or not vals or not all(isinstance(v, int) and not isinstance(v, bool)
                                                             and v >= 1 for v in vals):
            raise ShapeError(f"{what}: {kind} needs 'values', a non-empty list of positive integers, got {vals!r}")
        if kind == "fixed" and len(vals) != 1:
            raise ShapeError(f"{what}: fixed takes exactly one value, got {vals!r}")
        if vals != sorted(set(vals)):
            raise ShapeError(f"{what}: enumerated values must be increasing and distinct, got {vals!r}")
    else:
        lo, hi = desc.get("min"), desc.get("max")
        if not isinstance(lo, int) or isinstance(lo, bool) or lo < 1:
            raise ShapeError(f"{what}: dynamic needs an integer 'min' >= 1, got {lo!r}")
        if hi is not None and (not isinstance(hi, int) or isinstance(hi, bool) or hi < lo):
            raise ShapeError(f"{what}: dynamic 'max' must be null or an integer >= min ({lo}), got {hi!r}")
    return desc


def accepts(desc: dict, n: int) -> bool:
    validate(desc)
    if desc["kind"] == "dynamic":
        return n >= desc["min"] and (desc["max"] is None or n <= desc["max"])
    return n in desc["values"]


def largest(desc: dict) -> Optional[int]:
    validate(desc)
    return desc["values"][-1] if desc["kind"] != "dynamic" else desc["max"]


def classes(desc: dict, probe=(1, 2, 8, 16, 32, 77)) -> list:
    """The sizes a gate checks: every enumerated/fixed value; for a dynamic dim its bounds and the
    ``probe`` sizes inside them."""
    validate(desc)
    if desc["kind"] != "dynamic":
        return list(desc["values"])
    lo, hi = desc["min"], desc["max"]
    out = {lo} | ({hi} if hi is not None else set())
    out |= {p for p in probe if p >= lo and (hi is None or p <= hi)}
    return sorted(out)


def shortest_accepted(desc: dict, n_tokens: int) -> int:
    """The shortest accepted size that holds ``n_tokens`` (SOT ... EOT included). A caption longer than
    the largest accepted size is truncated by the tokenizer to that size, as at 77."""
    validate(desc)
    if n_tokens < 1:
        raise ShapeError(f"a caption has at least one token (SOT), got {n_tokens}")
    if desc["kind"] == "dynamic":
        n = max(n_tokens, desc["min"])
        return n if desc["max"] is None else min(n, desc["max"])
    for v in desc["values"]:
        if v >= n_tokens:
            return v
    return desc["values"][-1]


def token_count(ids) -> int:
    """Tokens of a 0-padded id row (int [L]): up to and including the last non-zero id."""
    row = np.asarray(ids).reshape(-1)
    nz = np.flatnonzero(row)
    return int(nz[-1]) + 1 if nz.size else 1


def trim(ids, desc: dict) -> np.ndarray:
    """``ids`` (int [N, 77], 0-padded) cut to the shortest accepted length holding every row's tokens.
    A row longer than the largest accepted length is cut to it with its EOT moved to the last position,
    as the tokenizers truncate at 77."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ShapeError(f"token ids must be [N, L], got shape {list(ids.shape)}")
    counts = [token_count(r) for r in ids]
    L = shortest_accepted(desc, max(counts, default=1))
    if L > ids.shape[1]:
        raise ShapeError(f"the ids have {ids.shape[1]} positions, the artifact wants {L}")
    out = np.array(ids[:, :L])
    for i, n in enumerate(counts):
        if n > L:
            out[i, L - 1] = ids[i, n - 1]          # the EOT
    return np.ascontiguousarray(out)
