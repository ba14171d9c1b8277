"""clip-latency end to end on a real seeded MobileCLIP-S0 bundle (ONNX + ExecuTorch): run, report
schema, parity vs the export gate, the regression gate (A/A, a genuinely slower run, scaled samples),
bad input, HTML/markdown, ingest, v3 records. One bundle and two runs per module.

Marked ``alone``: `make test` runs these after the parallel suite, on an otherwise idle machine, because
the harness measures contention and (rightly) calls a run beside another pytest worker contended."""
import json
import math
import struct

import numpy as np
import pytest

from clipdeploy.latency.cli import main
from clipdeploy.latency.report import dump_report, load_report, normalize_report, validate_report
from clipdeploy.latency.stats import STAT_KEYS

RUNTIMES = ("onnxruntime", "executorch", "torch")
pytestmark = pytest.mark.alone


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from clipdeploy.export.pipeline import export_bundle
    out = tmp_path_factory.mktemp("latency") / "mobileclip_s0"
    export_bundle("mobileclip_s0", ["onnx", "executorch"], random_weights=0, out=out, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def run_a(bundle, tmp_path_factory):
    """Every artifact on every runtime of this host (small settings)."""
    d = tmp_path_factory.mktemp("run_a")
    rc = main(["run", str(bundle), "--threads", "1", "--runs", "10", "--warmup", "1", "--min-seconds", "0.5",
               "--min-blocks", "4", "--processes", "3", "--max-processes", "5",
               "--timeout", "1800", "--json", str(d / "a.json"), "--v3", str(d / "a_v3.json"), "--quiet"])
    return rc, d / "a.json", d / "a_v3.json"


@pytest.fixture(scope="module")
def run_slow(bundle, tmp_path_factory):
    """The ONNX image encoder measured with 3x the work per sample: a genuinely slower run."""
    d = tmp_path_factory.mktemp("run_slow")
    rc = main(["run", str(bundle), "--runtime", "onnxruntime", "--encoder", "image", "--threads", "1",
               "--runs", "10", "--warmup", "1", "--work-factor", "3", "--no-flops", "--quiet",
               "--min-seconds", "0.5", "--min-blocks", "4", "--processes", "3", "--max-processes", "5",
               "--timeout", "1800", "--json", str(d / "slow.json")])
    return rc, d / "slow.json"


def _ok(rep):
    return {(r["artifact"], r["runtime"]): r for r in rep["records"] if r["status"] == "ok"}


def test_run_writes_a_complete_valid_report(run_a, capsys):
    rc, path, _ = run_a
    assert rc == 0
    rep = load_report(path)                      # validates against the schema
    ok = _ok(rep)
    for runtime in RUNTIMES:
        for enc in ("image", "text"):
            recs = [r for (a, rt), r in ok.items() if rt == runtime and r["encoder"] == enc]
            assert len(recs) == 1, (runtime, enc, [r["id"] for r in rep["records"]])
            r = recs[0]
            st = r["steady"]["stats"]
            assert set(STAT_KEYS) <= set(st)
            assert all(isinstance(st[k], (int, float)) and math.isfinite(st[k]) for k in STAT_KEYS)
            assert st["n"] == len(r["steady"]["samples_ms"]) >= 10
            assert st["min"] <= st["median"] <= st["p90"] <= st["p95"] <= st["p99"] <= st["max"]
            assert r["load"]["cold_s"] > 0 and r["load"]["warm_s"] > 0 and r["first_inference_ms"] > 0
            assert r["memory"]["peak_rss_mb"] > 50
            p = r["parity"]
            assert p["finite"] and p["n"] >= 6 and p["zero_shot_agreement"] == 1.0
            assert p["max_abs"] < 1e-5 and p["cosine_min"] > 0.99999 and p["cosine_mean"] >= p["cosine_min"]
            assert r["flops"] > 1e8 and r["achieved_gflops"] > 0
            assert r["runtime_options"]["threads"] == 1
            # process level: >= 3 workers, each with its own blocks, contention probe and calibration
            ws = r["steady"]["workers"]
            proc = r["steady"]["processes"]
            assert 3 <= len(ws) <= 5 and proc["processes"] == len(ws) and proc["wanted"] == 3
            assert proc["accepted"] == sum(w["accepted"] for w in ws)
            assert (proc["status"] == "stable") == (proc["accepted"] >= 3)
            use = [w for w in ws if w["accepted"]] or ws
            assert st["n"] == sum(len(w["samples_ms"]) for w in use)
            assert len({w["pid"] for w in ws}) == len(ws)                    # fresh processes
            for w in ws:
                ends = w["block_ends"]
                assert len(ends) >= 4 and ends[-1] == len(w["samples_ms"]) >= 10
                assert sum(w["samples_ms"]) / 1e3 >= 0.5 and w["inferences"] == len(w["samples_ms"])
                for a, b in zip([0] + ends[:-2], ends[:-1]):                  # every closed block
                    assert b - a >= 3 and sum(w["samples_ms"][a:b]) >= 250
                c = w["contention"]
                assert c["affinity"] and 0 <= c["steal"] <= 1 and c["other_cpu"] >= 0
                assert c["threads_used"] >= 1 and c["parallelism"] > 0.3
                last = w["samples_ms"][([0] + ends)[-2]:]
                closed = len(ends) - (0 if sum(last) >= 250 and len(last) >= 3 else 1)   # the last may be partial
                assert len(w["calibration_ms"]) == 15 + 8 * closed + 15      # before, after each block, after
                assert w["accepted"] == (not w["flags"])
            assert len(r["calibration"]["samples_ms"]) == sum(len(w["calibration_ms"]) for w in use)
            assert r["calibration"]["median_ms"] > 0
    # Core ML predict is macOS only: skipped with a reason elsewhere (no Core ML artifact in this bundle)
    # (litert is planned too: it has no artifact in this bundle, so it has no record)
    assert rep["settings"]["threads"] == 1 and rep["settings"]["runtimes"][:4] == ["onnxruntime", "executorch",
                                                                                  "litert", "torch"]
    assert rep["settings"]["processes"] == 3 and rep["settings"]["ort_spinning"] is True
    onnx = next(r for r in rep["records"] if r["runtime"] == "onnxruntime" and r["status"] == "ok")
    assert onnx["runtime_options"]["session.intra_op.allow_spinning"] == "1"
    cal = rep["calibration"]
    assert cal["median_ms"] > 0 and cal["stats"]["n"] == len(cal["samples_ms"])
    h = rep["host"]
    assert h["cpu_count_logical"] >= 1 and h["libraries"]["onnxruntime"] and h["os"]


def test_run_parity_matches_the_export_gate(run_a, bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    rep = load_report(run_a[1])
    ok = _ok(rep)
    checked = 0
    for a in manifest["artifacts"]:
        for runtime in ("onnxruntime", "executorch"):
            r = ok.get((a["path"], runtime))
            if r is None:
                continue
            exp, got = a["parity"], r["parity"]
            assert got["max_abs"] == pytest.approx(exp["max_abs"], abs=1e-6)
            assert got["cosine_min"] == pytest.approx(exp["cosine_min"], abs=1e-6)
            assert got["cosine_mean"] == pytest.approx(exp["cosine_mean"], abs=1e-6)
            assert got["zero_shot_agreement"] == exp["zero_shot_agreement"]
            assert r["export_parity"]["max_abs"] == exp["max_abs"]
            checked += 1
    assert checked == 4
    # the torch reference is the function the reference embeddings were computed with
    for enc in ("image", "text"):
        assert ok[(f"pytorch-fp32/{enc}_encoder", "torch")]["parity"]["max_abs"] < 1e-6


def test_v3_records(run_a):
    recs = json.loads(run_a[2].read_text())
    assert isinstance(recs, list) and recs
    for r in recs:
        assert r["benchmark"]["name"] and r["benchmark"]["mode"] == "inference" and r["benchmark"]["dtype"]
        assert r["model"]["name"].startswith("mobileclip_s0_") and r["model"]["backend"]
        assert r["model"]["origins"] == ["clipdeploy"]
        assert r["metric"]["name"] and isinstance(r["metric"]["benchmark_values"], list)
        assert r["runners"][0]["name"] and r["runners"][0]["cpu_count"] >= 1
    names = {r["metric"]["name"] for r in recs}
    assert {"median_inference_latency(ms)", "model_load_time(ms)", "peak_inference_mem_usage(mb)",
            "parity_max_abs"} <= names


def _stable(rep):
    return {r["id"] for r in rep["records"] if r["status"] == "ok"
            and r["steady"]["processes"]["status"] == "stable"}


def _only(rep, ids):
    out = json.loads(json.dumps(rep))
    out["records"] = [r for r in out["records"] if r["id"] in ids]
    return out


def _scaled(rec, f):
    """The record with every worker's samples times f (statistics recomputed by normalize_report)."""
    for w in rec["steady"]["workers"]:
        w["samples_ms"] = [x * f for x in w["samples_ms"]]
    rec["steady"]["samples_ms"] = [x * f for x in rec["steady"]["samples_ms"]]


def test_compare_a_a_passes(run_a, tmp_path, capsys):
    rep = load_report(run_a[1])
    stable = _stable(rep)
    assert stable, "no record of the idle-machine run was stable"
    path = str(run_a[1])
    rc = main(["compare", path, path, "--json", str(tmp_path / "aa.json")])
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "aa.json").read_text())["rows"]
    assert "REGRESSION" not in out
    for r in rows:
        rid = f"{r['artifact']}@{r['runtime']}"
        if rid in stable:
            assert r["verdict"] == "ok" and r["ratio"] == 1.0 and r["ci_low"] <= 1.0 <= r["ci_high"]
        else:                                  # the run itself flagged it: inconclusive, never a regression
            assert r["verdict"] in ("contended", "unstable"), r
    assert rc == (0 if all(f"{r['artifact']}@{r['runtime']}" in stable for r in rows) else 3)


