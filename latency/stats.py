"""Statistics of latency samples, and the bootstrap behind the regression gate.

Every figure is computed from the raw samples (milliseconds), which the report keeps:

* percentiles: numpy's default ("linear", type 7 of Hyndman & Fan): the ``q``-th percentile of the
  sorted samples ``x[0..n-1]`` is interpolated at position ``(n - 1) * q / 100``;
* ``std``: sample standard deviation (``ddof=1``; 0 for one sample);
* ``trimmed_mean``: the 10–90 % trimmed mean — sort, drop ``floor(0.1 * n)`` samples at each end, average
  the rest (``scipy.stats.trim_mean(x, 0.1)``).

The gate compares two runs with :func:`bootstrap_blocks` when both have interleaved calibration blocks:
each block of consecutive samples becomes one value, its median divided by the median of the
calibration block measured right after it (the machine's speed in the same second); the ratio of the
two runs' medians of those values gets a percentile CI from resampling whole blocks (seeded), which
keeps the within-block correlation of samples out of the CI. Otherwise (reports without blocks, e.g.
older ones) :func:`bootstrap_ratio`: resample each run's samples, ratio of medians and its CI, divided
by the ratio of the two runs' calibration medians.
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


def block_values(samples: Sequence[float], ends: Sequence[int], calibration: Optional[Sequence[float]] = None
                 ) -> np.ndarray:
    """One value per block: ``median(samples[prev_end:end])``, divided by that block's calibration
    median when ``calibration`` is given."""
    x = np.asarray(samples, dtype=np.float64)
    ends = [int(e) for e in ends]
    if not ends or ends[-1] > x.size or any(b <= a for a, b in zip([0] + ends, ends)):
        raise ValueError("block ends must be increasing and within the samples")
    meds = np.array([np.median(x[a:b]) for a, b in zip([0] + ends[:-1], ends)])
    if calibration is not None:
        c = np.asarray(calibration, dtype=np.float64)
        if c.size != meds.size or not (c > 0).all():
            raise ValueError("one positive calibration median per block is needed")
        meds = meds / c
    return meds


def bootstrap_blocks(baseline_values: Sequence[float], current_values: Sequence[float],
                     n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Ratio ``median(current_values) / median(baseline_values)`` of per-block values
    (:func:`block_values`) with a percentile CI from resampling whole blocks of each run (seeded).
    Returns ``{ratio, ci_low, ci_high, n_blocks: [baseline, current], n_boot, confidence, seed}``."""
    b = np.asarray(baseline_values, dtype=np.float64)
    c = np.asarray(current_values, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("bootstrap needs blocks on both sides")
    rng = np.random.default_rng(seed)
    boot = _boot_medians(c, n_boot, rng) / _boot_medians(b, n_boot, rng)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"ratio": float(np.median(c) / np.median(b)), "ci_low": float(lo), "ci_high": float(hi),
            "n_blocks": [int(b.size), int(c.size)], "n_boot": int(n_boot),
            "confidence": float(confidence), "seed": int(seed)}
