"""Where the time goes: per-operator time of a bundle's XNNPACK .pte (ETDump) and ONNX (ORT profiler).

    .venv/bin/python benchmarks/profile_ops.py out/mobileclip_s0 [--encoder image] [--threads 2]
                                               [--runs 10] [--json OUT]

ExecuTorch: the program is loaded with ETDump enabled; the XNNPACK delegate records one event per
XNNPACK operator (e.g. "Convolution (NHWC, F32) IGEMM #3"), summed here by kind (the "#n" dropped).
ONNX Runtime: session profiling, kernel time per op type. Both at batch 1 after 3 warm-up runs, medians
per event over ``--runs`` runs (profiling adds overhead: compare shares, not totals, with
``clip-latency``). Each runtime is profiled in its own process so one's thread pool cannot slow the other.
"""
import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _input(bundle: Path, encoder: str) -> np.ndarray:
    """The bundle's first probe image or caption, batch 1."""
    x = np.load(bundle / "probe" / ("images.npy" if encoder == "image" else "token_ids.npy"))[:1]
    return x.astype(np.float32 if encoder == "image" else np.int32)


def profile_pte(path: str, x: np.ndarray, threads: int, runs: int) -> dict:
    import warnings

    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib
    portable_lib._unsafe_reset_threadpool(threads)
    m = portable_lib._load_for_executorch(path, enable_etdump=True)
    t = torch.from_numpy(x)
    for _ in range(3 + runs):
        m.forward([t])
    with tempfile.TemporaryDirectory() as d:
        dump = f"{d}/etdump.bin"
        m.write_etdump_result_to_file(dump)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = Inspector(etdump_path=dump).to_dataframe()
    df = df[df.event_block_name == "Execute"]
    kinds = collections.defaultdict(lambda: [0, 0.0])
    total = 0.0
    for _, r in df.iterrows():
        name = str(r["event_name"])
        if name in ("Method::execute", "DELEGATE_CALL", "OPERATOR_CALL"):
            if name == "Method::execute":
                total = float(r["p50 (ms)"])
            continue
        k = re.sub(r"\s*#\d+$", "", name)
        kinds[k][0] += 1
        kinds[k][1] += float(r["p50 (ms)"])
    return {"total_ms": total, "ops": {k: {"count": c, "ms": ms} for k, (c, ms) in kinds.items()}}


def profile_onnx(path: str, x: np.ndarray, threads: int, runs: int) -> dict:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as d:
        so.profile_file_prefix = f"{d}/ort"
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        for _ in range(3):
            s.run(None, {name: x})
        for _ in range(runs):
            s.run(None, {name: x})
        events = json.loads(Path(s.end_profiling()).read_text())
    kinds = collections.defaultdict(lambda: [0, 0.0])
    runs_seen = 3 + runs
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            k = e["args"]["op_name"]
            kinds[k][0] += 1
            kinds[k][1] += e["dur"] / 1000.0
    ops = {k: {"count": c // runs_seen, "ms": ms / runs_seen} for k, (c, ms) in kinds.items()}
    return {"total_ms": sum(v["ms"] for v in ops.values()), "ops": ops}


def _child(argv) -> int:
    kind, path, xfile, threads, runs = argv
    x = np.load(xfile)
    fn = profile_pte if kind == "pte" else profile_onnx
    print(json.dumps(fn(path, x, int(threads), int(runs))))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--encoder", default="image", choices=["image", "text"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--json")
    args = p.parse_args(argv)
    bundle = Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    x = _input(bundle, args.encoder)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/x.npy", x)
        for a in manifest["artifacts"]:
            if a["encoder"] != args.encoder or a["precision"] != args.precision or \
                    a["target"] not in ("onnx", "executorch"):
                continue
            kind = "pte" if a["target"] == "executorch" else "onnx"
            res = subprocess.run([sys.executable, __file__, "--child", kind, str(bundle / a["path"]),
                                  f"{d}/x.npy", str(args.threads), str(args.runs)],
                                 capture_output=True, text=True, check=True)
            out[a["path"]] = json.loads(res.stdout.strip().splitlines()[-1])
    for path, prof in out.items():
        tot = sum(v["ms"] for v in prof["ops"].values()) or 1.0
        print(f"\n{path} ({args.threads} threads; per-op sum {tot:.2f} ms)")
        print("| op | count | ms | share |\n|---|---|---|---|")
        for k, v in sorted(prof["ops"].items(), key=lambda kv: -kv[1]["ms"])[:15]:
            print(f"| {k} | {v['count']} | {v['ms']:.2f} | {v['ms'] / tot:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