def test_compare_catches_a_genuinely_slower_run(run_a, run_slow, capsys):
    rc, slow = run_slow
    assert rc == 0
    a, b = load_report(run_a[1]), load_report(slow)
    rec = next(r for r in b["records"] if r["artifact"] == "onnx-fp32/image_encoder.onnx")
    assert all(w["inferences"] == 3 * len(w["samples_ms"]) for w in rec["steady"]["workers"])
    clean = {f"{x}" for x in _stable(a) & _stable(b)}
    rc = main(["compare", str(run_a[1]), str(slow)])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("onnx-fp32/image_encoder.onnx"))
    if "onnx-fp32/image_encoder.onnx@onnxruntime" in clean:
        assert "REGRESSION" in line and rc == 1
        assert "1 regression(s):" in out and "onnx-fp32/image_encoder.onnx @ onnxruntime: REGRESSION" in out
    else:                                       # a side the harness flagged is inconclusive, not a regression
        assert ("contended" in line or "unstable" in line) and rc == 3
    assert "only in baseline (not compared)" in out          # the other artifacts were not measured


def test_fractional_work_factor_does_the_work_it_claims(bundle):
    """--work-factor 1.2 in a real worker: one extra inference every fifth sample, floor(1.2 n) in all."""
    from clipdeploy.latency.harness import run_worker
    from clipdeploy.latency.bundle import Bundle
    art = next(a for a in Bundle(bundle).artifacts() if a.target == "onnx" and a.encoder == "image")
    job = {"kind": "artifact", "bundle": str(bundle), "artifact": art.to_dict(), "runtime": "onnxruntime",
           "threads": 1, "warmup": 3, "runs": 40, "min_seconds": 0.5, "min_blocks": 2, "work_factor": 1.2,
           "options": {}, "calibration": False}
    res, info = run_worker(job, 600, threads=1)
    assert res and res["ok"], info["tail"]
    x = np.array(res["samples_ms"])
    # the count is exact; what it costs in time is measured where timing belongs, in
    # benchmarks/harness_noise.py (--work-factor 1.2 against unchanged runs)
    assert res["inferences"] == math.floor(1.2 * len(x) + 1e-9) and len(x) >= 40
    assert res["steady_seconds"] == pytest.approx(x.sum() / 1e3)


