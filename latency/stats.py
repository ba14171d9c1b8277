"""Statistics of latency samples, and the bootstrap behind the regression gate.

Every figure is computed from the raw samples (milliseconds), which the report keeps:

* percentiles: numpy's default ("linear", type 7 of Hyndman & Fan): the ``q``-th percentile of the
  sorted samples ``x[0..n-1]`` is interpolated at position ``(n - 1) * q / 100``;
* ``std``: sample standard deviation (``ddof=1``; 0 for one sample);
* ``trimmed_mean``: the 10–90 % trimmed mean — sort, drop ``floor(0.1 * n)`` samples at each end, average
  the rest (``scipy.stats.trim_mean(x, 0.1)``).

The gate compares two runs with :func:`bootstrap_ratio`: resample each run's samples with replacement
(seeded), take the ratio of medians and its percentile confidence interval, both divided by the ratio
of the two runs' calibration medians (so a machine that is uniformly slower is not a regression).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

PERCENTILES = (90, 95, 99)
TRIM = 0.1
STAT_KEYS = ("n", "median", "p90", "p95", "p99", "min", "max", "mean", "std", "trimmed_mean")


def percentile(samples: Sequence[float], q: float) -> float:
    x = np.sort(np.asarray(samples, dtype=np.float64))
    if x.size == 0:
        raise ValueError("no samples")
    pos = (x.size - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, x.size - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def trimmed_mean(samples: Sequence[float], proportion: float = TRIM) -> float:
    x = np.sort(np.asarray(samples, dtype=np.float64))
    if x.size == 0:
        raise ValueError("no samples")
    k = int(math.floor(proportion * x.size))
    kept = x[k:x.size - k]
    return float(kept.mean())


def summarize(samples: Sequence[float]) -> dict:
    """``{n, median, p90, p95, p99, min, max, mean, std, trimmed_mean}`` of ``samples`` (same unit)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    if not np.isfinite(x).all():
        raise ValueError("non-finite latency sample")
    out = {"n": int(x.size), "median": percentile(x, 50)}
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(x, q)
    out.update({"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
                "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
                "trimmed_mean": trimmed_mean(x)})
    return out


def _boot_medians(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return np.median(x[idx], axis=1)


def bootstrap_ratio(baseline: Sequence[float], current: Sequence[float],
                    baseline_cal: Optional[Sequence[float]] = None,
                    current_cal: Optional[Sequence[float]] = None,
                    n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Ratio ``median(current) / median(baseline)`` with a percentile bootstrap CI (``n_boot``
    resamples of each sample set, seeded).

    With both calibration sample sets given, the ratio and its CI are divided by the calibration ratio
    ``median(current_cal) / median(baseline_cal)`` (a point estimate: the calibration's job is to remove
    a machine-wide speed difference, its own sampling noise is small next to the artifacts'). Returns
    ``{ratio, ci_low, ci_high, raw_ratio, calibration_ratio, normalized, n_boot, confidence, seed}``.
    """
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("bootstrap needs samples on both sides")
    rng = np.random.default_rng(seed)
    raw = float(np.median(c) / np.median(b))
    boot = _boot_medians(c, n_boot, rng) / _boot_medians(b, n_boot, rng)
    normalized = baseline_cal is not None and current_cal is not None \
        and len(baseline_cal) > 0 and len(current_cal) > 0
    cal_ratio = None
    scale = 1.0
    if normalized:
        cal_ratio = float(np.median(np.asarray(current_cal, np.float64)) /
                          np.median(np.asarray(baseline_cal, np.float64)))
        scale = cal_ratio
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"ratio": raw / scale, "ci_low": float(lo) / scale, "ci_high": float(hi) / scale,
            "raw_ratio": raw, "calibration_ratio": cal_ratio, "normalized": bool(normalized),
            "n_boot": int(n_boot), "confidence": float(confidence), "seed": int(seed)}
