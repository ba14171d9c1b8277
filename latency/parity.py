"""Parity figures of an artifact's embeddings against the bundle's reference embeddings.

The same definitions as the export gate (``clipdeploy.export.parity.measure``), written here because the
latency harness must not need the export code (data flows models -> reparam -> export -> latency):

* ``max_abs``: max |reference - got| over all elements (the embeddings are L2-normalized already);
* ``cosine_min`` / ``cosine_mean``: cosine of each row pair (rows re-normalized in float64);
* ``zero_shot_agreement``: fraction of rows whose top-1 against the *other tower's reference*
  embeddings (images vs captions) is the same for ``got`` as for the reference.

Non-finite outputs give ``max_abs = inf``, NaN cosines, agreement 0 and ``finite = False``.
"""
from __future__ import annotations

import numpy as np


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def measure(reference: np.ndarray, got: np.ndarray, other_tower: np.ndarray) -> dict:
    """Figures for ``got`` vs ``reference`` ([N, D] each); ``other_tower`` [M, D] for zero-shot."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        raise ValueError(f"artifact output shape {got.shape} != reference {reference.shape}")
    if not np.isfinite(got).all():
        return {"max_abs": float("inf"), "cosine_min": float("nan"), "cosine_mean": float("nan"),
                "zero_shot_agreement": 0.0, "n": int(len(got)), "finite": False}
    cos = (_unit(reference) * _unit(got)).sum(-1)
    other = _unit(other_tower)
    agree = float(np.mean((reference @ other.T).argmax(-1) == (got @ other.T).argmax(-1)))
    return {"max_abs": float(np.abs(reference - got).max()), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "zero_shot_agreement": agree, "n": int(len(got)),
            "finite": True}
