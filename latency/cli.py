"""``clip-latency``: latency + parity of a bundle's artifacts, reports, the regression gate.

    clip-latency run BUNDLE [--runtime onnxruntime|executorch|litert|torch|coreml|all] [--threads N]
                 [--processes 3] [--min-seconds 2] [--min-blocks 8] [--warmup 10] [--runs 50]
                 [--json OUT] [--html OUT] [--v3 OUT]
    clip-latency compare BASELINE CURRENT [--max-slowdown 10%] [--min-cosine 0.9999]
    clip-latency report REPORT... [--html OUT] [--markdown [FILE]]
    clip-latency ingest REPORT... [--into DIR]
    clip-latency android BUNDLE [--serial S] [--adb PATH] [--runtime executorch|onnxruntime|litert] [--runs N]
    clip-latency verify BUNDLE [--encoder image|text] [--pessimistic] [--json OUT]
    clip-latency goldens [--out goldens] [--check]

Exit status: 0 fine; 3 inconclusive (compare: insufficient data, or a contended / unstable record, and
no regression); 1 a regression (compare), a failed artifact (run), a failed device run (android),
a Core ML artifact that fails the parity bars in the reference interpreter (verify); 2 bad input or a
rejected report (ingest) (one ``error:`` line on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser():
    p = argparse.ArgumentParser(prog="clip-latency",
                                description="latency and parity of exported CLIP encoders")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="measure every artifact of a bundle on every runtime of this host")
    r.add_argument("bundle")
    r.add_argument("--runtime", action="append",
                   help="onnxruntime, executorch, litert, torch, coreml or all (repeatable, comma-separated; "
                        "default all)")
    r.add_argument("--threads", type=int,
                   help="threads per runtime (default 1 on 1-2 available CPUs, else min(4, CPUs - 1): one "
                        "core left to the rest of the machine)")
    r.add_argument("--warmup", type=int, default=10, help="untimed calls before timing (default 10)")
    r.add_argument("--runs", type=int, default=50, help="timed samples per worker, at least (default 50)")
    r.add_argument("--min-seconds", type=float, default=2.0,
                   help="timed work per worker, at least (default 2)")
    r.add_argument("--min-blocks", type=int, default=8,
                   help="blocks of >= 0.25 s and >= 3 samples per worker, at least (default 8)")
    r.add_argument("--processes", type=int, default=3,
                   help="worker processes per artifact x runtime, round-robin across artifacts (default 3)")
    r.add_argument("--max-processes", type=int,
                   help="workers per artifact x runtime at most, re-running flagged ones (default 2 x "
                        "--processes)")
    r.add_argument("--ort-spinning", choices=["on", "off"], default="on",
                   help="ONNX Runtime session.intra_op.allow_spinning (default on: ONNX Runtime's own "
                        "default, what an app's session does)")
    r.add_argument("--timeout", type=float, default=600.0,
                   help="seconds per artifact x runtime worker (default 600)")
    r.add_argument("--encoder", action="append", choices=["image", "text", "classifier"], help="only these encoders (classifier: the zero-shot classifier artifacts)")
    r.add_argument("--target", action="append",
                   help="only artifacts of these targets (onnx, executorch, coreml, pytorch) or paths")
    r.add_argument("--checkpoint", help="weights for the torch reference when the bundle's recorded "
                                        "checkpoint path is not reachable from here")
    r.add_argument("--compute-units", default="ALL", choices=["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"],
                   help="Core ML compute units (macOS)")
    r.add_argument("--verify-reparam", action="store_true",
                   help="torch reference: reparameterize() with fold-by-fold verification (slower) "
                        "instead of to_inference_form()")
    r.add_argument("--no-flops", action="store_true", help="do not count FLOPs / achieved GFLOP/s")
    r.add_argument("--peak-gflops-per-core", type=float,
                   help="this CPU's fp32 GEMM peak per core, for fraction_of_peak (e.g. 245)")
    r.add_argument("--work-factor", type=float, default=1.0,
                   help="testing aid: K x the work per sample, fractions allowed (1.2 = one extra "
                        "inference every fifth sample), to validate the gate with a genuinely slower run "
                        "(default 1)")
    r.add_argument("--json", metavar="OUT", help="write the report here")
    r.add_argument("--html", metavar="OUT", help="write a self-contained HTML report here")
    r.add_argument("--v3", metavar="OUT", help="write PyTorch OSS benchmark v3 records here")
    r.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    c = sub.add_parser("compare", help="regression gate: exit 1 when CURRENT is slower or lost parity")
    c.add_argument("baseline")
    c.add_argument("current")
    c.add_argument("--max-slowdown", default="10%", help="e.g. 10%% or 0.1 (default 10%%)")
    c.add_argument("--min-cosine", type=float, default=0.9999, help="default 0.9999")
    c.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--confidence", type=float, default=0.95)
    c.add_argument("--no-normalize", action="store_true",
                   help="compare raw figures: do not divide each process by its own calibration workload")
    c.add_argument("--json", metavar="OUT", help="write the comparison as JSON here")
    c.add_argument("--markdown", action="store_true", help="print the table as markdown")

    h = sub.add_parser("report", help="HTML / markdown report of one or more reports")
    h.add_argument("reports", nargs="+")
    h.add_argument("--html", metavar="OUT")
    h.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                   help="markdown summary to FILE (default stdout)")
    h.add_argument("--png-dir", help="also write the figures as PNG files here")
    h.add_argument("--max-slowdown", default="10%")
    h.add_argument("--min-cosine", type=float, default=0.9999)

    i = sub.add_parser("ingest", help="validate, normalize and store reports from the apps")
    i.add_argument("reports", nargs="+")
    i.add_argument("--into", metavar="DIR", help="store normalized reports under DIR/<model>/")
    i.add_argument("--merge", action="store_true",
                   help="the reports are launches of one benchmark (an app run once per process): merge them "
                        "into one report with a worker per launch, as `compare` needs")

    a = sub.add_parser("android", help="run the Android app's benchmark activity over adb")
    a.add_argument("bundle")
    a.add_argument("--serial", "-s")
    a.add_argument("--adb", help="adb executable (default: adb on PATH)")
    a.add_argument("--runtime", default="executorch", choices=__import__(__package__ + ".android", fromlist=["RUNTIMES"]).RUNTIMES)
    a.add_argument("--runs", type=int, default=50)
    a.add_argument("--warmup", type=int, default=10)
    a.add_argument("--threads", type=int, default=0, help="0: the runtime's default")
    a.add_argument("--processes", type=int, default=3,
                   help="start the activity this many times (a fresh app process each), merged (default 3)")
    a.add_argument("--min-seconds", type=float, default=2.0, help="timed work per process (default 2)")
    a.add_argument("--min-blocks", type=int, default=8, help="blocks per process, at least (default 8)")
    a.add_argument("--report-path", help="report path on the device (default: the app's files dir)")
    a.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the report")
    a.add_argument("--json", metavar="OUT", help="write the pulled report here")
    a.add_argument("--into", metavar="DIR", help="also ingest it into DIR")

    v = sub.add_parser("verify", help="Core ML artifacts through the Core ML reference interpreter (any OS)")
    v.add_argument("bundle")
    v.add_argument("--encoder", action="append", choices=["image", "text", "classifier"], help="only these encoders (classifier: the zero-shot classifier artifacts)")
    v.add_argument("--pessimistic", action="store_true",
                   help="fp16 programs: also round inside ops (fp16 accumulators)")
    v.add_argument("--json", metavar="OUT", help="write the figures as JSON here")
    v.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    g = sub.add_parser("goldens", help="write (or --check) the golden vectors the apps' tests consume")
    g.add_argument("--out", default="goldens", help="folder to write (default goldens)")
    g.add_argument("--check", action="store_true",
                   help="regenerate in a temporary folder and exit 1 if --out differs")
    return p


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _num(v, spec=".2f") -> str:
    return "—" if v is None else format(v, spec)


def _print_report(rep: dict) -> None:
    from .report import header_lines, table
    for line in header_lines(rep):
        print(line)
    print(table(rep))


def cmd_run(args) -> int:
    from .bundle import BundleError
    from .harness import RunInputError, run_bundle
    from .report import dump_report, to_v3

    for out in (args.json, args.html, args.v3):
        if out and Path(out).is_dir():
            return _err(f"{out} is a directory; give a file path")
    try:
        rep = run_bundle(args.bundle, runtimes=args.runtime or ["all"], threads=args.threads,
                         warmup=args.warmup, runs=args.runs, min_seconds=args.min_seconds,
                         min_blocks=args.min_blocks, processes=args.processes,
                         max_processes=args.max_processes, ort_spinning=args.ort_spinning == "on",
                         timeout=args.timeout, work_factor=args.work_factor, encoders=args.encoder,
                         targets=args.target, checkpoint=args.checkpoint,
                         compute_units=args.compute_units, flops=not args.no_flops,
                         peak_gflops_per_core=args.peak_gflops_per_core,
                         verify_reparam=args.verify_reparam, progress=not args.quiet)
    except (BundleError, RunInputError) as e:
        return _err(str(e))
    if args.json:
        dump_report(rep, args.json)
    if args.v3:
        Path(args.v3).parent.mkdir(parents=True, exist_ok=True)
        Path(args.v3).write_text(json.dumps(to_v3(rep), indent=1))
    if args.html:
        from .htmlreport import build_html
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(build_html([rep]))
    _print_report(rep)
    for what, path in (("report", args.json), ("v3 records", args.v3), ("html", args.html)):
        if path:
            print(f"{what}: {path}")
    failed = [r for r in rep["records"] if r["status"] in ("error", "timeout")]
    return 1 if failed else 0


def cmd_compare(args) -> int:
    from .compare import compare_reports, format_table, parse_fraction, summary_lines
    from .report import ReportError, load_report

    try:
        thr = parse_fraction(args.max_slowdown)
        if not 0 < args.confidence < 1 or args.bootstrap < 100:
            return _err("--confidence must be in (0, 1) and --bootstrap >= 100")
        base, cur = load_report(args.baseline), load_report(args.current)
        res = compare_reports(base, cur, thr, args.min_cosine, args.bootstrap, args.seed,
                              args.confidence, normalize=not args.no_normalize)
    except ReportError as e:
        return _err(str(e))
    print(format_table(res, markdown=args.markdown))
    for line in summary_lines(res):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if res["regressions"]:
        print(f"{len(res['regressions'])} regression(s):")
        for r in res["regressions"]:
            ci = f" (CI {r['ci_low']:.3f}–{r['ci_high']:.3f})" if r["ci_low"] is not None else ""
            print(f"  {r['artifact']} @ {r['runtime']}: {r['verdict']} — baseline {_num(r['baseline_median'])} ms, "
                  f"current {_num(r['current_median'])} ms, ratio {_num(r['ratio'], '.3f')}{ci}"
                  + (f"; {r['why']}" if r["why"] else ""))
        return 1
    if res["inconclusive"]:
        print(f"no regression found, but {len(res['inconclusive'])} record(s) inconclusive:")
        for r in res["inconclusive"]:
            print(f"  {r['artifact']} @ {r['runtime']}: {r['verdict']} — {r['why']}")
        return 3
    print("no regression")
    return 0


def cmd_report(args) -> int:
    from .compare import compare_reports, parse_fraction
    from .htmlreport import build_html, build_markdown
    from .report import ReportError, load_report

    try:
        reps = [load_report(p) for p in args.reports]
        for p, rep in zip(args.reports, reps):
            rep["_label"] = Path(p).name
        result = None
        if len(reps) >= 2:
            result = compare_reports(reps[0], reps[-1], parse_fraction(args.max_slowdown), args.min_cosine)
    except ReportError as e:
        return _err(str(e))
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(build_html(reps, result, png_dir=args.png_dir))
        print(f"html: {args.html}")
    elif args.png_dir:
        from .htmlreport import figures
        d = Path(args.png_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, png in figures(reps, result).items():
            (d / f"{name}.png").write_bytes(png)
    if args.markdown:
        md = build_markdown(reps, result)
        if args.markdown == "-":
            print(md)
        else:
            Path(args.markdown).write_text(md)
            print(f"markdown: {args.markdown}")
    if not args.html and not args.markdown:
        for rep in reps:
            _print_report(rep)
            print()
    return 0


def _stored(rep: dict, dest) -> str:
    if not dest:
        return ""
    return f" -> {dest}" + (" (already stored: not duplicated)" if rep["ingested"].get("already_stored") else "")


def cmd_ingest(args) -> int:
    from .ingest import ingest_merged, ingest_one
    from .report import ReportError, header_lines, table

    if args.merge:
        try:
            rep, dest = ingest_merged(args.reports, args.into)
        except ReportError as e:
            return _err(str(e))
        ok = sum(r["status"] == "ok" for r in rep["records"])
        print(f"merged {len(args.reports)} launches: {rep['bundle']['model']}, {rep['source']}, "
              f"{ok}/{len(rep['records'])} records ok" + _stored(rep, dest))
        print(table(rep))
        return 0
    rejected = 0
    for p in args.reports:
        try:
            rep, dest = ingest_one(p, args.into)
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
            rejected += 1
            continue
        ok = sum(r["status"] == "ok" for r in rep["records"])
        print(f"accepted {p}: {rep['bundle']['model']}, {rep['source']}, {ok}/{len(rep['records'])} "
              f"records ok" + _stored(rep, dest))
        for line in header_lines(rep)[1:]:
            print(f"  {line}")
        print(table(rep))
    if rejected:
        return 2
    return 0


def cmd_android(args) -> int:
    from .android import DEFAULT_REPORT, AndroidInputError, AndroidRunError, run_android
    from .ingest import ingest_one
    from .report import dump_report

    try:
        rep = run_android(args.bundle, adb=args.adb, serial=args.serial, runtime=args.runtime,
                          runs=args.runs, warmup=args.warmup, threads=args.threads,
                          report_path=args.report_path or DEFAULT_REPORT, timeout=args.timeout,
                          processes=args.processes, min_seconds=args.min_seconds, min_blocks=args.min_blocks,
                          log=lambda *a: print(*a, file=sys.stderr))
    except AndroidInputError as e:
        return _err(str(e))
    except AndroidRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        dump_report(rep, args.json)
        if args.into:
            ingest_one(args.json, args.into)
    elif args.into:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d) / "android.json"
            dump_report(rep, tmp)
            ingest_one(tmp, args.into)
    _print_report(rep)
    return 0


def cmd_verify(args) -> int:
    from .bundle import BundleError
    from .verify import VerifyInputError, table, verify_bundle

    if args.json and Path(args.json).is_dir():
        return _err(f"{args.json} is a directory; give a file path")
    log = (lambda *_: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        res = verify_bundle(args.bundle, encoders=args.encoder, pessimistic=args.pessimistic, log=log)
    except (BundleError, VerifyInputError) as e:
        return _err(str(e))
    print(f"{res['model']}: Core ML artifacts through the reference interpreter — {res['checks']}")
    print(table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        print(f"json: {args.json}")
    bad = [r for r in res["records"] if not r["passed"]]
    print(f"{len(bad)} of {len(res['records'])} failed" if bad else f"all {len(res['records'])} passed")
    return 1 if bad else 0


def cmd_goldens(args) -> int:
    from .goldens import check, generate
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _err(f"--out {out} exists and is not a directory; choose another path")
    if args.check:
        if not out.is_dir():
            return _err(f"--out {out}: no such directory; write it first with clip-latency goldens --out {out}")
        diff = check(out)
        for f in diff:
            print(f"differs: {f}")
        print(f"{len(diff)} file(s) differ from a fresh generation" if diff else f"{out}: up to date")
        return 1 if diff else 0
    try:
        generate(out)
    except OSError as e:
        return _err(f"cannot write --out {out}: {e.strerror or e}; choose a writable directory")
    n = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"wrote {n} files to {out}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return {"run": cmd_run, "compare": cmd_compare, "report": cmd_report, "ingest": cmd_ingest,
            "android": cmd_android, "verify": cmd_verify, "goldens": cmd_goldens}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
