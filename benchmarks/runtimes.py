"""Every runtime and precision of MobileCLIP S0/S1/S2/B, image and text, at 1 and 2 threads, on an idle
machine and (``--busy``) beside a busy process pinned to one core.

    .venv/bin/python benchmarks/runtimes.py [--models s0 s1 s2 b] [--threads 1 2] [--precision int8]
                                            [--busy] [--processes 3] [--min-seconds 2] [--runtime ...]
                                            [--bundles out/bench] [--reuse] [--json OUT]

For each model a bundle (ONNX + ExecuTorch XNNPACK + LiteRT, seeded weights; with ``--precision int8`` the int8
variants next to fp32) is exported with ``clip-export`` unless ``--reuse`` finds it, then measured
with ``clip-latency run`` at each thread count: every artifact × runtime in ``--processes`` fresh
worker processes, one at a time, round-robin (each runtime alone in its process: an ONNX Runtime
session's spinning pool never runs beside XNNPACK). With ``--busy`` each measurement is repeated with a
second process spinning on one core (``sched_setaffinity``) for the whole run: phones have big and
little cores and background apps, so robustness to a busy core is a property users need.

Columns: process-level median (mean of the workers' median block means) and the spread of the workers'
medians, achieved GFLOP/s, its fraction of this machine's fp32 GEMM peak at that thread count (best of
torch.mm and ONNX Runtime MatMul on 2048x2048, measured before the runs), artifact size; then XNNPACK ÷
ONNX Runtime and LiteRT ÷ ONNX Runtime per model/encoder/threads/condition with a hierarchical-bootstrap
CI. Markdown to stdout,
everything as JSON with ``--json``. Run it on an otherwise idle machine.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness_noise import busy_sibling          # benchmarks/ is on sys.path when run as a script

MODELS = {"s0": "mobileclip_s0", "s1": "mobileclip_s1", "s2": "mobileclip_s2", "b": "mobileclip_b"}
GEMM_N = 2048


def gemm_peak(threads: int, runs: int = 10) -> dict:
    """GFLOP/s of a 2048^3 fp32 matmul with torch.mm and with ONNX Runtime, ``threads`` threads."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    flops = 2 * GEMM_N ** 3

    def best(fn):
        fn()
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return flops / np.median(ts) / 1e9

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    ta = torch.from_numpy(a)
    g_torch = best(lambda: torch.mm(ta, ta))
    torch.set_num_threads(prev)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [GEMM_N, GEMM_N])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [GEMM_N, GEMM_N])],
                              [onnx.numpy_helper.from_array(a, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    g_ort = best(lambda: sess.run(None, {"x": a}))
    return {"threads": threads, "torch_mm_gflops": g_torch, "onnxruntime_matmul_gflops": g_ort,
            "peak_gflops": max(g_torch, g_ort)}


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def export(model: str, out: Path, precision, reuse: bool) -> dict:
    manifest = out / "manifest.json"
    if not (reuse and manifest.exists()):
        cmd = [_bin("clip-export"), "--model", model, "--target", "onnx", "--target", "executorch",
               "--target", "litert", "--random-weights", "0", "--out", str(out), "--force"]
        if precision:
            cmd += ["--precision", precision]
        print(f"[export] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(manifest.read_text())


def measure(bundle: Path, threads: int, args, busy: bool) -> dict:
    with tempfile.TemporaryDirectory() as d:
        rep = Path(d) / "r.json"
        cmd = [_bin("clip-latency"), "run", str(bundle), "--threads", str(threads), "--processes",
               str(args.processes), "--max-processes", str(args.processes), "--min-seconds",
               str(args.min_seconds), "--min-blocks", str(args.min_blocks), "--json", str(rep), "--quiet",
               "--timeout", "1800"] + sum((["--runtime", r] for r in args.runtime), [])
        print(f"[latency] {bundle.name} threads {threads}{' busy core' if busy else ''}", file=sys.stderr,
              flush=True)
        sib = busy_sibling(args.busy_core) if busy else None
        try:
            if sib:
                time.sleep(1.0)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        finally:
            if sib:
                sib.kill()
                sib.wait()
        return json.loads(rep.read_text())


def _proc_values(rec):
    from clipdeploy.latency.stability import block_means
    return [block_means(w["samples_ms"], w["block_ends"]) for w in rec["steady"]["workers"]]


def main(argv=None) -> int:
    from clipdeploy.latency.stats import hierarchical_bootstrap, side_value

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--precision", choices=["int8"], help="also export and measure int8 variants")
    p.add_argument("--busy", action="store_true", help="also measure beside a process spinning on one core")
    p.add_argument("--busy-only", action="store_true", help="only the busy-core condition")
    p.add_argument("--busy-core", type=int, default=1)
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--min-blocks", type=int, default=8)
    p.add_argument("--runtime", action="append", default=[], help="only these runtimes (default all)")
    p.add_argument("--bundles", default="out/bench", help="where bundles are written / reused")
    p.add_argument("--reuse", action="store_true", help="reuse bundles already under --bundles")
    p.add_argument("--json", help="write all figures here")
    args = p.parse_args(argv)

    peaks = {t: gemm_peak(t) for t in args.threads}
    conditions = ([] if args.busy_only else [False]) + ([True] if args.busy or args.busy_only else [])
    rows, recs = [], {}
    for key in args.models:
        model = MODELS[key]
        out = Path(args.bundles) / (model + (f"_{args.precision}" if args.precision else ""))
        manifest = export(model, out, args.precision, args.reuse)
        sizes = {a["path"]: a["size_bytes"] for a in manifest["artifacts"]}
        for busy in conditions:
            cond = "busy core" if busy else "idle"
            for t in args.threads:
                rep = measure(out, t, args, busy)
                for r in rep["records"]:
                    if r["status"] != "ok":
                        continue
                    vals = _proc_values(r)
                    med = side_value(vals)
                    wmeds = [w["median_ms"] for w in r["steady"]["workers"]]
                    gf = (r.get("flops") or 0) / (med / 1e3) / 1e9 if r.get("flops") else None
                    recs[(model, r["encoder"], t, cond, r["runtime"], r["precision"])] = vals
                    rows.append({"model": model, "encoder": r["encoder"], "runtime": r["runtime"],
                                 "precision": r["precision"], "artifact": r["artifact"], "threads": t,
                                 "condition": cond, "median_ms": med, "worker_medians_ms": wmeds,
                                 "status": r["steady"]["processes"]["status"],
                                 "other_cpu": [(w["contention"] or {}).get("other_cpu") for w in r["steady"]["workers"]],
                                 "threads_used": [(w["contention"] or {}).get("threads_used")
                                                  for w in r["steady"]["workers"]],
                                 "gflop": (r.get("flops") or 0) / 1e9, "achieved_gflops": gf,
                                 "fraction_of_peak": gf / peaks[t]["peak_gflops"] if gf else None,
                                 "size_bytes": sizes.get(r["artifact"])})
    print("GEMM peak (2048^3 fp32): " + "; ".join(
        f"{t} thread(s) torch.mm {v['torch_mm_gflops']:.0f}, onnxruntime {v['onnxruntime_matmul_gflops']:.0f} "
        f"GFLOP/s" for t, v in peaks.items()))
    print()
    print("| model | encoder | condition | threads | runtime | precision | median ms | worker medians | GFLOP/s | of peak | size MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"onnxruntime": 0, "executorch": 1, "litert": 2, "torch": 3}
    for r in sorted(rows, key=lambda r: (r["model"], r["encoder"], r["condition"], r["threads"],
                                         order.get(r["runtime"], 9), r["precision"])):
        print(f"| {r['model']} | {r['encoder']} | {r['condition']} | {r['threads']} | {r['runtime']} | "
              f"{r['precision']} | {r['median_ms']:.1f} | "
              f"{'–'.join(f'{x:.1f}' for x in (min(r['worker_medians_ms']), max(r['worker_medians_ms'])))} | "
              f"{r['achieved_gflops'] or 0:.0f} | {(r['fraction_of_peak'] or 0) * 100:.0f}% | "
              f"{(r['size_bytes'] or 0) / 2 ** 20:.1f} |")
    print()
    print("| model | encoder | condition | threads | ONNX Runtime ms | XNNPACK .pte ms | LiteRT ms | "
          "XNNPACK / ORT (95% CI) | LiteRT / ORT (95% CI) | eager torch ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    keys = sorted({(m, e, t, cond) for (m, e, t, cond, rt, pr) in recs if pr == "fp32"})
    for m, e, t, cond in keys:
        ort = recs.get((m, e, t, cond, "onnxruntime", "fp32"))
        if ort is None:
            continue
        row = {"model": m, "encoder": e, "threads": t, "condition": cond, "onnxruntime_ms": side_value(ort)}
        cells = []
        for rt, key in (("executorch", "xnnpack"), ("litert", "litert")):
            vals = recs.get((m, e, t, cond, rt, "fp32"))
            if vals is None:
                row[f"{key}_ms"] = None
                cells.append(("n/a", "n/a"))
                continue
            bs = hierarchical_bootstrap(ort, vals)
            row.update({f"{key}_ms": side_value(vals), f"{key}_over_ort": bs["ratio"],
                        f"{key}_ci": [bs["ci_low"], bs["ci_high"]]})
            cells.append((f"{side_value(vals):.1f}", f"{bs['ratio']:.2f}× ({bs['ci_low']:.2f}–{bs['ci_high']:.2f})"))
        torch_v = recs.get((m, e, t, cond, "torch", "fp32"))
        row["torch_ms"] = side_value(torch_v) if torch_v else None
        ratios.append(row)
        print(f"| {m} | {e} | {cond} | {t} | {side_value(ort):.1f} | {cells[0][0]} | {cells[1][0]} | "
              f"{cells[0][1]} | {cells[1][1]} | {side_value(torch_v) if torch_v else float('nan'):.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"gemm_peak": peaks, "rows": rows, "vs_ort": ratios,
                                               "settings": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
