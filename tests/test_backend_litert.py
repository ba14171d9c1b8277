"""LiteRT backend: MobileCLIP-S0 (seeded) exported with litert-torch and gated in ai_edge_litert's real
Interpreter (XNNPACK) at every precision; a tampered .tflite fails the gate; clip-latency runs the
bundle with the ``litert`` runtime."""
import json

import pytest

from clipdeploy.latency import litert_run as lb
from clipdeploy.export.backends.litert_backend import LiteRTBackend
from clipdeploy.export.parity import ParityError, check, measure

import ai_edge_litert.interpreter  # noqa: E402,F401  (pinned: fail, never skip)
import litert_torch  # noqa: E402,F401


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The S0 bundle with litert fp32 + int8 (one export) and one with fp16."""
    from clipdeploy.export.pipeline import export_bundle
    root = tmp_path_factory.mktemp("litert")
    out = {}
    for prec in ("int8", "fp16"):
        lines = []
        export_bundle("mobileclip_s0", ["litert"], precision=prec, random_weights=0, out=root / prec,
                      log=lines.append)
        out[prec] = (root / prec, lines)
    return out


def _arts(bundle):
    return json.loads((bundle / "manifest.json").read_text())["artifacts"]


def test_every_precision_passes_its_gate_in_the_interpreter(bundles):
    arts = _arts(bundles["int8"][0]) + _arts(bundles["fp16"][0])
    got = {(a["precision"], a["encoder"]) for a in arts}
    assert got == {(p, e) for p in ("fp32", "fp16", "int8") for e in ("image", "text")}
    for a in arts:
        p = a["parity"]
        assert p["checked"] == "numeric" and p["runtime"] == "litert" and p["passed"] is True, a["path"]
        assert p["validation"]["passed"] is True and p["validation"]["n"] >= 32
        assert a["path"].startswith(f"litert-{a['precision']}/") and a["path"].endswith(".tflite")
        name = "image" if a["encoder"] == "image" else "text"
        assert [i["name"] for i in a["inputs"]] == [name] and a["outputs"][0]["name"] == "embedding"
        assert a["inputs"][0]["dtype"] == ("float32" if name == "image" else "int32")
        assert a["inputs"][0]["shape"][0] == 1 and a["outputs"][0]["shape"] == [1, 512]
        if a["precision"] == "fp32":
            assert p["max_abs"] <= 1e-5
        d = a["info"]["delegation"]
        assert d["backends"] == ["XNNPACK"] and d["partitions"] >= 1 and 0 < d["share_delegated"] <= 1
        # the rewrites leave no float compute outside XNNPACK: only the text tower's indexing (and the
        # weight DEQUANTIZEs of fp16 / int8 tables, run once at load)
        assert d["compute_ops_outside"] == {}, (a["path"], d)
        if a["encoder"] == "image":
            assert d["ops_outside"] == {} and a["info"]["rewrites"]["banded-depthwise"] == 21
        else:
            assert "ARG_MAX" in d["ops_outside"]           # EOT pooling over the int32 ids, outside
    sizes = {(a["precision"], a["encoder"]): a["size_bytes"] for a in arts}
    for enc in ("image", "text"):
        assert sizes[("fp16", enc)] < 0.55 * sizes[("fp32", enc)]
        # int8 keeps the weight ops the recovery kept in float (seeded towers amplify int8 error)
        assert sizes[("int8", enc)] < sizes[("fp32", enc)]


def test_int8_candidates_and_default_follow_the_rule(bundles):
    bundle, lines = bundles["int8"]
    man = json.loads((bundle / "manifest.json").read_text())
    for a in man["artifacts"]:
        if a["precision"] != "int8":
            continue
        rec = a["info"]["int8"]
        built = {c["candidate"] for c in rec["candidates"] if c["built"]}
        assert {"dynamic", "static", "weight-only"} <= built
        chosen = next(c for c in rec["candidates"] if c["candidate"] == rec["chosen"])
        assert chosen["passed"] is True and chosen["cosine_min"] >= 0.999
    rows = [r for r in man["precision_tradeoffs"] if r["target"] == "litert"]
    assert {(r["encoder"], r["precision"]) for r in rows} == {(e, p) for e in ("image", "text")
                                                              for p in ("fp32", "int8")}
    for enc in ("image", "text"):
        default = [a for a in man["artifacts"] if a["encoder"] == enc and a["default"]]
        assert len(default) == 1
        q = next(r for r in rows if r["encoder"] == enc and r["precision"] == "int8")
        # the rule: int8 is the default only where it passed on the validation set and ran >= 5 % faster
        assert (default[0]["precision"] == "int8") == (q["passed"] and q["speedup"] >= 1.05), q
    assert any(line.startswith("[litert] image: default") for line in lines)


def test_a_tampered_tflite_fails_the_gate(bundles, tmp_path, probe_reference):
    bundle = bundles["int8"][0]
    src = bundle / "litert-fp32" / "image_encoder.tflite"
    images, _, ref_image, ref_text = probe_reference("mobileclip_s0")
    b = LiteRTBackend()
    good = b.run(src, images)
    check(measure(ref_image, good, ref_text), "fp32", "original")      # passes
    bad = tmp_path / "image_encoder.tflite"
    data = bytearray(src.read_bytes())
    # flip bytes in the middle of the file: inside the weight buffers (the flatbuffer header and op
    # tables are at the start)
    mid = len(data) // 2
    for i in range(mid, mid + 4096, 4):
        data[i] ^= 0x5A
    bad.write_bytes(bytes(data))
    out = b.run(bad, images)
    with pytest.raises(ParityError):
        check(measure(ref_image, out, ref_text), "fp32", "tampered")
    trunc = tmp_path / "truncated.tflite"
    trunc.write_bytes(bytes(data[:4096]))
    with pytest.raises(Exception):
        b.run(trunc, images)


def test_the_interpreter_honours_threads_and_reports_delegation(bundles):
    path = bundles["int8"][0] / "litert-fp32" / "text_encoder.tflite"
    for threads in (1, 2):
        interp = lb.interpreter(path, threads)
        d = lb.delegation_figures(interp)
        assert d["partitions"] >= 1 and d["delegated_ops"] > 200
        ins, outs = lb.io_spec(interp)
        assert ins == [{"name": "text", "shape": [1, 77], "dtype": "int32"}]


def test_clip_latency_runs_the_litert_bundle(bundles, tmp_path):
    from clipdeploy.latency.cli import main
    bundle = bundles["fp16"][0]
    out = tmp_path / "r.json"
    rc = main(["run", str(bundle), "--runtime", "litert", "--threads", "1", "--runs", "5", "--warmup", "1",
               "--min-seconds", "0.2", "--min-blocks", "2", "--processes", "1", "--max-processes", "1",
               "--no-flops", "--quiet", "--json", str(out)])
    rep = json.loads(out.read_text())
    recs = [r for r in rep["records"] if r["runtime"] == "litert"]
    assert {(r["precision"], r["encoder"]) for r in recs} == {("fp16", "image"), ("fp16", "text")}
    for r in recs:
        assert r["status"] == "ok", r
        assert r["steady"]["stats"]["median"] > 0
        p = r["parity"]
        assert p["max_abs"] <= 1.5e-3 and p["cosine_min"] >= 0.99995 and p["zero_shot_agreement"] == 1.0, p
        # the export gate's runner: the same figures up to the thread count's summation order
        assert abs(p["max_abs"] - r["export_parity"]["max_abs"]) < 1e-5
        assert r["runtime_options"]["threads"] == 1
    assert rc in (0, 1)          # 1: a record flagged contended (a parallel suite), never an error


def test_bad_precision_and_missing_calibration(tmp_path, fused_session):
    from clipdeploy.export.backends.base import BackendUnavailable
    from clipdeploy.export.wrappers import encoder, example_input
    b = LiteRTBackend()
    with pytest.raises(BackendUnavailable, match="litert backend writes fp32, fp16, int8"):
        b.check_available("int4")
    m = fused_session("mobileclip_s0")
    with pytest.raises(ValueError, match="calibration rows"):
        b.export(encoder(m.module, m.spec, "text"), example_input(m.spec, "text"), "text", "int8",
                 tmp_path / "t.tflite", m.spec, {})
    assert not list(tmp_path.iterdir())
