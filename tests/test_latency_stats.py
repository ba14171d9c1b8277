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
from clipdeploy.latency.stats import percentile, summarize, trimmed_mean

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


def _long_report(n=5000):
    """The sample report with its first record's steady samples made long (a device report's size)."""
    rep = _sample()
    st = rep["records"][0]["steady"]
    st["samples_ms"] = [float(x) for x in np.random.default_rng(0).lognormal(3.0, 0.2, n)]
    st["stats"] = summarize(st["samples_ms"])
    st.pop("block_ends", None)
    return rep


@pytest.mark.parametrize("bad, message", [
    (True, "True is not of type 'number'"), ("7", "'7' is not of type 'number'"), (None, "None is not of type"),
    ([1.0], "[1.0] is not of type 'number'"), (0, "0 is less than or equal to the minimum of 0"),
    (-2.5, "-2.5 is less than or equal to the minimum of 0"), (1e12, "is greater than the maximum of 86400000"),
    (float("inf"), "not a finite number")])
def test_long_sample_arrays_are_checked_like_short_ones(bad, message):
    """Long samples arrays are validated in bulk (report._validator_class); a bad element anywhere is
    refused with jsonschema's own message at its own index, exactly as the element-wise check says it."""
    import jsonschema
    rep = _long_report()
    validate_report(rep)                                        # the good one passes
    rep["records"][0]["steady"]["samples_ms"][4321] = bad
    with pytest.raises(ReportError) as e:
        validate_report(rep)
    msg = str(e.value)
    assert "records/0/steady/samples_ms/4321" in msg and message in msg and "\n" not in msg, msg
    if message != "not a finite number":                       # the stock validator finds the same error
        errs = list(jsonschema.Draft202012Validator(schema()).iter_errors(rep))
        assert [list(x.absolute_path) for x in errs] == [["records", 0, "steady", "samples_ms", 4321]]


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
