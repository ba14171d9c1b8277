"""clipdeploy.latency: statistics, bootstrap, parity metric, report schema — no artifacts needed."""
import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from clipdeploy.latency.parity import measure
from clipdeploy.latency.report import (ReportError, normalize_report, schema, to_v3, validate_report)
from clipdeploy.latency.stats import (block_values, bootstrap_blocks, bootstrap_ratio, percentile, summarize,
                                      trimmed_mean)

SAMPLE = Path(__file__).parent / "data" / "latency" / "android_report_sample.json"


def _sample():
    return json.loads(SAMPLE.read_text())


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 200])
def test_percentiles_match_numpy(n):
    x = np.random.default_rng(n).lognormal(3.0, 0.4, n)
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(x, q) == pytest.approx(np.percentile(x, q), rel=1e-12, abs=1e-12)
    s = summarize(x)
    assert s["median"] == pytest.approx(np.median(x), rel=1e-12)
    assert (s["p90"], s["p95"], s["p99"]) == pytest.approx(tuple(np.percentile(x, [90, 95, 99])), rel=1e-12)
    assert s["min"] == x.min() and s["max"] == x.max() and s["n"] == n
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(x.std(ddof=1) if n > 1 else 0.0, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n", [1, 5, 9, 10, 11, 37, 200])
def test_trimmed_mean_is_10_90(n):
    x = np.random.default_rng(100 + n).normal(10, 3, n)
    k = int(math.floor(0.1 * n))
    expected = np.sort(x)[k:n - k].mean()
    assert trimmed_mean(x) == pytest.approx(expected, rel=1e-12)
    assert trimmed_mean(x) == pytest.approx(scipy.stats.trim_mean(x, 0.1), rel=1e-12)


def test_summary_of_known_data():
    s = summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 100])
    assert s["median"] == 5.5
    assert s["p90"] == pytest.approx(9 + 0.1 * 91)          # position 8.1 between 9 and 100
    assert s["mean"] == 14.5
    assert s["trimmed_mean"] == 5.5                          # 1 and 100 dropped
    assert s["min"] == 1 and s["max"] == 100 and s["n"] == 10
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_bootstrap_ratio():
    rng = np.random.default_rng(0)
    base = rng.normal(20, 1, 60).clip(1)
    same = bootstrap_ratio(base, base)
    assert same["ratio"] == 1.0 and same["ci_low"] <= 1.0 <= same["ci_high"]
    slow = bootstrap_ratio(base, base * 1.3)
    assert slow["ratio"] == pytest.approx(1.3)
    # the CI is as wide as sampling theory says: the median's standard error is ~1.2533 sd / sqrt(n)
    # (normal data), the ratio of two independent medians has sqrt(2) x that relative error
    half = 1.96 * 1.3 * np.sqrt(2) * 1.2533 * base.std(ddof=1) / np.median(base) / np.sqrt(base.size)
    for side in (1.3 - slow["ci_low"], slow["ci_high"] - 1.3):
        assert 0.6 * half < side < 1.6 * half, (slow, half)
    assert bootstrap_ratio(base, base * 1.3) == slow                      # seeded: deterministic
    # a uniformly slower machine (calibration slower by the same factor) is not slower
    cal = rng.normal(3, 0.1, 80)
    norm = bootstrap_ratio(base, base * 1.3, cal, cal * 1.3)
    assert norm["normalized"] and norm["ratio"] == pytest.approx(1.0)
    assert norm["calibration_ratio"] == pytest.approx(1.3)
    assert norm["ci_low"] <= 1.0 <= norm["ci_high"]
    raw = bootstrap_ratio(base, base * 1.3, cal, None)                    # one side missing: raw ratio
    assert not raw["normalized"] and raw["ratio"] == pytest.approx(1.3)


def _drifting_run(rng, speed, n_blocks=30, per_block=6, cost=60.0):
    """Samples of a machine whose speed (a slowdown factor per block) drifts; the interleaved
    calibration (1 ms nominal) sees the same factor, each with its own small noise."""
    samples, ends, cal = [], [], []
    for i in range(n_blocks):
        f = speed(i)
        samples += list(cost * f * rng.normal(1, 0.02, per_block))
        ends.append(len(samples))
        cal.append(float(np.median(f * rng.normal(1, 0.02, 5))))
    return np.array(samples), ends, cal


def test_block_bootstrap_follows_a_drifting_machine():
    rng = np.random.default_rng(3)
    base = _drifting_run(rng, lambda i: 1.0)
    slow_machine = _drifting_run(rng, lambda i: 1.0 + 0.4 * (i >= 10))    # the machine got 40 % slower
    vb, vm = block_values(*base), block_values(*slow_machine)
    assert len(vb) == 30 and vb[0] == pytest.approx(np.median(base[0][:6]) / base[2][0])
    same = bootstrap_blocks(vb, vm)
    assert abs(same["ratio"] - 1) < 0.03 and same["ci_low"] < 1.0 + 0.03   # not a regression
    assert np.median(slow_machine[0]) / np.median(base[0]) > 1.3           # ...which the raw medians say
    s, e, c = slow_machine
    slower = bootstrap_blocks(vb, block_values(s * 1.15, e, c))             # the artifact 15 % slower too
    assert slower["ratio"] == pytest.approx(1.15 * same["ratio"]) and slower["ci_low"] > 1.08
    assert slower["n_blocks"] == [30, 30] and bootstrap_blocks(vb, vm) == same   # seeded
    with pytest.raises(ValueError):
        block_values(s, e[:-1] + [len(s) + 1], c)
    with pytest.raises(ValueError):
        block_values(s, e, c[:-1])


