"""Every runtime and precision of MobileCLIP S0/S1/S2/B, image and text, at 1 and 2 threads.

    .venv/bin/python benchmarks/runtimes.py [--models s0 s1 s2 b] [--threads 1 2] [--precision int8]
                                            [--runs 20] [--bundles out/bench] [--reuse] [--json OUT]

For each model a bundle (ONNX + ExecuTorch XNNPACK, seeded weights; with ``--precision int8`` the int8
variants next to fp32) is exported with ``clip-export`` unless ``--reuse`` finds it, then measured
with ``clip-latency run`` (each artifact in its own worker process; the PyTorch eager reference too)
at each thread count. Columns: median ms, achieved GFLOP/s (FLOPs of one inference from
``torch.utils.flop_counter`` on the reparameterized module / median), its fraction of this machine's
fp32 GEMM peak at that thread count (best of torch.mm and ONNX Runtime MatMul on 2048x2048, measured
in the same run), artifact size. Markdown to stdout, everything as JSON with ``--json``.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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
               "--random-weights", "0", "--out", str(out), "--force"]
        if precision:
            cmd += ["--precision", precision]
        print(f"[export] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(manifest.read_text())


def measure(bundle: Path, threads: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        rep = Path(d) / "r.json"
        cmd = [_bin("clip-latency"), "run", str(bundle), "--threads", str(threads), "--runs", str(runs),
               "--warmup", "5", "--json", str(rep), "--quiet", "--timeout", "1800"]
        print(f"[latency] {bundle.name} threads {threads}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(rep.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--precision", choices=["int8"], help="also export and measure int8 variants")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--bundles", default="out/bench", help="where bundles are written / reused")
    p.add_argument("--reuse", action="store_true", help="reuse bundles already under --bundles")
    p.add_argument("--json", help="write all figures here")
    args = p.parse_args(argv)

    peaks = {t: gemm_peak(t) for t in args.threads}
    rows = []
    for key in args.models:
        model = MODELS[key]
        out = Path(args.bundles) / (model + (f"_{args.precision}" if args.precision else ""))
        manifest = export(model, out, args.precision, args.reuse)
        sizes = {a["path"]: a["size_bytes"] for a in manifest["artifacts"]}
        for t in args.threads:
            rep = measure(out, t, args.runs)
            for r in rep["records"]:
                if r["status"] != "ok":
                    continue
                med = r["steady"]["stats"]["median"]
                gf = r.get("achieved_gflops")
                rows.append({"model": model, "encoder": r["encoder"], "runtime": r["runtime"],
                             "precision": r["precision"], "artifact": r["artifact"], "threads": t,
                             "median_ms": med, "p90_ms": r["steady"]["stats"]["p90"],
                             "gflop": (r.get("flops") or 0) / 1e9, "achieved_gflops": gf,
                             "fraction_of_peak": gf / peaks[t]["peak_gflops"] if gf else None,
                             "size_bytes": sizes.get(r["artifact"]),
                             "calibration_ms": (rep.get("calibration") or {}).get("median_ms")})
    print("GEMM peak (2048^3 fp32): " + "; ".join(
        f"{t} thread(s) torch.mm {v['torch_mm_gflops']:.0f}, onnxruntime {v['onnxruntime_matmul_gflops']:.0f} "
        f"GFLOP/s" for t, v in peaks.items()))
    print()
    print("| model | encoder | runtime | precision | threads | median ms | GFLOP/s | of peak | size MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    order = {"onnxruntime": 0, "executorch": 1, "torch": 2}
    for r in sorted(rows, key=lambda r: (r["model"], r["encoder"], r["threads"], order.get(r["runtime"], 9),
                                         r["precision"])):
        print(f"| {r['model']} | {r['encoder']} | {r['runtime']} | {r['precision']} | {r['threads']} | "
              f"{r['median_ms']:.1f} | {r['achieved_gflops'] or 0:.0f} | "
              f"{(r['fraction_of_peak'] or 0) * 100:.0f}% | "
              f"{(r['size_bytes'] or 0) / 2 ** 20:.1f} |")
    # XNNPACK vs ONNX Runtime, fp32, per model/encoder/threads
    print()
    print("| model | encoder | threads | ExecuTorch XNNPACK / ONNX Runtime (fp32 medians) |")
    print("|---|---|---|---|")
    idx = {(r["model"], r["encoder"], r["threads"], r["runtime"], r["precision"]): r for r in rows}
    ratios = []
    for (m, e, t, rt, pr), r in sorted(idx.items()):
        if rt == "executorch" and pr == "fp32" and (m, e, t, "onnxruntime", "fp32") in idx:
            ratio = r["median_ms"] / idx[(m, e, t, "onnxruntime", "fp32")]["median_ms"]
            ratios.append({"model": m, "encoder": e, "threads": t, "xnnpack_over_ort": ratio})
            print(f"| {m} | {e} | {t} | {ratio:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"gemm_peak": peaks, "rows": rows, "xnnpack_vs_ort": ratios},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
