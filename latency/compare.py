"""The regression gate: ``clip-latency compare BASELINE CURRENT``.

Records are matched by (model, artifact, runtime). For each pair measured in both reports:

* latency: when both records have interleaved calibration blocks (``steady.blocks``), each block of
  samples becomes its median divided by the calibration measured in the same second, and the ratio is
  ``median(current blocks) / median(baseline blocks)`` with a seeded percentile-bootstrap CI over whole
  blocks (:func:`clipdeploy.latency.stats.bootstrap_blocks`); otherwise the ratio of the raw sample
  medians divided by the ratio of the calibration medians (the record's own, measured right before and
  after its steady state, else the run's), with a bootstrap CI over samples
  (:func:`~clipdeploy.latency.stats.bootstrap_ratio`). Either way a machine that is uniformly slower is
  not a regression. A **regression** is a ratio above ``1 + max_slowdown`` whose CI lies above 1: slower
  beyond the threshold, and slower *with confidence*.
* parity: the current run's ``cosine_min`` below ``min_cosine``, non-finite outputs, or a zero-shot
  agreement lower than the baseline's, is a **parity** regression.
* a record that ran in the baseline but failed (error/timeout) in the current run is **failed**.

Verdicts: ``ok``, ``faster`` (ratio below ``1 - max_slowdown``, CI below 1), ``slower?`` (ratio above
the threshold but the CI includes 1: not a failure), ``REGRESSION``, ``PARITY``, ``FAILED``.
"""
from __future__ import annotations

import math

import numpy as np

from .report import ReportError
from .parity import QUANTIZED, THRESHOLDS
from .stats import block_values, bootstrap_blocks, bootstrap_ratio

FAILING = ("REGRESSION", "PARITY", "FAILED")


class CompareInputError(ReportError):
    """The two reports cannot be compared (one line for ``error:``; exit 2)."""


def parse_fraction(text) -> float:
    """'10%' -> 0.10, '0.1' -> 0.1."""
    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise CompareInputError(f"cannot read {text!r} as a fraction: use e.g. 10% or 0.1") from None
    if not (0 <= v < 10) or math.isnan(v):
        raise CompareInputError(f"{text!r} is out of range: use e.g. 10% or 0.1")
    return v


def _key(r: dict) -> tuple:
    return (r["model"], r["artifact"], r["runtime"])


def _cosine_bar(record: dict, min_cosine: float) -> float:
    """``--min-cosine`` for float artifacts; a quantized one is held to its own export bar (int8: 0.999)
    when that is lower, or every int8 record would read as lost parity."""
    if record.get("precision") in QUANTIZED:
        return min(min_cosine, THRESHOLDS[record["precision"]]["min_cosine"])
    return min_cosine