def test_parity_metric_is_the_export_gates():
    from clipdeploy.export.parity import THRESHOLDS, check
    from clipdeploy.export.parity import measure as export_measure
    from clipdeploy.latency import parity
    # one definition: the export gate, the harness and the Core ML interpreter share it
    assert export_measure is measure and THRESHOLDS is parity.THRESHOLDS and check is parity.check
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(6, 16))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    other = rng.normal(size=(8, 16))
    for got in (ref + rng.normal(scale=1e-6, size=ref.shape), ref[::-1].copy(), ref.copy(),
                np.full_like(ref, np.nan)):
        a, b = measure(ref, got, other), export_measure(ref, got, other)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
    with pytest.raises(ValueError):
        measure(ref, ref[:2], other)


def test_latency_package_does_not_import_export():
    import subprocess
    import sys
    code = ("import sys, clipdeploy.latency.cli, clipdeploy.latency.harness, clipdeploy.latency.worker, "
            "clipdeploy.latency.runtimes, clipdeploy.latency.compare, clipdeploy.latency.htmlreport, "
            "clipdeploy.latency.android, clipdeploy.latency.ingest, clipdeploy.latency.verify, "
            "clipdeploy.latency.coreml_ref, clipdeploy.latency.milblob, clipdeploy.latency.goldens, tempfile\n"
            "clipdeploy.latency.goldens.bundle_golden(__import__('pathlib').Path(tempfile.mkdtemp()) / 'b')\n"
            "assert not [m for m in sys.modules if m.startswith('clipdeploy.export')], 'export imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ schema

def test_schema_file_is_a_valid_json_schema():
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(schema())


def test_sample_app_report_is_valid_and_normalizes():
    rep = validate_report(_sample())
    norm = normalize_report(rep)
    validate_report(norm)
    img = next(r for r in norm["records"] if r["id"].startswith("executorch-fp32/image"))
    assert img["steady"]["stats"] == summarize([14.1, 13.9, 14.4, 14.0, 15.2])   # recomputed
    assert img["achieved_gflops"] is None                                        # no FLOPs known
    v3 = to_v3(norm)
    assert v3 and all({"benchmark", "model", "metric", "runners"} <= set(r) for r in v3)
    assert all(isinstance(r["metric"]["benchmark_values"], list) for r in v3)


@pytest.mark.parametrize("breakage, where", [
    (lambda r: r.update(schema_version=2), "schema_version"),
    (lambda r: r.pop("host"), "host"),
    (lambda r: r["records"][0]["steady"].pop("samples_ms"), "samples_ms"),
    (lambda r: r["records"][0]["steady"].update(samples_ms=[]), "records/0/steady/samples_ms"),
    (lambda r: r["records"][0]["steady"]["stats"].update(n=7), "stats/n"),
    (lambda r: r["records"][0].update(status="fine"), "records/0/status"),
    (lambda r: r["records"][0]["parity"].pop("cosine_min"), "cosine_min"),
    (lambda r: r["records"][2].pop("reason"), "reason"),
    (lambda r: r["records"].append(copy.deepcopy(r["records"][0])), "duplicate"),
])
def test_broken_reports_are_rejected_with_one_line(breakage, where):
    rep = _sample()
    breakage(rep)
    with pytest.raises(ReportError) as e:
        validate_report(rep)
    msg = str(e.value)
    assert where in msg and "\n" not in msg
    with pytest.raises(ReportError):
        validate_report([rep])


def test_zero_shot_agreement_counts_a_reference_tie_as_agreeing():
    """A runner-up within ZERO_SHOT_TIE of the reference's top-1 is a tie, not a disagreement; a clearly
    worse top-1 is; the bars of each precision apply to the result (int8: >= 99 %)."""
    from clipdeploy.latency.parity import ZERO_SHOT_TIE, failures
    other = np.eye(3)
    ref = np.array([[0.7, 0.7 - 5e-5, 0.1], [0.0, 0.0, 1.0]])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    near = ref.copy()
    near[0] = ref[0, [1, 0, 2]]             # picks the runner-up, which the reference put 5e-5 lower
    fig = measure(ref, near, other)
    assert ref[0, 0] - ref[0, 1] < ZERO_SHOT_TIE and fig["zero_shot_agreement"] == 1.0
    far = ref.copy()
    far[1] = [1.0, 0.0, 0.0]                # the reference's similarity to class 0 is 0, not ~1
    fig = measure(ref, far, other)
    assert fig["zero_shot_agreement"] == 0.5
    assert "zero-shot top-1 agreement 50% < 99%" in failures(fig, "int8")
