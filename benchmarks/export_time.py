"""Export wall time and peak memory per target for MobileCLIP-S0 (seeded weights).

    .venv/bin/python benchmarks/export_time.py [--model mobileclip_s0] [--targets coreml onnx executorch all]
                                               [--json OUT]

Each export runs as its own `clip-export` process (so peak RSS is that export's alone), measured with
os.wait4. The goal for `--target all` on S0 is under 60 s on the 2-core reference machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(model, target, out):
    exe = Path(sys.executable).with_name("clip-export")
    cmd = [str(exe), "--model", model, "--target", target, "--random-weights", "0", "--out", str(out),
           "--force"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"clip-export --target {target} failed ({rc}):\n{err[-2000:]}")
    return {"target": target, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobileclip_s0")
    p.add_argument("--targets", nargs="+", default=["onnx", "executorch", "coreml", "all"])
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for t in args.targets:
            rows.append(run(args.model, t, Path(d) / t))
            print(f"{args.model:<16} --target {t:<18} {rows[-1]['wall_s']:>7.1f} s  "
                  f"peak RSS {rows[-1]['peak_rss_mb']:>8.1f} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