def compare_reports(baseline: dict, current: dict, max_slowdown: float = 0.10,
                    min_cosine: float = 0.9999, n_boot: int = 2000, seed: int = 0,
                    confidence: float = 0.95, normalize: bool = True) -> dict:
    """Compare two valid reports; raises :class:`CompareInputError` when nothing can be compared."""
    b_recs = {_key(r): r for r in baseline["records"]}
    c_recs = {_key(r): r for r in current["records"]}
    common = [k for k in b_recs if k in c_recs]
    if not common:
        raise CompareInputError(
            f"no common artifacts: baseline has {sorted({k[1] + ' @ ' + k[2] for k in b_recs}) or 'none'}, "
            f"current has {sorted({k[1] + ' @ ' + k[2] for k in c_recs}) or 'none'}")
    b_cal, c_cal = baseline.get("calibration"), current.get("calibration")
    use_cal = normalize and bool(b_cal) and bool(c_cal)
    rows = []
    for k in common:
        b, c = b_recs[k], c_recs[k]
        row = {"model": k[0], "artifact": k[1], "runtime": k[2], "encoder": c["encoder"],
               "baseline_status": b["status"], "current_status": c["status"],
               "baseline_median": None, "current_median": None, "ratio": None, "ci_low": None,
               "ci_high": None, "raw_ratio": None, "verdict": None, "why": ""}
        if b["status"] != "ok":
            row["verdict"] = "n/a"
            row["why"] = f"baseline {b['status']}: {b.get('reason') or ''}".strip()
            rows.append(row)
            continue
        if c["status"] != "ok":
            row["verdict"] = "FAILED" if c["status"] in ("error", "timeout") else "n/a"
            row["why"] = f"current {c['status']}: {c.get('reason') or ''}".strip()
            row["baseline_median"] = b["steady"]["stats"]["median"]
            rows.append(row)
            continue
        bs, cs = b["steady"]["samples_ms"], c["steady"]["samples_ms"]
        bb, cb = b["steady"].get("blocks"), c["steady"].get("blocks")
        raw = float(np.median(cs) / np.median(bs))
        if bb and cb:
            # interleaved calibration: block medians over the calibration of the same second,
            # whole blocks resampled
            bv = block_values(bs, bb["ends"], bb["calibration_ms"] if normalize else None)
            cv = block_values(cs, cb["ends"], cb["calibration_ms"] if normalize else None)
            boot = bootstrap_blocks(bv, cv, n_boot=n_boot, confidence=confidence, seed=seed)
            scope = "block" if normalize else None
            boot["calibration_ratio"] = raw / boot["ratio"] if normalize else None
            row["n_blocks"] = boot["n_blocks"]
        else:
            # the calibration measured around this record's own steady state when both have one (same
            # seconds as the samples: follows load changes during a run), else the run's
            if normalize and b.get("calibration") and c.get("calibration"):
                bcal, ccal, scope = b["calibration"]["samples_ms"], c["calibration"]["samples_ms"], "record"
            elif use_cal:
                bcal, ccal, scope = b_cal["samples_ms"], c_cal["samples_ms"], "run"
            else:
                bcal, ccal, scope = None, None, None
            boot = bootstrap_ratio(bs, cs, bcal, ccal, n_boot=n_boot, confidence=confidence, seed=seed)
        row["calibration_ratio"], row["calibration_scope"] = boot["calibration_ratio"], scope
        row.update({"baseline_median": b["steady"]["stats"]["median"],
                    "current_median": c["steady"]["stats"]["median"], "ratio": boot["ratio"],
                    "ci_low": boot["ci_low"], "ci_high": boot["ci_high"], "raw_ratio": raw})
        verdict, why = "ok", ""
        if boot["ratio"] > 1.0 + max_slowdown and boot["ci_low"] > 1.0:
            verdict = "REGRESSION"
            why = (f"{(boot['ratio'] - 1) * 100:+.1f}% beyond +{max_slowdown * 100:g}% (CI "
                   f"{(boot['ci_low'] - 1) * 100:+.1f}% .. {(boot['ci_high'] - 1) * 100:+.1f}%: slower with "
                   f"confidence)")
        elif boot["ratio"] < 1.0 - max_slowdown and boot["ci_high"] < 1.0:
            verdict = "faster"
        elif boot["ratio"] > 1.0 + max_slowdown:
            verdict = "slower?"
            why = "above the threshold, but the CI includes no change"
        bp, cp = b["parity"], c["parity"]
        parity_bad = []
        if not cp.get("finite", True) or cp.get("cosine_min") is None:
            parity_bad.append("non-finite outputs")
        elif cp["cosine_min"] < _cosine_bar(c, min_cosine):
            parity_bad.append(f"cosine_min {cp['cosine_min']:.6f} < {_cosine_bar(c, min_cosine)}")
        if cp["zero_shot_agreement"] < bp["zero_shot_agreement"]:
            parity_bad.append(f"zero-shot agreement {bp['zero_shot_agreement']:.0%} -> "
                              f"{cp['zero_shot_agreement']:.0%}")
        row["parity"] = {"baseline": bp, "current": cp}
        if parity_bad:
            why = "; ".join(parity_bad) + (f"; also {why}" if verdict == "REGRESSION" else "")
            verdict = "PARITY" if verdict != "REGRESSION" else "REGRESSION+PARITY"
        row["verdict"], row["why"] = verdict, why
        rows.append(row)
    failing = [r for r in rows if any(f in (r["verdict"] or "") for f in FAILING)]
    warnings = []
    for name, rep in (("baseline", baseline), ("current", current)):
        blocks = [b["median_ms"] for b in ((rep.get("calibration") or {}).get("blocks") or [])]
        if len(blocks) >= 2 and max(blocks) / min(blocks) > 1.10:
            warnings.append(f"the {name} machine's speed drifted during its run (calibration block "
                            f"medians {', '.join(f'{x:.3f}' for x in blocks)} ms): its latencies are noisy")
    return {
        "warnings": warnings,
        "max_slowdown": max_slowdown, "min_cosine": min_cosine, "n_boot": n_boot, "seed": seed,
        "confidence": confidence, "normalized": any(r.get("calibration_scope") for r in rows),
        "calibration": {"baseline_median_ms": b_cal["median_ms"] if b_cal else None,
                        "current_median_ms": c_cal["median_ms"] if c_cal else None,
                        "ratio": (c_cal["median_ms"] / b_cal["median_ms"]) if b_cal and c_cal else None},
        "rows": rows, "regressions": failing,
        "only_in_baseline": [" @ ".join(k[1:]) for k in b_recs if k not in c_recs],
        "only_in_current": [" @ ".join(k[1:]) for k in c_recs if k not in b_recs],
    }


