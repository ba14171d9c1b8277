"""Statistics of latency samples, and the bootstrap behind the regression gate.

Every figure is computed from the raw samples (milliseconds), which the report keeps:

* percentiles: numpy's default ("linear", type 7 of Hyndman & Fan): the ``q``-th percentile of the
  sorted samples ``x[0..n-1]`` is interpolated at position ``(n - 1) * q / 100``;
* ``std``: sample standard deviation (``ddof=1``; 0 for one sample);
* ``trimmed_mean``: the 10–90 % trimmed mean — sort, drop ``floor(0.1 * n)`` samples at each end, average
  the rest (``scipy.stats.trim_mean(x, 0.1)``).

The gate (``compare``) works at the process level: each run measured every artifact in several worker
processes, each sampling in blocks of consecutive samples. :func:`hierarchical_bootstrap` resamples
processes, then blocks within each chosen process, so its interval carries the process-to-process
variance (a process that came up at another speed) as well as the drift within a process.
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


def process_value(block_values: Sequence[float]) -> float:
    """One process's figure: the median of its block means."""
    return float(np.median(np.asarray(block_values, dtype=np.float64)))


def _side_boot(procs: list, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` resampled figures of one side: resample processes with replacement, in each chosen
    process resample its blocks with replacement and take their median; the side's figure is the mean
    of those process figures."""
    P = len(procs)
    out = np.empty(n_boot)
    pick = rng.integers(0, P, size=(n_boot, P))
    # per process: a matrix of resampled block means, drawn once per (resample, slot)
    for i in range(n_boot):
        vals = 0.0
        for j in pick[i]:
            v = procs[j]
            vals += np.median(v[rng.integers(0, v.size, size=v.size)])
        out[i] = vals / P
    return out


def side_value(procs: list) -> float:
    """A side's figure: the mean over processes of each process's median of block means."""
    return float(np.mean([process_value(v) for v in procs]))


def hierarchical_bootstrap(baseline: list, current: list, n_boot: int = 2000, confidence: float = 0.95,
                           seed: int = 0) -> dict:
    """Ratio of the current to the baseline figure (:func:`side_value`), with a percentile CI from a
    two-level bootstrap (processes, then blocks within each process; seeded).

    ``baseline`` / ``current``: one array of block means per accepted process. Returns ``{ratio,
    ci_low, ci_high, processes: [b, c], blocks: [b, c], n_boot, confidence, seed}``."""
    b = [np.asarray(v, dtype=np.float64) for v in baseline]
    c = [np.asarray(v, dtype=np.float64) for v in current]
    if not b or not c or any(v.size == 0 for v in b + c):
        raise ValueError("the bootstrap needs at least one block in one process on each side")
    rng = np.random.default_rng(seed)
    boot = _side_boot(c, n_boot, rng) / _side_boot(b, n_boot, rng)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"ratio": side_value(c) / side_value(b), "ci_low": float(lo), "ci_high": float(hi),
            "processes": [len(b), len(c)], "blocks": [int(sum(v.size for v in b)), int(sum(v.size for v in c))],
            "n_boot": int(n_boot), "confidence": float(confidence), "seed": int(seed)}
