"""The regression gate: ``clip-latency compare BASELINE CURRENT``.

Records are matched by (model, artifact, runtime). For each pair measured in both reports:

* latency, at the process level: each record's accepted worker processes (``steady.workers``; a report
  without them, such as an app's single-process report, counts as one process) each give their block
  medians. The ratio is current / baseline of the mean over processes of each process's median block mean,
  with a seeded two-level percentile bootstrap (processes, then blocks within them:
  :func:`clipdeploy.latency.stats.hierarchical_bootstrap`), so the interval carries the
  process-to-process variance. A **REGRESSION** is a ratio above ``1 + max_slowdown`` whose CI lies
  above 1: slower beyond the threshold, and slower *with confidence*.
* too little data on either side (fewer than ``MIN_PROCESSES`` processes, or a process with fewer than
  ``MIN_BLOCKS`` blocks) is **insufficient data**, and a record the harness could not measure cleanly
  (status ``contended`` / ``unstable``: too few workers passed the contention, bimodality and outlier
  checks) is **contended** / **unstable**; none of them is ever a REGRESSION. These are inconclusive:
  exit 3 unless something failed.
* parity: the current run's ``cosine_min`` below ``min_cosine``, non-finite outputs, or a zero-shot
  agreement lower than the baseline's, is a **parity** regression (whatever the latency data).
* a record that ran in the baseline but failed (error/timeout) in the current run is **failed**.

``normalize=True`` (the default; ``--no-normalize`` turns it off) divides each process's block means by
the median of the calibration workload measured in that process, before, between the blocks of and
after its steady state: on the build machine one core's speed drifts by up to 2× within seconds with
nothing visible from the guest, and the calibration follows it (docs/latency.md). Where only one side
has calibration samples both are compared raw.

Verdicts: ``ok``, ``faster`` (ratio below ``1 - max_slowdown``, CI below 1), ``slower?`` (ratio above
the threshold but the CI includes 1: not a failure), ``REGRESSION``, ``PARITY``, ``FAILED``, and the
inconclusive ``insufficient data``, ``contended``, ``unstable``.
"""
from __future__ import annotations

import math

import numpy as np

from .report import ReportError
from .parity import QUANTIZED, THRESHOLDS
from .stability import block_means
from .stats import hierarchical_bootstrap

FAILING = ("REGRESSION", "PARITY", "FAILED")
INCONCLUSIVE = ("insufficient data", "contended", "unstable")
MIN_PROCESSES = 3          # per side
MIN_BLOCKS = 4             # per process


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


def _processes(rec: dict, normalize: bool) -> tuple:
    """``(block means per accepted process, processes summary or None, calibrated)`` of an ok record.
    A record without ``steady.workers`` is one process (its ``block_ends``, else one block)."""
    st = rec["steady"]
    workers = st.get("workers")
    if not workers:
        ends = st.get("block_ends") or (st.get("blocks") or {}).get("ends")
        workers = [{"samples_ms": st["samples_ms"], "block_ends": ends or [len(st["samples_ms"])],
                    "accepted": True, "calibration_ms": None}]
    use = [w for w in workers if w.get("accepted", True)] or workers
    vals = [block_means(w["samples_ms"], w["block_ends"]) for w in use]
    calibrated = normalize and all(w.get("calibration_ms") for w in use)
    if calibrated:
        vals = [v / float(np.median(w["calibration_ms"])) for v, w in zip(vals, use)]
    return vals, st.get("processes"), calibrated


