"""What the bundle integrity check costs (issue 22): open (schema, path rule, one stat per listed file)
and verify_all (sha256 of every file), first without the digest cache, then answered by it.

Each measurement runs in its own process (a fresh interpreter, so the in-process memo is empty and the
on-disk cache is what answers), with its own $CLIPDEPLOY_CACHE. Run it with the machine otherwise idle:

    python benchmarks/integrity_cost.py out/mobileclip_s0 --reps 3 [--json cost.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
from clipdeploy.latency.bundle import Bundle
t = time.perf_counter(); b = Bundle(sys.argv[1]); t_open = time.perf_counter() - t
t = time.perf_counter(); figs = b.verify_all(); t_verify = time.perf_counter() - t
print(json.dumps({"open_s": t_open, "verify_all_s": t_verify, "files": figs["files"], "bytes": figs["bytes"],
                  "hashed_bytes": figs["hashed_bytes"], "cached_files": figs["cached_files"]}))
"""


def _one(bundle: Path, cache: str) -> dict:
    env = dict(os.environ, CLIPDEPLOY_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if not (a.bundle / "manifest.json").is_file():
        print(f"error: {a.bundle} has no manifest.json: pass a bundle written by clip-export", file=sys.stderr)
        return 2
    rows = {"uncached": [], "cached": []}
    for _ in range(a.reps):
        with tempfile.TemporaryDirectory() as cache:
            rows["uncached"].append(_one(a.bundle, cache))       # hashes every file (page cache warm after rep 1)
            rows["cached"].append(_one(a.bundle, cache))         # a second process: the digest cache answers
    first = rows["uncached"][0]
    print(f"{a.bundle}: {first['files']} files, {first['bytes'] / 1e6:.0f} MB, {a.reps} reps, a process each")
    for k, rs in rows.items():
        print(f"  {k:9s} open {statistics.median(r['open_s'] for r in rs) * 1e3:7.1f} ms   verify_all "
              f"{statistics.median(r['verify_all_s'] for r in rs) * 1e3:8.1f} ms (median; all: "
              + ", ".join(f"{r['verify_all_s'] * 1e3:.1f}" for r in rs) + f")   hashed "
              f"{rs[0]['hashed_bytes'] / 1e6:.0f} MB")
    if a.json:
        a.json.write_text(json.dumps({"bundle": str(a.bundle), "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
