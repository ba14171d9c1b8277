"""The process-level regression gate on synthetic reports: the hierarchical bootstrap, insufficient
data, bimodal / outlying / contended workers, fractional work factors, merging app processes."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from clipdeploy.latency.cli import main
from clipdeploy.latency.compare import compare_reports
from clipdeploy.latency.report import dump_report, merge_process_reports, validate_report
from clipdeploy.latency.stability import (BIMODAL_GAP, assess, block_means, contention_flags, is_bimodal,
                                          record_status)
from clipdeploy.latency.stats import hierarchical_bootstrap, summarize
from clipdeploy.latency.worker import work_schedule

SAMPLE = Path(__file__).parent / "data" / "latency" / "android_report_sample.json"
IDLE = {"steal": 0.0, "other_cpu": 0.02, "psi_some": 0.01, "threads_used": 1, "parallelism": 1.0,
        "affinity": [0, 1]}


def _worker(rng, i, center, n_blocks=8, per_block=6, noise=0.02, contention=IDLE, speeds=None):
    samples, ends = [], []
    for b in range(n_blocks):
        f = speeds[b] if speeds is not None else 1.0
        samples += list(center * f * rng.normal(1, noise, per_block).clip(0.5))
        ends.append(len(samples))
    return {"index": i, "round": i, "pid": 1000 + i, "samples_ms": samples, "block_ends": ends,
            "median_ms": float(np.median(block_means(samples, ends))), "seconds": sum(samples) / 1e3,
            "cpu_s": None, "inferences": len(samples), "calibration_ms": None,
            "contention": dict(contention) if contention else None, "flags": [], "accepted": True}


def _report(centers_by_record, seed=0, wanted=3, **kw):
    """A valid clip-latency report whose records have one worker per center."""
    rng = np.random.default_rng(seed)
    base = json.loads(SAMPLE.read_text())
    template = next(r for r in base["records"] if r["status"] == "ok")
    recs = []
    for rid, centers in centers_by_record.items():
        r = json.loads(json.dumps(template))
        r["id"], r["artifact"] = f"{rid}@{r['runtime']}", rid
        ws = [_worker(rng, i, c, **kw) for i, c in enumerate(centers)]
        assess(ws)
        use = [w for w in ws if w["accepted"]] or ws
        pooled = [x for w in use for x in w["samples_ms"]]
        r["steady"].update(samples_ms=pooled, stats=summarize(pooled), workers=ws,
                           processes=record_status(ws, wanted))
        recs.append(r)
    base["records"] = recs
    return validate_report(base)


def test_hierarchical_bootstrap_carries_process_variance():
    rng = np.random.default_rng(1)
    agree = [rng.normal(10, 0.1, 8) for _ in range(3)]
    spread = [rng.normal(c, 0.1, 8) for c in (9.0, 10.0, 11.0)]     # processes 10 % apart
    same = hierarchical_bootstrap(agree, agree)
    assert same["ratio"] == 1.0 and same["ci_low"] <= 1.0 <= same["ci_high"]
    slow = hierarchical_bootstrap(agree, [v * 1.2 for v in agree])
    assert slow["ratio"] == pytest.approx(1.2) and slow["ci_low"] > 1.15          # scale-equivariant
    assert hierarchical_bootstrap(agree, [v * 1.2 for v in agree]) == slow         # seeded
    wide = hierarchical_bootstrap(agree, spread)
    # the interval spans the processes' disagreement, not the (tiny) within-process noise
    assert wide["ci_high"] - wide["ci_low"] > 0.08 and wide["ci_low"] < 1.0 < wide["ci_high"]
    pooled = hierarchical_bootstrap([np.concatenate(agree)], [np.concatenate(spread)])
    # treating the 24 blocks as independent (one process) understates it
    assert pooled["ci_high"] - pooled["ci_low"] < 0.8 * (wide["ci_high"] - wide["ci_low"])
    assert wide["processes"] == [3, 3] and wide["blocks"] == [24, 24]
    with pytest.raises(ValueError):
        hierarchical_bootstrap([], agree)


def test_one_block_per_record_is_insufficient_data(tmp_path, capsys):
    """A report whose records are one block of one process (an app's single run, or a short run)
    is never a REGRESSION: compare says insufficient data and exits 3."""
    base = json.loads(SAMPLE.read_text())
    slow = json.loads(SAMPLE.read_text())
    for r in slow["records"]:
        if r["status"] == "ok":
            r["steady"]["samples_ms"] = [x * 2 for x in r["steady"]["samples_ms"]]
            r["steady"]["stats"] = summarize(r["steady"]["samples_ms"])
    res = compare_reports(validate_report(base), validate_report(slow))
    rows = [r for r in res["rows"] if r["ratio"] is not None]
    assert rows and all(r["verdict"] == "insufficient data" for r in rows)
    assert all(r["ratio"] == pytest.approx(2.0) for r in rows)          # the figure is still shown
    assert "1 process, 1 block" in rows[0]["why"] and not res["regressions"]
    dump_report(base, tmp_path / "a.json")
    dump_report(slow, tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 3
    out = capsys.readouterr().out
    assert "insufficient data" in out and "REGRESSION" not in out
    # enough processes but one block each: still insufficient
    few = _report({"x": [10, 10, 10]}, n_blocks=1)
    many = _report({"x": [20, 20, 20]}, n_blocks=1, seed=1)
    row = compare_reports(few, many)["rows"][0]
    assert row["verdict"] == "insufficient data" and "3 processes, 1 block each" in row["why"]


def test_process_level_gate_catches_a_slowdown_and_passes_a_a():
    a = _report({"img": [10.0, 10.1, 9.9], "txt": [5.0, 5.05, 4.95]}, seed=0)
    b = _report({"img": [10.05, 9.95, 10.0], "txt": [5.0, 4.98, 5.02]}, seed=1)
    res = compare_reports(a, b)
    assert [r["verdict"] for r in res["rows"]] == ["ok", "ok"] and not res["inconclusive"]
    c = _report({"img": [12.0, 12.1, 11.9], "txt": [5.0, 4.98, 5.02]}, seed=2)      # image +20 %
    res = compare_reports(a, c)
    v = {r["artifact"]: r for r in res["rows"]}
    assert v["img"]["verdict"] == "REGRESSION" and v["img"]["ratio"] == pytest.approx(1.2, abs=0.01)
    assert v["txt"]["verdict"] == "ok"


def test_bimodal_and_outlying_workers_are_detected():
    rng = np.random.default_rng(5)
    # a worker whose blocks alternate between its two-thread and its one-thread speed
    bi = _worker(rng, 0, 17.0, speeds=[1, 1, 1.9, 1.9, 1, 1.9, 1, 1.9])
    assert is_bimodal(block_means(bi["samples_ms"], bi["block_ends"]))
    one = _worker(rng, 1, 17.0)
    assert not is_bimodal(block_means(one["samples_ms"], one["block_ends"]))
    # a single slow block is not two modes
    spike = _worker(rng, 2, 17.0, speeds=[1, 1, 1, 1, 1.9, 1, 1, 1])
    assert not is_bimodal(block_means(spike["samples_ms"], spike["block_ends"]))
    just = [1.0] * 4 + [BIMODAL_GAP * 1.01] * 4
    assert is_bimodal(just) and not is_bimodal([1.0] * 4 + [BIMODAL_GAP * 0.99] * 4)
    # a sibling at its one-thread speed: an outlier among the clean workers
    ws = [_worker(rng, i, c) for i, c in enumerate([17.0, 17.2, 32.4, 16.9])]
    acc = assess(ws)
    assert [w["index"] for w in acc] == [0, 1, 3]
    assert ws[2]["flags"] and ws[2]["flags"][0].startswith("outlier") and not ws[2]["accepted"]
    assert record_status(ws, 3)["status"] == "stable" and record_status(ws, 4)["status"] == "unstable"
    # in a report: bimodal worker flagged, the record unstable, compare inconclusive (not REGRESSION)
    rep = _report({"et": [17.0, 17.0, 17.0]}, speeds=[1, 1, 1.9, 1.9, 1, 1.9, 1, 1.9])
    rec = rep["records"][0]
    assert all("bimodal" in w["flags"] for w in rec["steady"]["workers"])
    assert rec["steady"]["processes"]["status"] == "unstable"
    row = compare_reports(_report({"et": [17.0, 17.1, 16.9]}), rep)["rows"][0]
    assert row["verdict"] == "unstable" and row["ratio"] > 1.1 and "bimodal" in row["why"]


def test_contended_workers_are_flagged_and_never_a_regression(tmp_path, capsys):
    busy = dict(IDLE, other_cpu=0.95, psi_some=0.4)
    assert contention_flags(busy) and not contention_flags(IDLE)
    assert contention_flags(dict(IDLE, steal=0.12)) == ["steal 12%"]
    a = _report({"onnx": [10.0, 10.1, 9.9]})
    b = _report({"onnx": [15.0, 15.2, 14.9]}, contention=busy, seed=3)
    rec = b["records"][0]
    assert rec["steady"]["processes"]["status"] == "contended"
    assert all(w["flags"][0].startswith("contended: other processes used 0.95 cores")
               for w in rec["steady"]["workers"])
    res = compare_reports(a, b)
    assert res["rows"][0]["verdict"] == "contended" and not res["regressions"]
    assert "0 of 3 workers accepted (3 contended)" in res["rows"][0]["why"]
    dump_report(a, tmp_path / "a.json")
    dump_report(b, tmp_path / "b.json")
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 3
    out = capsys.readouterr().out
    assert "contended" in out and "warning: the current run had contended workers" in out


@pytest.mark.parametrize("factor, n, calls", [(1, 10, 10), (1.2, 10, 12), (1.2, 7, 8), (2, 5, 10),
                                              (1.25, 8, 10), (3, 4, 12)])
def test_fractional_work_factor_schedule(factor, n, calls):
    g = work_schedule(factor)
    ks = [next(g) for _ in range(n)]
    assert sum(ks) == calls == math.floor(n * factor + 1e-9)
    assert set(ks) <= {math.floor(factor), math.floor(factor) + 1}
    if factor == 1.2:
        assert ks == [1, 1, 1, 1, 2, 1, 1, 1, 1, 2][:n]       # one extra inference every fifth sample
    with pytest.raises(ValueError):
        next(work_schedule(0.9))


def test_app_processes_merge_into_workers():
    reps = []
    for k, scale in enumerate((1.0, 1.02, 0.99)):
        r = json.loads(SAMPLE.read_text())
        for rec in r["records"]:
            if rec["status"] == "ok":
                rec["steady"]["samples_ms"] = [x * scale for x in rec["steady"]["samples_ms"]] * 4
                rec["steady"]["block_ends"] = [5, 10, 15, 20]
                rec["steady"]["stats"] = summarize(rec["steady"]["samples_ms"])
        reps.append(validate_report(r))
    m = merge_process_reports(reps)
    ok = [r for r in m["records"] if r["status"] == "ok"]
    assert ok and m["settings"]["processes"] == 3
    for r in ok:
        ws = r["steady"]["workers"]
        assert len(ws) == 3 and r["steady"]["stats"]["n"] == sum(len(w["samples_ms"]) for w in ws) == 60
        assert r["steady"]["processes"]["status"] == "stable"
    # the merged reports compare at the process level (4 blocks of 3 processes: enough data)
    row = compare_reports(m, m)["rows"]
    assert all(x["verdict"] == "ok" for x in row if x["ratio"] is not None)
    with pytest.raises(Exception, match="different models"):
        other = json.loads(json.dumps(reps[0]))
        other["bundle"]["model"] = "mobileclip_s1"
        merge_process_reports([reps[0], other])


def test_ingest_merge_cli(tmp_path, capsys):
    paths = []
    for k in range(3):
        r = json.loads(SAMPLE.read_text())
        for rec in r["records"]:
            if rec["status"] == "ok":
                rec["steady"]["samples_ms"] = rec["steady"]["samples_ms"] * 4
                rec["steady"]["block_ends"] = [5, 10, 15, 20]
                rec["steady"]["stats"] = summarize(rec["steady"]["samples_ms"])
        paths.append(tmp_path / f"launch{k}.json")
        dump_report(r, paths[-1])
    assert main(["ingest", *map(str, paths), "--merge", "--into", str(tmp_path / "store")]) == 0
    assert "merged 3 launches" in capsys.readouterr().out
    stored = list((tmp_path / "store" / "mobileclip_s0").glob("*.json"))
    assert len(stored) == 1
    rep = validate_report(json.loads(stored[0].read_text()))
    assert all(len(r["steady"]["workers"]) == 3 for r in rep["records"] if r["status"] == "ok")
    (tmp_path / "bad.json").write_text("{")
    assert main(["ingest", str(paths[0]), str(tmp_path / "bad.json"), "--merge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not JSON" in err[0]


def test_calibration_follows_a_drifting_core():
    """Processes that ran on a core 1.0-1.6x slower, their calibration slower alike: divided by it, the
    A/A comparison is ok and the outlier check does not fire; the raw figures cannot tell."""
    rng = np.random.default_rng(7)

    def rep(speeds, seed, extra=1.0):
        r = _report({"et": [17.0 * s * extra for s in speeds]}, seed=seed)
        for w, sp in zip(r["records"][0]["steady"]["workers"], speeds):
            w["calibration_ms"] = list(0.6 * sp * rng.normal(1, 0.01, 80))
        ws = r["records"][0]["steady"]["workers"]
        assess(ws)
        r["records"][0]["steady"]["processes"] = record_status(ws, 3)
        return validate_report(r)

    a, b = rep([1.0, 1.6, 1.1], 0), rep([1.5, 1.0, 1.05], 1)
    assert all(w["accepted"] for w in a["records"][0]["steady"]["workers"])      # no outlier once divided
    row = compare_reports(a, b)["rows"][0]
    assert row["normalized"] and row["verdict"] == "ok" and abs(row["ratio"] - 1) < 0.02
    raw = compare_reports(a, b, normalize=False)["rows"][0]
    assert not raw["normalized"] and raw["ci_high"] - raw["ci_low"] > 5 * (row["ci_high"] - row["ci_low"])
    slow = compare_reports(a, rep([1.5, 1.0, 1.05], 2, extra=1.2))["rows"][0]    # +20 % on top of the drift
    assert slow["verdict"] == "REGRESSION" and slow["ratio"] == pytest.approx(1.2, abs=0.02)


def test_block_means_see_a_fractional_work_factor():
    """Work factor 1.2 doubles every fifth sample: the median sample does not move, the block means
    (and so the gate's figure) are 1.2x."""
    g = work_schedule(1.2)
    calls = [next(g) for _ in range(100)]
    base = [10.0] * 100
    slow = [10.0 * k for k in calls]
    ends = list(range(10, 101, 10))
    assert np.median(slow) == np.median(base)
    assert np.median(block_means(slow, ends)) / np.median(block_means(base, ends)) == pytest.approx(1.2)
