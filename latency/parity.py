"""Parity of an artifact's embeddings against reference embeddings: the figures and the bars.

One definition, used by the export gate (``clipdeploy.export.parity`` re-exports it), the latency
harness (parity next to latency) and the Core ML reference interpreter's verification:

* ``max_abs``: max |reference - got| over all elements (the embeddings are L2-normalized already);
* ``cosine_min`` / ``cosine_mean``: cosine of each row pair (rows re-normalized in float64);
* ``zero_shot_agreement``: fraction of rows whose top-1 against the *other tower's reference*
  embeddings (images vs captions) is the same for ``got`` as for the reference, or ties with it in the
  reference: a row also agrees when the reference's own similarity to ``got``'s top-1 is within
  ``ZERO_SHOT_TIE`` (1e-4) of its top-1 similarity (with random test weights two images can be 3e-5 apart
  for a caption, and any rounding picks either). Never cosine alone.

Non-finite outputs give ``max_abs = inf``, NaN cosines, agreement 0 and ``finite = False``.
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = {
    "fp32": {"max_abs": 1e-5, "min_cosine": None, "zero_shot_agreement": 1.0},
    # fp16: tight enough that a wrong activation (exact GELU <-> QuickGELU: ~1e-2 relative, max abs
    # >= 1.8e-3, cosine <= 0.99991 on the seeded models) fails, while fp16 rounding (Core ML reference
    # interpreter, ONNX fp16: max abs <= 1.03e-3, cosine >= 0.999977 on every seeded tower) passes;
    # the cosine bar separates them by ~2x in 1 - cos, max abs (an extreme value) by ~1.2-1.5x
    "fp16": {"max_abs": 1.5e-3, "min_cosine": 0.99995, "zero_shot_agreement": 1.0},
    # quantized artifacts (int8 weights and/or activations, 8-bit palettes): no max-abs bar
    "int8": {"max_abs": None, "min_cosine": 0.999, "zero_shot_agreement": 0.99},
}
#: reference similarities this close to the top-1 are a tie, not a zero-shot disagreement
ZERO_SHOT_TIE = 1e-4
#: precisions whose gate failure ``--accept-degraded`` may override (never the float ones)
QUANTIZED = ("int8",)


class ParityError(RuntimeError):
    def __init__(self, what: str, figures: dict, failures: list):
        super().__init__(f"{what} failed the parity gate: {'; '.join(failures)}")
        self.figures, self.failures = figures, failures


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
    ref_sim = reference @ other.T
    rows = np.arange(len(ref_sim))
    top_ref, top_got = ref_sim.argmax(-1), (got @ other.T).argmax(-1)
    tie = ref_sim[rows, top_ref] - ref_sim[rows, top_got] <= ZERO_SHOT_TIE
    agree = float(np.mean((top_ref == top_got) | tie))
    return {"max_abs": float(np.abs(reference - got).max()), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "zero_shot_agreement": agree, "n": int(len(got)),
            "finite": True}


def failures(figures: dict, precision: str) -> list:
    """The bars of ``precision`` that ``figures`` miss (empty: passed)."""
    t = THRESHOLDS[precision]
    out = []
    if not figures.get("finite", True):
        out.append("non-finite outputs")
    if t["max_abs"] is not None and figures["max_abs"] > t["max_abs"]:
        out.append(f"max abs error {figures['max_abs']:.3g} > {t['max_abs']:g}")
    if t["min_cosine"] is not None and not figures["cosine_min"] >= t["min_cosine"]:
        out.append(f"min cosine {figures['cosine_min']:.6f} < {t['min_cosine']}")
    if "zero_shot_agreement" in figures and figures["zero_shot_agreement"] < t["zero_shot_agreement"]:
        out.append(f"zero-shot top-1 agreement {figures['zero_shot_agreement']:.0%} < "
                   f"{t['zero_shot_agreement']:.0%}")
    return out


def check(figures: dict, precision: str, what: str = "artifact") -> dict:
    """Raise :class:`ParityError` if ``figures`` miss the thresholds for ``precision``; else return them
    with the thresholds attached."""
    missed = failures(figures, precision)
    if missed:
        raise ParityError(what, figures, missed)
    return {**figures, "thresholds": THRESHOLDS[precision], "passed": True}
