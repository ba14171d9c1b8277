"""Fuzz the readers of untrusted input with atheris (libFuzzer for Python, coverage-guided).

    python benchmarks/fuzz.py                         # every reader, 60 s each, seed 1
    python benchmarks/fuzz.py --target npy --seconds 600
    python benchmarks/fuzz.py --runs 1500 --json out.json   # the short seeded run `make test` does

Readers (``--target``):
  manifest   a bundle's manifest.json: strict JSON, the schema, path safety, the stat pass over a real
             bundle (a copy of goldens/bundle), then the probe set through its digests
  npy        the .npy reader (header against file size; nothing allocated on the header's word)
  report     device reports: strict JSON, schema, ranges, normalization
  tokenizer  vocab.json + merges.txt (input split at the first NUL byte)
  ingest     `clip-latency ingest` of a report file into a store, twice (stored once)

Each reader runs in its own process (atheris' Fuzz() exits when done). Half the inputs are raw
libFuzzer byte mutations, half structured: a valid seed document parsed and one value (picked by the
fuzzer's bytes) replaced by another type, a huge number, a deep nesting, a long string or removed. A
reader may only return or raise its own one-line error type; anything else is a crash. libFuzzer's
-timeout (per input) and -rss_limit_mb catch hangs and over-allocation. Figures: executions, crashes
(with the reproducer libFuzzer writes under --artifacts), seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDENS = ROOT / "goldens"
TARGETS = ("manifest", "npy", "report", "tokenizer", "ingest")


# ---------------------------------------------------------------------------------------------------
# structured mutation

def _paths(obj, prefix=()):
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            out += _paths(v, prefix + (i,))
    return out


REPLACEMENTS = (None, True, 0, -1, -1e300, 2 ** 63, 1e308, 0.5, "", "../../etc/passwd", "/etc/passwd",
                "a" * 5000, [], {}, [[[[[]]]]], "probe/images.npy", "probe/link.npy", "x\\y", "C:/x", "a//b", "./a")


def mutate_structured(seed_obj, data: bytes):
    """A copy of ``seed_obj`` with one value changed as ``data`` says; returns JSON bytes."""
    import atheris
    fdp = atheris.FuzzedDataProvider(data)
    obj = json.loads(json.dumps(seed_obj))
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        paths = _paths(obj)
        path = paths[fdp.ConsumeIntInRange(0, len(paths) - 1)]
        choice = fdp.ConsumeIntInRange(0, len(REPLACEMENTS) + 3)
        if choice < len(REPLACEMENTS):
            new = json.loads(json.dumps(REPLACEMENTS[choice]))
        elif choice == len(REPLACEMENTS):
            new = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64))
        elif choice == len(REPLACEMENTS) + 1:
            new = fdp.ConsumeInt(8)
        elif choice == len(REPLACEMENTS) + 2:
            new = fdp.ConsumeRegularFloat()
        else:
            new = "__delete__"
        if not path:
            obj = new if new != "__delete__" else {}
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if new == "__delete__":
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    text = json.dumps(obj)
    if fdp.ConsumeBool() and text:                       # sometimes cut short (a copy made mid-write)
        text = text[: fdp.ConsumeIntInRange(0, len(text))]
    return text.encode()


def _either(seed_obj, data: bytes) -> bytes:
    """Half raw bytes, half a structured mutation of the seed document."""
    if not data or data[0] % 2 == 0:
        return data[1:]
    return mutate_structured(seed_obj, data[1:])


# ---------------------------------------------------------------------------------------------------
# the readers

class Refused(Exception):
    """The reader refused the input with its own one-line error (counted, not a crash)."""


def make_target(name: str, work: Path):
    """``(test_one_input(bytes), seed inputs)`` for reader ``name``; ``work`` is scratch space."""
    if name == "npy":
        from clipdeploy.latency.npyfile import NpyError, loads_npy

        def one(data: bytes):
            try:
                loads_npy(data)
            except NpyError as e:
                raise Refused(e) from None
        seeds = [p.read_bytes()[:4096] for p in sorted((GOLDENS / "bundle" / "probe").glob("*.npy"))]
        seeds += [b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, "
                  b"2147483647), }" + b" " * 60 + b"\n"]
        return one, seeds

    if name == "report":
        from clipdeploy.latency import safejson
        from clipdeploy.latency.report import ReportError, normalize_report, validate_report
        seed_obj = json.loads((GOLDENS / "report_sample.json").read_text())

        def one(data: bytes):
            text = _either(seed_obj, data)
            try:
                out = normalize_report(validate_report(safejson.loads(text)))
                json.dumps(out, allow_nan=False)      # what compare / report / ingest write next
            except (ValueError, ReportError) as e:
                raise Refused(e) from None
        return one, [b"\x01" * 8, json.dumps(seed_obj).encode()]

    if name == "tokenizer":
        from clipdeploy.latency.bundle import parse_tokenizer_files
        vocab = json.loads((GOLDENS / "bundle" / "tokenizer" / "vocab.json").read_text())
        small = dict(list(vocab.items())[:300])
        merges = (GOLDENS / "bundle" / "tokenizer" / "merges.txt").read_text().splitlines()[:200]

        def one(data: bytes):
            v, _, m = data.partition(b"\x00")
            try:
                parse_tokenizer_files(v, m)
            except ValueError as e:
                raise Refused(e) from None
        return one, [json.dumps(small).encode() + b"\x00" + ("\n".join(merges) + "\n").encode()]

    if name == "manifest":
        from clipdeploy.latency.bundle import Bundle, BundleError
        bdir = work / "bundle"
        if not bdir.exists():
            shutil.copytree(GOLDENS / "bundle", bdir)
        seed_obj = json.loads((bdir / "manifest.json").read_text())
        (work / "outside.npy").write_bytes((bdir / "probe" / "images.npy").read_bytes())
        os.symlink(work / "outside.npy", bdir / "probe" / "link.npy") if not (bdir / "probe" / "link.npy").is_symlink() else None
        mpath = bdir / "manifest.json"

        def one(data: bytes):
            mpath.write_bytes(_either(seed_obj, data))
            try:
                b = Bundle(bdir)
                b.probe()
                for a in b.artifacts():
                    b.verify_artifact(a)
            except BundleError as e:
                raise Refused(e) from None
        return one, [b"\x01" * 16, b"\x00" + json.dumps(seed_obj).encode()]

    if name == "ingest":
        from clipdeploy.latency.ingest import ingest_one
        from clipdeploy.latency.report import ReportError
        seed_obj = json.loads((GOLDENS / "report_sample.json").read_text())
        rpath, store = work / "report.json", work / "store"

        def one(data: bytes):
            rpath.write_bytes(_either(seed_obj, data))
            try:
                _, d1 = ingest_one(rpath, str(store))
                _, d2 = ingest_one(rpath, str(store))
            except ReportError as e:
                raise Refused(e) from None
            assert d1 == d2, (d1, d2)
            stored = [p for p in d1.parent.iterdir() if not p.name.startswith(".")]
            leftovers = [p for p in d1.parent.iterdir() if p.name.endswith(".partial")]
            assert not leftovers, leftovers
            for p in stored:
                p.unlink()
        return one, [b"\x01" * 8, b"\x00" + json.dumps(seed_obj).encode()]

    raise SystemExit(f"error: unknown --target {name!r} ({', '.join(TARGETS)})")


class Outcomes:
    """Accepted / refused inputs of a reader, written to ``path`` every 50 inputs (libFuzzer ends the
    process from C, so nothing runs at exit)."""

    def __init__(self, one, path: Path, refused_types):
        self.one, self.path, self.refused_types = one, path, refused_types
        self.counts = {"accepted": 0, "refused": 0}

    def __call__(self, data: bytes):
        try:
            self.one(data)
            self.counts["accepted"] += 1
        except self.refused_types:
            self.counts["refused"] += 1
        n = self.counts["accepted"] + self.counts["refused"]
        if n % 50 == 1 or n < 50:
            self.path.write_text(json.dumps(self.counts))


def fuzz_one(name: str, seconds: float, runs: int, seed: int, artifacts: Path) -> None:
    """Run in this process (exits when done)."""
    import atheris

    work = Path(tempfile.mkdtemp(prefix=f"clip-fuzz-{name}-"))
    with atheris.instrument_imports(include=["clipdeploy"]):
        one, seeds = make_target(name, work)
    one = Outcomes(one, artifacts / f".outcomes-{name}.json", Refused)
    corpus = work / "corpus"
    corpus.mkdir()
    for i, s in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(s)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], f"-seed={seed}", "-timeout=10", "-rss_limit_mb=3072", "-max_len=65536",
            f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1", str(corpus)]
    argv.append(f"-runs={runs}" if runs else f"-max_total_time={int(max(1, seconds))}")
    atheris.Setup(argv, one)
    atheris.Fuzz()


def run_all(targets, seconds, runs, seed, artifacts: Path) -> list:
    results = []
    for name in targets:
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--_child", name, "--seconds", str(seconds), "--runs", str(runs),
               "--seed", str(seed), "--artifacts", str(artifacts)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(120, 3 * seconds + 120))
        log = p.stderr
        execs = [int(m) for m in re.findall(r"stat::number_of_executed_units:\s+(\d+)", log)]
        crashes = sorted(str(x) for x in artifacts.glob(f"{name}-*"))
        try:
            outcomes = json.loads((artifacts / f".outcomes-{name}.json").read_text())
        except (OSError, ValueError):
            outcomes = None
        hang = "ERROR: libFuzzer: timeout" in log
        oom = "ERROR: libFuzzer: out-of-memory" in log
        results.append({"target": name, "executions": execs[-1] if execs else None,
                        "exit_code": p.returncode, "outcomes": outcomes, "crashes": crashes, "timeouts": int(hang), "ooms": int(oom),
                        "seconds": round(time.perf_counter() - t, 1),
                        "tail": "" if p.returncode == 0 else "\n".join(log.splitlines()[-25:])})
        r = results[-1]
        print(f"fuzz {name}: {r['executions']} executions in {r['seconds']} s ({outcomes}), exit {p.returncode}, "
              f"{len(crashes)} crash file(s), {r['timeouts']} timeout(s), {r['ooms']} out-of-memory",
              file=sys.stderr)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", choices=TARGETS, help="reader(s) to fuzz (default: all)")
    ap.add_argument("--seconds", type=float, default=60, help="time budget per reader")
    ap.add_argument("--runs", type=int, default=0, help="a fixed number of inputs per reader instead")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--artifacts", default=None, help="where libFuzzer writes crash reproducers")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    artifacts = Path(args.artifacts or tempfile.mkdtemp(prefix="clip-fuzz-artifacts-"))
    if args._child:
        fuzz_one(args._child, args.seconds, args.runs, args.seed, artifacts)
        return 0
    results = run_all(args.target or TARGETS, args.seconds, args.runs, args.seed, artifacts)
    out = {"seed": args.seed, "seconds_per_target": None if args.runs else args.seconds,
           "runs_per_target": args.runs or None, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    bad = [r for r in results if r["exit_code"] != 0 or r["crashes"]]
    for r in bad:
        print(f"--- {r['target']} failed:\n{r['tail']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