def _most_stable(rep):
    """The stable ok record whose A/A comparison has the narrowest bootstrap CI (highest ``ci_low``),
    and a slow-down factor the gate must catch on it: at least 1.3, more on a noisy machine. The
    bootstrap is scale-equivariant (same seed, same resamples), so samples scaled by ``f`` give the A/A
    interval times ``f`` exactly: ``f * ci_low >= 1.15`` puts the scaled CI above 1.1."""
    from clipdeploy.latency.compare import compare_reports
    rows = [r for r in compare_reports(rep, rep)["rows"] if r["verdict"] == "ok"]
    best = max(rows, key=lambda r: r["ci_low"])
    target = next(r for r in rep["records"] if (r["artifact"], r["runtime"]) == (best["artifact"], best["runtime"]))
    return target, max(1.3, 1.15 / best["ci_low"])


def test_compare_catches_scaled_samples_and_lost_parity(run_a, tmp_path, capsys):
    rep = load_report(run_a[1])
    target, factor = _most_stable(rep)
    rep = _only(rep, {target["id"]})
    dump_report(rep, tmp_path / "base.json")
    base = str(tmp_path / "base.json")
    slower = json.loads(json.dumps(rep))
    _scaled(slower["records"][0], factor)
    slower = normalize_report(slower)                # statistics recomputed from the scaled samples
    p = tmp_path / "slower.json"
    dump_report(slower, p)
    assert main(["compare", base, str(p), "--json", str(tmp_path / "cmp.json")]) == 1
    out = capsys.readouterr().out
    bad = json.loads((tmp_path / "cmp.json").read_text())["regressions"]
    assert [(r["artifact"], r["runtime"], r["verdict"]) for r in bad] == \
        [(target["artifact"], target["runtime"], "REGRESSION")]
    assert bad[0]["ratio"] == pytest.approx(factor) and bad[0]["ci_low"] > 1.1
    assert f"{target['artifact']} @ {target['runtime']}: REGRESSION" in out
    # a machine uniformly slower by >= 1.3 (its calibration too): not a regression (each process is
    # divided by its own calibration), but one with --no-normalize (raw figures)
    # (a factor the raw A/A interval can resolve: raw process figures spread more than calibrated ones)
    from clipdeploy.latency.compare import compare_reports
    raw_low = compare_reports(rep, rep, normalize=False)["rows"][0]["ci_low"]
    f = max(1.3, 1.15 / raw_low)
    uniform = json.loads(json.dumps(rep))
    _scaled(uniform["records"][0], f)
    for w in uniform["records"][0]["steady"]["workers"]:
        w["calibration_ms"] = [x * f for x in w["calibration_ms"]]
    dump_report(normalize_report(uniform), tmp_path / "uniform.json")
    assert main(["compare", base, str(tmp_path / "uniform.json")]) == 0
    assert "normalized by each process's calibration" in capsys.readouterr().out
    assert main(["compare", base, str(tmp_path / "uniform.json"), "--no-normalize"]) == 1
    capsys.readouterr()
    # lost parity: cosine below --min-cosine and a zero-shot drop
    broken = json.loads(json.dumps(rep))
    broken["records"][0]["parity"].update(cosine_min=0.99, zero_shot_agreement=0.5)
    dump_report(broken, tmp_path / "broken.json")
    assert main(["compare", base, str(tmp_path / "broken.json")]) == 1
    out = capsys.readouterr().out
    assert f"{target['artifact']} @ {target['runtime']}: PARITY" in out and "zero-shot" in out


