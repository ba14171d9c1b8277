"""The short seeded fuzz run `make test` does (benchmarks/fuzz.py: atheris, coverage-guided, one
process per reader): every reader of untrusted input gets 1500 inputs, raw and structured mutations of
real seed documents; none may crash, hang (libFuzzer -timeout) or over-allocate (-rss_limit_mb), and
each must both accept and refuse some inputs (the fuzzer reached past the first check). Longer runs
with a time budget: `python benchmarks/fuzz.py --seconds 600`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_seeded_fuzz_run_finds_no_crash(tmp_path):
    out = tmp_path / "fuzz.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--runs", "1500", "--seed", "1",
                        "--json", str(out), "--artifacts", str(tmp_path / "artifacts")],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(out.read_text())["results"]
    assert [r["target"] for r in res] == ["manifest", "npy", "report", "tokenizer", "ingest"]
    for r in res:
        assert r["executions"] == 1500 and not r["crashes"] and not r["timeouts"] and not r["ooms"], r
        assert r["outcomes"]["accepted"] > 0 and r["outcomes"]["refused"] > 0, r
