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

* ``retrieval_agreement``: the other way round, the fraction of the *other tower's* rows whose top-1
  among ``got``'s rows is the reference's top-1 among the reference rows (same tie rule): for an image
  encoder, text -> image retrieval over its images; for a text encoder, image -> text over its captions;
* ``rows_below_cosine``: with a ``cosine_bar``, how many rows have a cosine below it (the gate reports the
  count, not only the minimum).

Non-finite outputs give ``max_abs = inf``, NaN cosines, agreement 0 and ``finite = False``.

The probe set (6 images, 8 captions) is what the bundle ships and every runtime re-checks; the export gate
also holds every artifact to :data:`VALIDATION_THRESHOLDS` on a larger generated validation set
(:mod:`clipdeploy.models.validation`, at least 64 captions and 32 images) that quantization never saw.
"""
from __future__ import annotations

from typing import Optional

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
#: the validation gate (every artifact, >= 64 captions and >= 32 images the calibration never saw):
#: the cosine and max-abs bars of THRESHOLDS on every row (``rows_below_cosine`` must be 0), and agreement
#: >= 95 % both ways. What 64 / 32 rows can support: a 99 % bar on 64 rows allows no disagreement at all, so
#: it is really 100 %, and one near-tie flipped by rounding fails it (the S0 int8 ONNX image tower, min cosine
#: 0.99992, flips 2 of 64 captions' top image). 95 % allows 3 of 64 and 1 of 32 rows: an artifact that truly agrees on
#: 99 % of inputs passes with probability >= 95.9 % (32 rows; 99.6 % on 64, binomial), one that flips 10 % of decisions fails with
#: probability >= 89 % on 64 rows. A real regression is also caught row by row by the cosine bar.
VALIDATION_AGREEMENT = 0.95
VALIDATION_THRESHOLDS = {p: {**t, "zero_shot_agreement": VALIDATION_AGREEMENT,
                             "retrieval_agreement": VALIDATION_AGREEMENT}
                         for p, t in THRESHOLDS.items()}
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


def _agreement(ref_sim: np.ndarray, got_sim: np.ndarray) -> float:
    """Fraction of rows whose top-1 column in ``got_sim`` is the reference's, or ties with it there."""
    rows = np.arange(len(ref_sim))
    top_ref, top_got = ref_sim.argmax(-1), got_sim.argmax(-1)
    tie = ref_sim[rows, top_ref] - ref_sim[rows, top_got] <= ZERO_SHOT_TIE
    return float(np.mean((top_ref == top_got) | tie))