def _f(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def format_table(result: dict, markdown: bool = False) -> str:
    head = ["artifact", "runtime", "baseline ms", "current ms", "ratio", "95% CI", "verdict", "note"]
    rows = []
    for r in result["rows"]:
        ci = "—" if r["ci_low"] is None else f"{r['ci_low']:.3f}–{r['ci_high']:.3f}"
        rows.append([r["artifact"], r["runtime"], _f(r["baseline_median"]), _f(r["current_median"]),
                     _f(r["ratio"], ".3f"), ci, r["verdict"], r["why"]])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    fmt = lambda row: "  ".join((c.rjust(w) if 2 <= i <= 5 else c.ljust(w))  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([fmt(head)] + [fmt(row) for row in rows])


def summary_lines(result: dict) -> list:
    cal = result["calibration"]
    lines = []
    scopes = {r.get("calibration_scope") for r in result["rows"] if r["ratio"] is not None}
    if cal["ratio"] is not None:
        lines.append(f"calibration (run): baseline {cal['baseline_median_ms']:.3f} ms, current "
                     f"{cal['current_median_ms']:.3f} ms (x{cal['ratio']:.3f})")
    if "block" in scopes:
        lines.append("ratios are normalized block by block by the calibration interleaved with the samples")
    elif "record" in scopes:
        lines.append("ratios are normalized by each record's own calibration (measured around its steady "
                     "state)" + (", else by the run's" if "run" in scopes else ""))
    elif "run" in scopes:
        lines.append("ratios are normalized by the run's calibration")
    else:
        lines.append("ratios are raw (no calibration in a report, or --no-normalize)")
    lines.append(f"threshold: a ratio above +{result['max_slowdown'] * 100:g}% whose "
                 f"{result['confidence'] * 100:g}% bootstrap CI ({result['n_boot']} resamples, seed "
                 f"{result['seed']}) lies above 1; parity: cosine_min >= {result['min_cosine']}, "
                 f"zero-shot not lower")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    for what in ("only_in_baseline", "only_in_current"):
        if result[what]:
            lines.append(f"{what.replace('_', ' ')} (not compared): {', '.join(result[what])}")
    return lines