def test_compare_bad_input_exits_2(run_a, run_slow, tmp_path, capsys):
    a = str(run_a[1])
    cases = {}
    cases["no such file"] = [a, str(tmp_path / "nope.json")]
    (tmp_path / "text.json").write_text("this is not json")
    cases["not JSON"] = [a, str(tmp_path / "text.json")]
    other = json.loads(run_a[1].read_text())
    other["schema_version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(other))
    cases["schema_version"] = [a, str(tmp_path / "v99.json")]
    text_only = json.loads(run_a[1].read_text())
    text_only["records"] = [r for r in text_only["records"] if r["encoder"] == "text"]
    (tmp_path / "text_only.json").write_text(json.dumps(text_only))
    cases["no common artifacts"] = [str(run_slow[1]), str(tmp_path / "text_only.json")]
    for what, argv in cases.items():
        assert main(["compare", *argv]) == 2, what
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and what in err[0], (what, err)
    assert main(["compare", a, a, "--max-slowdown", "ten"]) == 2
    capsys.readouterr()


def test_report_html_and_markdown(run_a, run_slow, tmp_path, capsys):
    html, md, pngs = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "png"
    assert main(["report", str(run_a[1]), str(run_slow[1]), "--html", str(html), "--markdown", str(md),
                 "--png-dir", str(pngs)]) == 0
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert "Baseline vs current" in text and "onnx-fp32/image_encoder.onnx" in text
    for name in ("distribution", "latency_vs_parity", "baseline_vs_current"):
        data = (pngs / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = struct.unpack(">II", data[16:24])
        assert w >= 600 and h >= 150
    mdtext = md.read_text()
    assert "regression" in mdtext and "| artifact |" in mdtext
    assert main(["report", str(run_a[1]), "--markdown"]) == 0
    assert "| onnx-fp32/image_encoder.onnx | onnxruntime | ok |" in capsys.readouterr().out


def test_ingest_accepts_a_valid_report_and_rejects_a_broken_one(run_a, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["ingest", str(run_a[1]), "--into", str(store)]) == 0
    stored = list((store / "mobileclip_s0").glob("*.json"))
    assert len(stored) == 1
    rep = validate_report(json.loads(stored[0].read_text()))
    assert rep["ingested"]["from"] == str(run_a[1])
    assert "accepted" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text(run_a[1].read_text()[:-200])
    assert main(["ingest", str(broken), "--into", str(store)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert len(list((store / "mobileclip_s0").glob("*.json"))) == 1


def test_run_bad_input_exits_2(tmp_path, bundle, capsys):
    assert main(["run", str(tmp_path / "nope")]) == 2
    assert main(["run", str(bundle), "--runtime", "tensorflow"]) == 2
    assert main(["run", str(bundle), "--runs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err)


def test_compare_holds_int8_records_to_the_int8_bar(run_a, tmp_path, capsys):
    """An int8 record keeps its export bar (cosine >= 0.999), not the float default 0.9999."""
    rep = load_report(run_a[1])
    target, _ = _most_stable(rep)
    base = _only(rep, {target["id"]})
    base["records"][0]["precision"] = "int8"
    dump_report(base, tmp_path / "base.json")
    for cosine, rc in ((0.9995, 0), (0.998, 1)):
        cur = json.loads(json.dumps(base))
        cur["records"][0]["parity"]["cosine_min"] = cosine
        dump_report(cur, tmp_path / "cur.json")
        assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cur.json")]) == rc, cosine
        out = capsys.readouterr().out
        assert (f"{target['artifact']} @ {target['runtime']}: PARITY" in out) == (rc == 1)
        if rc:
            assert "cosine_min 0.998000 < 0.999" in out
