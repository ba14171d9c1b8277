"""How trustworthy is the latency gate on this machine, at the tool's defaults?

    .venv/bin/python benchmarks/harness_noise.py out/mobileclip_s0 [--pairs 20] [--work-factor 1.2]
        [--w-every 1|2] [--busy] [--out out/harness_noise] [--run-args "..."] [--analyze]

Every measurement is a real ``clip-latency run BUNDLE --json X`` subprocess with no other flags (plus
``--run-args`` if given, and ``--work-factor`` for the slowed runs), run one after another on an otherwise
idle machine, in the order A0, W0, A1, W1, … A<pairs>:

* **A/A**: ``compare(A_i, A_i+1)`` for every consecutive pair of unchanged runs — every REGRESSION (or
  PARITY / FAILED) verdict is a false alarm (goal: none);
* **detection**: ``compare(A_i, W_i)``, W_i measured with ``--work-factor`` (default 1.2: one extra
  inference every fifth sample, a genuine +20 %) — a pair is caught when every record is REGRESSION
  (``--w-every 2``: a W run after every second A run, compared with the A runs on both sides of it);
* **busy sibling** (``--busy``): one more run with a process spinning on one core (pinned with
  ``sched_setaffinity``) for the whole run, compared with the last A run — it must say contended (or
  otherwise not REGRESSION).

It also answers whether the calibration workload earns its place: for every A/A record it compares
the spread of the process-level ratios normalized by each process's calibration (the default) with
the raw ones (``compare --no-normalize``), and counts the false alarms the raw gate would have given.

Prints one line per run and per pair; writes the reports and ``summary.json`` under ``--out``; exits 0
when no A/A pair had a false alarm and at least 95 % of the detection pairs were caught.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from clipdeploy.latency.compare import FAILING, INCONCLUSIVE, compare_reports
from clipdeploy.latency.report import load_report


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run(bundle: str, out: Path, extra: list) -> tuple:
    cmd = [_bin("clip-latency"), "run", bundle, "--json", str(out)] + extra
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if p.returncode != 0 or not out.exists():
        sys.exit(f"{' '.join(cmd)} failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    return load_report(out), secs


def busy_sibling(core: int) -> subprocess.Popen:
    code = (f"import os; os.sched_setaffinity(0, {{{core}}})\n"
            "x = 0\nwhile True:\n    x = (x * 1103515245 + 12345) % 2147483648\n")
    return subprocess.Popen([sys.executable, "-c", code])


def _meds(rep: dict) -> str:
    parts = []
    for r in rep["records"]:
        if r["status"] == "ok":
            p = r["steady"]["processes"]
            parts.append(f"{r['artifact'].split('/')[0]}/{r['encoder']}@{r['runtime']} "
                         f"{r['steady']['stats']['median']:.2f} ({p['accepted']}/{p['processes']})")
    return "; ".join(parts)


def _rows(res: dict) -> list:
    return [r for r in res["rows"] if r["ratio"] is not None]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--work-factor", type=float, default=1.2)
    p.add_argument("--w-every", type=int, default=1, choices=[1, 2],
                   help="a slowed run after every unchanged run (1, default: detection pairs (A_i, W_i)) or after "
                        "every second one (2: each slowed run compared with the unchanged runs before and after "
                        "it, half the runs for the same number of detection pairs)")
    p.add_argument("--busy", action="store_true", help="also a run beside a busy process on one core")
    p.add_argument("--busy-core", type=int, default=1)
    p.add_argument("--run-args", default="", help="extra clip-latency run flags (default: none)")
    p.add_argument("--out", default="out/harness_noise")
    p.add_argument("--analyze", action="store_true",
                   help="run nothing: compare the reports already under --out (A*.json, W*.json, busy.json)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.run_args)
    t0 = time.perf_counter()
    A, W, secs = [], [], []

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    det_pairs = []                                   # (index into A, index into W)
    if args.analyze:
        # the reports of an earlier (or interrupted) run under --out, in the order they were written
        A = [load_report(p) for p in sorted(out.glob("A*.json"))]
        W = [load_report(p) for p in sorted(out.glob("W*.json"))]
        args.pairs = len(A) - 1
        W = W[:args.pairs // args.w_every + 1]          # W_j came after A_(j * w_every)
        for wi in range(len(W)):
            i = wi * args.w_every
            det_pairs += [(i, wi)] + ([(i + 1, wi)] if args.w_every > 1 and i + 1 < len(A) else [])
        secs = [None] * len(A)
    for i in range(0 if args.analyze else args.pairs + 1):
        rep, s = run(args.bundle, out / f"A{i:02d}.json", extra)
        A.append(rep)
        secs.append(s)
        log(f"A{i:02d} {s:.0f}s: {_meds(rep)}")
        if i < args.pairs and i % args.w_every == 0:
            rep, s = run(args.bundle, out / f"W{len(W):02d}.json", extra + ["--work-factor", f"{args.work_factor:g}"])
            W.append(rep)
            log(f"W{len(W) - 1:02d} {s:.0f}s: {_meds(rep)}")
            # the slowed run against the unchanged run before it, and (every second one) after it
            det_pairs += [(i, len(W) - 1)] + ([(i + 1, len(W) - 1)] if args.w_every > 1 else [])

    summary = {"bundle": args.bundle, "pairs": args.pairs, "work_factor": args.work_factor,
               "run_args": extra, "run_seconds": secs, "aa": [], "detection": [], "busy": None}
    false_alarm_pairs = false_alarms = aa_records = aa_inconclusive = 0
    caught_pairs = det_records = det_caught = 0
    raw_logs, norm_logs, raw_false = [], [], 0
    for i in range(args.pairs):
        aa = compare_reports(A[i], A[i + 1])
        raw = compare_reports(A[i], A[i + 1], normalize=False)
        raw_false += sum(any(f in (r["verdict"] or "") for f in FAILING) for r in raw["rows"])
        fa = [r for r in aa["rows"] if any(f in (r["verdict"] or "") for f in FAILING)]
        false_alarms += len(fa)
        false_alarm_pairs += bool(fa)
        aa_records += len(_rows(aa))
        aa_inconclusive += sum(r["verdict"] in INCONCLUSIVE for r in aa["rows"])
        for n, r in zip(_rows(aa), _rows(raw)):
            raw_logs.append(math.log(r["ratio"]))
            if n.get("normalized"):
                norm_logs.append(math.log(n["ratio"]))
        for r in _rows(aa):
            log(f"pair {i:2d}   A/A {r['artifact']} @ {r['runtime']}: ratio {r['ratio']:.3f} CI "
                f"{r['ci_low']:.3f}-{r['ci_high']:.3f} (raw medians {r['raw_ratio']:.3f}) {r['verdict']} {r['why']}")
        summary["aa"].append([{k: r[k] for k in ("artifact", "runtime", "ratio", "ci_low", "ci_high",
                                                 "raw_ratio", "verdict", "why")} for r in aa["rows"]])
    for i, (ai, wi) in enumerate(det_pairs):
        det = compare_reports(A[ai], W[wi])
        drows = _rows(det)
        hits = [r for r in drows if "REGRESSION" in r["verdict"]]
        det_records += len(drows)
        det_caught += len(hits)
        caught_pairs += bool(drows) and len(hits) == len(drows)
        for r in drows:
            log(f"det {i:2d} (A{ai:02d}, W{wi:02d}) {r['artifact']} @ {r['runtime']}: ratio {r['ratio']:.3f} CI "
                f"{r['ci_low']:.3f}-{r['ci_high']:.3f} (raw medians {r['raw_ratio']:.3f}) {r['verdict']} {r['why']}")
        summary["detection"].append([{k: r[k] for k in ("artifact", "runtime", "ratio", "ci_low", "ci_high",
                                                        "raw_ratio", "verdict", "why")} for r in det["rows"]])

    if args.busy and args.analyze and (out / "busy.json").exists():
        rep, s = load_report(out / "busy.json"), None
    if args.busy and not args.analyze:
        sib = busy_sibling(args.busy_core)
        try:
            time.sleep(1.0)
            rep, s = run(args.bundle, out / "busy.json", extra)
        finally:
            sib.kill()
            sib.wait()
    if args.busy and (not args.analyze or (out / "busy.json").exists()):
        log(f"busy: {_meds(rep)}")
        res = compare_reports(A[-1], rep)
        for r in _rows(res):
            log(f"busy pair {r['artifact']} @ {r['runtime']}: ratio {r['ratio']:.3f} CI {r['ci_low']:.3f}-"
                f"{r['ci_high']:.3f} {r['verdict']} {r['why']}")
        summary["busy"] = {"core": args.busy_core, "seconds": s,
                           "verdicts": [{k: r[k] for k in ("artifact", "runtime", "ratio", "verdict", "why")}
                                        for r in res["rows"]],
                           "regressions": sum("REGRESSION" in (r["verdict"] or "") for r in res["rows"])}

    def spread(xs):
        xs = np.asarray(xs)
        return {"n": int(xs.size), "sd_pct": float(np.std(xs, ddof=1) * 100) if xs.size > 1 else None,
                "max_abs_pct": float(np.max(np.abs(xs)) * 100) if xs.size else None}

    summary.update({
        "false_alarm_pairs": false_alarm_pairs, "false_alarm_records": false_alarms, "aa_records": aa_records,
        "aa_inconclusive_records": aa_inconclusive,
        "caught_pairs": caught_pairs, "detection_records": det_records, "detection_caught_records": det_caught,
        "calibration": {"raw_log_ratio": spread(raw_logs), "normalized_log_ratio": spread(norm_logs),
                        "raw_gate_false_alarm_records": raw_false},
        "median_run_seconds": float(np.median(secs)) if all(secs) else None,
        "total_seconds": time.perf_counter() - t0,
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    cal = summary["calibration"]
    print(f"A/A: {false_alarm_pairs}/{args.pairs} pairs with a false alarm ({false_alarms}/{aa_records} records; "
          f"{aa_inconclusive} inconclusive)")
    print(f"x{args.work_factor:g}: caught in {caught_pairs}/{len(det_pairs)} pairs ({det_caught}/{det_records} records; "
          f"{len(W)} slowed runs)")
    print(f"A/A spread of process-level ratios: raw sd {cal['raw_log_ratio']['sd_pct']:.2f} %, max "
          f"{cal['raw_log_ratio']['max_abs_pct']:.2f} %; calibration-normalized sd "
          f"{(cal['normalized_log_ratio']['sd_pct'] or float('nan')):.2f} %, max "
          f"{(cal['normalized_log_ratio']['max_abs_pct'] or float('nan')):.2f} %; the raw gate (--no-normalize) "
          f"would have raised {raw_false} false alarms")
    if summary["busy"]:
        print(f"busy sibling on core {args.busy_core}: {summary['busy']['regressions']} REGRESSION verdicts; "
              + ", ".join(f"{v['artifact'].split('/')[0]}/{v['runtime']} {v['verdict']}"
                          for v in summary["busy"]["verdicts"] if v["ratio"] is not None))
    if summary["median_run_seconds"]:
        print(f"a default run took {summary['median_run_seconds']:.0f} s (median); all {summary['total_seconds']:.0f} s")
    print(f"details in {out / 'summary.json'}")
    summary["detection_pairs"] = len(det_pairs)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    ok = false_alarm_pairs == 0 and caught_pairs >= math.ceil(0.95 * len(det_pairs))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
