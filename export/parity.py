"""The parity gate: an artifact's embeddings of the probe set against the PyTorch reference.

Figures: max abs error of the normalized embeddings, cosine (min, mean), and zero-shot top-1
agreement — the artifact's embeddings are paired with the reference embeddings of the other tower
(images vs captions) and the argmax of each row must match the reference's. Never cosine alone.
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = {
    "fp32": {"max_abs": 1e-5, "min_cosine": None, "zero_shot_agreement": 1.0},
    "fp16": {"max_abs": 2e-3, "min_cosine": 0.9999, "zero_shot_agreement": 1.0},
}


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
    agree = float(np.mean((reference @ other.T).argmax(-1) == (got @ other.T).argmax(-1)))
    return {"max_abs": float(np.abs(reference - got).max()), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "zero_shot_agreement": agree, "n": int(len(got)),
            "finite": True}


def check(figures: dict, precision: str, what: str = "artifact") -> dict:
    """Raise :class:`ParityError` if ``figures`` miss the thresholds for ``precision``; else return them
    with the thresholds attached."""
    t = THRESHOLDS[precision]
    failures = []
    if not figures.get("finite", True):
        failures.append("non-finite outputs")
    if figures["max_abs"] > t["max_abs"]:
        failures.append(f"max abs error {figures['max_abs']:.3g} > {t['max_abs']:g}")
    if t["min_cosine"] is not None and not figures["cosine_min"] >= t["min_cosine"]:
        failures.append(f"min cosine {figures['cosine_min']:.6f} < {t['min_cosine']}")
    if figures["zero_shot_agreement"] < t["zero_shot_agreement"]:
        failures.append(f"zero-shot top-1 agreement {figures['zero_shot_agreement']:.0%} < "
                        f"{t['zero_shot_agreement']:.0%}")
    if failures:
        raise ParityError(what, figures, failures)
    return {**figures, "thresholds": t, "passed": True}