def measure(reference: np.ndarray, got: np.ndarray, other_tower: Optional[np.ndarray], cosine_bar=None,
            both_ways: bool = False) -> dict:
    """Figures for ``got`` vs ``reference`` ([N, D] each); ``other_tower`` [M, D] for zero-shot (None:
    no ``zero_shot_agreement`` figure); ``cosine_bar``: also count the rows below it; ``both_ways``: also
    ``retrieval_agreement`` (needs ``other_tower``)."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        raise ValueError(f"artifact output shape {got.shape} != reference {reference.shape}")
    if other_tower is None and both_ways:
        raise ValueError("both_ways needs other_tower")
    extra = {}
    if not np.isfinite(got).all():
        if cosine_bar is not None:
            extra["rows_below_cosine"] = int(len(got))
        if both_ways:
            extra.update(retrieval_agreement=0.0, n_other=int(len(other_tower)))
        zs = {} if other_tower is None else {"zero_shot_agreement": 0.0}
        return {"max_abs": float("inf"), "cosine_min": float("nan"), "cosine_mean": float("nan"),
                **zs, "n": int(len(got)), "finite": False, **extra}
    cos = (_unit(reference) * _unit(got)).sum(-1)
    zs = {}
    if other_tower is not None:
        other = _unit(other_tower)
        zs["zero_shot_agreement"] = _agreement(reference @ other.T, got @ other.T)
    if cosine_bar is not None:
        extra["rows_below_cosine"] = int((cos < cosine_bar).sum())
    if both_ways:
        extra.update(retrieval_agreement=_agreement(other @ _unit(reference).T, other @ _unit(got).T),
                     n_other=int(len(other)))
    return {"max_abs": float(np.abs(reference - got).max()), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), **zs, "n": int(len(got)), "finite": True, **extra}


def failures(figures: dict, precision: str, thresholds: dict = None) -> list:
    """The bars of ``precision`` (``thresholds``: THRESHOLDS, or VALIDATION_THRESHOLDS) that ``figures``
    miss (empty: passed)."""
    t = (thresholds or THRESHOLDS)[precision]
    out = []
    if not figures.get("finite", True):
        out.append("non-finite outputs")
    if t["max_abs"] is not None and figures["max_abs"] > t["max_abs"]:
        out.append(f"max abs error {figures['max_abs']:.3g} > {t['max_abs']:g}")
    if t["min_cosine"] is not None and not figures["cosine_min"] >= t["min_cosine"]:
        below = figures.get("rows_below_cosine")
        out.append(f"min cosine {figures['cosine_min']:.6f} < {t['min_cosine']}"
                   + (f" ({below} of {figures['n']} rows below)" if below is not None else ""))
    if "zero_shot_agreement" in figures and figures["zero_shot_agreement"] < t["zero_shot_agreement"]:
        out.append(f"zero-shot top-1 agreement {figures['zero_shot_agreement']:.0%} < "
                   f"{t['zero_shot_agreement']:.0%}"
                   + (_of(figures["zero_shot_agreement"], figures["n"]) if "n_other" in figures else ""))
    bar = t.get("retrieval_agreement")
    if bar is not None and "retrieval_agreement" in figures and figures["retrieval_agreement"] < bar:
        out.append(f"retrieval top-1 agreement {figures['retrieval_agreement']:.0%} < {bar:.0%}"
                   + _of(figures["retrieval_agreement"], figures.get("n_other")))
    return out


def _of(rate: float, n) -> str:
    """The count behind a rate (validation figures only: the ports format the probe's failures without it)."""
    return f" ({round((1 - rate) * n)} of {n} rows differ)" if n else ""


def check(figures: dict, precision: str, what: str = "artifact", thresholds: dict = None) -> dict:
    """Raise :class:`ParityError` if ``figures`` miss the thresholds for ``precision``; else return them
    with the thresholds attached."""
    missed = failures(figures, precision, thresholds)
    if missed:
        raise ParityError(what, figures, missed)
    return {**figures, "thresholds": (thresholds or THRESHOLDS)[precision], "passed": True}


# ---------------------------------------------------------------------------------------------------
# zero-shot classifier artifacts (clipdeploy.export.classifier): their logits

#: the logits gate. Logits are ``logit_scale x cosine``, so the max-abs bars are in cosine units and scale
#: with the model's logit_scale (x100 for the released models): fp32 2e-5 (the image embedding's 1e-5 max abs
#: over a 512-d dot product is at most 2.3e-4, in practice ~1e-6), fp16 1e-2 (an embedding at the fp16 bars,
#: cosine >= 0.99995, is at most 0.01 away from the reference in L2, hence at most 0.01 from any unit class
#: vector's dot product). Top-1 agreement is the image's predicted class: 100 % for the float precisions,
#: >= 99 % for int8 on the probe images; on the validation images >= 95 % (VALIDATION_AGREEMENT). A top-1 that
#: differs only where the reference's two logits are within ZERO_SHOT_TIE x logit_scale is a tie, not a miss.
CLASSIFIER_THRESHOLDS = {
    "fp32": {"max_abs_cosine_units": 2e-5, "top1_agreement": 1.0},
    "fp16": {"max_abs_cosine_units": 1e-2, "top1_agreement": 1.0},
    "int8": {"max_abs_cosine_units": None, "top1_agreement": 0.99},
}
CLASSIFIER_VALIDATION_THRESHOLDS = {p: {**t, "top1_agreement": VALIDATION_AGREEMENT}
                                    for p, t in CLASSIFIER_THRESHOLDS.items()}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def measure_logits(reference: np.ndarray, got: np.ndarray, logit_scale: float) -> dict:
    """Figures of classifier logits [M, N] against the reference: max abs (logits and probabilities), the
    max abs in cosine units (/ logit_scale) and the top-1 agreement (ties within ZERO_SHOT_TIE cosine)."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        raise ValueError(f"classifier output shape {got.shape} != reference {reference.shape}")
    if not np.isfinite(got).all():
        return {"max_abs": float("inf"), "max_abs_cosine_units": float("inf"), "max_abs_probs": float("inf"),
                "top1_agreement": 0.0, "n": int(len(got)), "classes": int(got.shape[1]), "finite": False}
    rows = np.arange(len(got))
    top_ref, top_got = reference.argmax(-1), got.argmax(-1)
    tie = reference[rows, top_ref] - reference[rows, top_got] <= ZERO_SHOT_TIE * logit_scale
    err = float(np.abs(reference - got).max())
    return {"max_abs": err, "max_abs_cosine_units": err / logit_scale,
            "max_abs_probs": float(np.abs(softmax(reference) - softmax(got)).max()),
            "top1_agreement": float(np.mean((top_ref == top_got) | tie)),
            "top1_exact": float(np.mean(top_ref == top_got)), "n": int(len(got)),
            # how many labels the reference predicts over these images (1 would make agreement vacuous)
            "reference_top1_labels": int(len(set(top_ref.tolist()))),
            "classes": int(got.shape[1]), "finite": True}


def logit_failures(fig: dict, precision: str, thresholds: dict = None) -> list:
    t = (thresholds or CLASSIFIER_THRESHOLDS)[precision]
    out = []
    if not fig.get("finite", True):
        out.append("non-finite logits")
    bar = t["max_abs_cosine_units"]
    if bar is not None and not fig["max_abs_cosine_units"] <= bar:
        out.append(f"logits max abs {fig['max_abs']:.3g} ({fig['max_abs_cosine_units']:.3g} x logit_scale) > "
                   f"{bar:g} x logit_scale")
    if fig["top1_agreement"] < t["top1_agreement"]:
        out.append(f"top-1 agreement {fig['top1_agreement']:.1%} < {t['top1_agreement']:.0%} "
                   f"({round((1 - fig['top1_agreement']) * fig['n'])} of {fig['n']} images)")
    return out