def _describe(vals: list) -> str:
    blocks = sorted({v.size for v in vals})
    b = str(blocks[0]) if len(blocks) == 1 else f"{blocks[0]}-{blocks[-1]}"
    return f"{len(vals)} process{'es' if len(vals) != 1 else ''}, {b} block{'s' if blocks != [1] else ''} each"


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
        bv, bproc, bnorm = _processes(b, normalize)
        cv, cproc, cnorm = _processes(c, normalize)
        if bnorm != cnorm:                     # only one side has per-process calibration: raw on both
            bv, bproc, _ = _processes(b, False)
            cv, cproc, _ = _processes(c, False)
        boot = hierarchical_bootstrap(bv, cv, n_boot=n_boot, confidence=confidence, seed=seed)
        row.update({"baseline_median": b["steady"]["stats"]["median"],
                    "current_median": c["steady"]["stats"]["median"], "ratio": boot["ratio"],
                    "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
                    "raw_ratio": float(np.median(c["steady"]["samples_ms"]) / np.median(b["steady"]["samples_ms"])),
                    "processes": boot["processes"], "blocks": boot["blocks"],
                    "normalized": bool(bnorm and cnorm)})
        verdict, why = "ok", ""
        short = [f"{name}: {_describe(v)}" for name, v in (("baseline", bv), ("current", cv))
                 if len(v) < MIN_PROCESSES or min(x.size for x in v) < MIN_BLOCKS]
        unclean = [(name, p) for name, p in (("baseline", bproc), ("current", cproc))
                   if p and p.get("status") != "stable"]
        if short:
            verdict = "insufficient data"
            why = "; ".join(short) + f" (the gate needs >= {MIN_PROCESSES} processes of >= {MIN_BLOCKS} blocks)"
        elif unclean:
            verdict = "contended" if any(p["status"] == "contended" for _, p in unclean) else "unstable"
            why = "; ".join(f"{name}: {p['accepted']} of {p['processes']} workers accepted ("
                            + ", ".join(f"{n} {f}" for f, n in (p.get("flagged") or {}).items() if n) + ")"
                            for name, p in unclean)
        elif boot["ratio"] > 1.0 + max_slowdown and boot["ci_low"] > 1.0:
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
    inconclusive = [r for r in rows if r["verdict"] in INCONCLUSIVE]
    warnings = []
    for name, rep in (("baseline", baseline), ("current", current)):
        n = sum(1 for r in rep["records"] if r["status"] == "ok"
                and (r["steady"].get("processes") or {}).get("flagged", {}).get("contended"))
        if n:
            warnings.append(f"the {name} run had contended workers in {n} record(s): other processes, steal "
                            f"or CPU pressure during their samples (see the report's workers)")
    return {
        "warnings": warnings,
        "max_slowdown": max_slowdown, "min_cosine": min_cosine, "n_boot": n_boot, "seed": seed,
        "confidence": confidence, "normalized": any(r.get("normalized") for r in rows),
        "min_processes": MIN_PROCESSES, "min_blocks": MIN_BLOCKS,
        "calibration": {"baseline_median_ms": b_cal["median_ms"] if b_cal else None,
                        "current_median_ms": c_cal["median_ms"] if c_cal else None,
                        "ratio": (c_cal["median_ms"] / b_cal["median_ms"]) if b_cal and c_cal else None},
        "rows": rows, "regressions": failing, "inconclusive": inconclusive,
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
    if cal["ratio"] is not None:
        lines.append(f"calibration (single-thread workload in every worker): baseline "
                     f"{cal['baseline_median_ms']:.3f} ms, current {cal['current_median_ms']:.3f} ms "
                     f"(x{cal['ratio']:.3f})")
    lines.append("ratios are normalized by each process's calibration" if result["normalized"]
                 else "ratios are raw process-level figures (mean over processes of each one's median block mean)")
    lines.append(f"threshold: a ratio above +{result['max_slowdown'] * 100:g}% whose "
                 f"{result['confidence'] * 100:g}% hierarchical bootstrap CI (processes, then blocks; "
                 f"{result['n_boot']} resamples, seed {result['seed']}) lies above 1; at least "
                 f"{result['min_processes']} processes of {result['min_blocks']} blocks per side; parity: "
                 f"cosine_min >= {result['min_cosine']}, zero-shot not lower")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    for what in ("only_in_baseline", "only_in_current"):
        if result[what]:
            lines.append(f"{what.replace('_', ' ')} (not compared): {', '.join(result[what])}")
    return lines
