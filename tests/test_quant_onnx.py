"""ONNX int8: ``clip-export --target onnx --precision int8`` on MobileCLIP-S0 (seeded random weights), real
ONNX Runtime quantization and runs (no mocks). The bundle is exported once for the module: fp32 and
int8 artifacts of both encoders, each through the parity gate, then timed against each other.

Also the fp32 artifacts' offline-optimization record (ONNX Runtime EXTENDED graph, kept or not)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clipdeploy.export.pipeline import export_bundle
from clipdeploy.latency.parity import THRESHOLDS, VALIDATION_THRESHOLDS
from clipdeploy.models import validation as vset

ENCODERS = ("image", "text")
CANDIDATES = {"image": {"dynamic-matmul", "static-conv", "static-conv+dynamic-matmul"},
              "text": {"dynamic-matmul", "static-conv", "static-conv+dynamic-matmul"}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "mobileclip_s0"
    lines = []
    export_bundle("mobileclip_s0", ["onnx"], precision="int8", random_weights=0, out=out,
                  backend_options={"ort_offline": "auto"},
                  log=lambda *a: lines.append(" ".join(map(str, a))))
    print("\n" + "\n".join(lines))
    manifest = json.loads((out / "manifest.json").read_text())   # what was written, not the return value
    return out, manifest


def _art(manifest, precision, which):
    (a,) = [a for a in manifest["artifacts"] if (a["target"], a["precision"], a["encoder"]) ==
            ("onnx", precision, which)]
    return a


def test_bundle_has_fp32_and_int8_of_both_encoders(bundle):
    out, m = bundle
    got = {(a["target"], a["precision"], a["encoder"]) for a in m["artifacts"]}
    assert got == {("onnx", p, e) for p in ("fp32", "int8") for e in ENCODERS}
    for which in ENCODERS:
        f32, q8 = _art(m, "fp32", which), _art(m, "int8", which)
        assert q8["path"] == f"onnx-int8/{which}_encoder.onnx" and (out / q8["path"]).is_file()
        assert q8["files"] == [q8["path"]]
        # the same interface as fp32: names, dtypes, the dynamic batch axis
        assert q8["inputs"] == f32["inputs"] and q8["outputs"] == f32["outputs"]
        assert q8["inputs"][0]["name"] == which and q8["inputs"][0]["shape"][0] == "batch"
        assert q8["outputs"] == [{"name": "embedding", "shape": ["batch", 512], "dtype": "float32"}]
        sess = ort.InferenceSession(str(out / q8["path"]), providers=["CPUExecutionProvider"])
        (i,), (o,) = sess.get_inputs(), sess.get_outputs()
        assert (i.name, i.type, i.shape[0]) == (which, "tensor(float)" if which == "image" else
                                                "tensor(int32)", "batch")
        assert (o.name, o.type, o.shape[0]) == ("embedding", "tensor(float)", "batch")


def test_int8_files_are_smaller(bundle):
    out, m = bundle
    for which in ENCODERS:
        f32, q8 = _art(m, "fp32", which), _art(m, "int8", which)
        assert q8["size_bytes"] == (out / q8["path"]).stat().st_size
        assert q8["size_bytes"] < f32["size_bytes"]
        print(f"\n[int8] {which}: {f32['size_bytes'] / 2**20:.1f} MiB -> {q8['size_bytes'] / 2**20:.1f} MiB")
    # the text tower's token-embedding table is most of its file: int8 where the int8 bars allow it
    text = _art(m, "int8", "text")
    if text["info"]["int8"]["embedding_tables_int8"]:
        assert _art(m, "fp32", "text")["size_bytes"] >= 2 * text["size_bytes"]


def test_int8_passes_its_gate(bundle):
    _, m = bundle
    for which in ENCODERS:
        a = _art(m, "int8", which)
        p = a["parity"]
        # the backend chose on the gate's own zero-shot agreement (the pipeline passes the other tower's
        # reference embeddings): self-retrieval alone misses near ties (S0 seed 0: a probe caption whose
        # top-1 image leads the second by 3e-5 in similarity flips under int8 noise)
        assert a["info"]["int8"]["agreement_against"].startswith("the other tower")
        assert p["checked"] == "numeric" and p["passed"] is True and "accepted_degraded" not in p, \
            (which, p.get("failures"))
        assert p["thresholds"] == THRESHOLDS["int8"]
        assert p["finite"] and p["cosine_min"] >= 0.999 and p["zero_shot_agreement"] >= 0.99
        assert p["max_abs"] > 1e-5           # it really is not the fp32 graph
        # and on the validation set, which the calibration never saw: every row at the bar, both ways
        v = p["validation"]
        assert v["passed"] is True and v["thresholds"] == VALIDATION_THRESHOLDS["int8"]
        assert v["n"] == (vset.VALIDATION_IMAGES if which == "image" else vset.VALIDATION_CAPTIONS)
        assert v["n_other"] == (vset.VALIDATION_CAPTIONS if which == "image" else vset.VALIDATION_IMAGES)
        assert v["rows_below_cosine"] == 0 and v["cosine_min"] >= 0.999
        assert v["zero_shot_agreement"] >= 0.95 and v["retrieval_agreement"] >= 0.95
        print(f"\n[int8 validation] {which}: min cos {v['cosine_min']:.6f} mean {v['cosine_mean']:.6f}, "
              f"{v['rows_below_cosine']} below, {v['direction']} {v['zero_shot_agreement']:.1%}, "
              f"{v['retrieval_direction']} {v['retrieval_agreement']:.1%}, {v['seconds']:.1f} s")
        f32 = _art(m, "fp32", which)["parity"]
        assert f32["passed"] and f32["max_abs"] <= 1e-5 and f32["zero_shot_agreement"] == 1.0
        v32 = f32["validation"]              # the float artifact passes on the validation set too
        assert v32["passed"] and v32["max_abs"] <= 1e-5 and v32["zero_shot_agreement"] >= 0.95
    assert m["validation"]["images"] == vset.VALIDATION_IMAGES and m["validation"]["seed"] == vset.VALIDATION_SEED
    assert m["calibration"]["seed"] == vset.CALIBRATION_SEED != m["validation"]["seed"]
    assert m["calibration"]["rows"] == {"image": 6 + vset.CALIBRATION_IMAGES, "text": 8 + vset.CALIBRATION_CAPTIONS}


def test_precision_tradeoffs_one_default_each(bundle):
    _, m = bundle
    rows = m["precision_tradeoffs"]
    assert {(r["encoder"], r["precision"]) for r in rows} == {(e, p) for e in ENCODERS
                                                              for p in ("fp32", "int8")}
    for which in ENCODERS:
        mine = [r for r in rows if r["encoder"] == which]
        assert sum(r["default"] for r in mine) == 1
        arts = [a for a in m["artifacts"] if a["encoder"] == which]
        assert sum(a["default"] for a in arts) == 1
        q8 = next(r for r in mine if r["precision"] == "int8")
        assert q8["median_ms"] > 0 and q8["speedup"] > 0 and 0 < q8["size_ratio"] < 1
        assert q8["default_decision"]
        # the int8 artifact is the default exactly where it passed (probe and validation) and ran >= 5 %
        # faster; the row's figures are the validation set's
        assert q8["figures_from"] == "validation" and q8["rows_below_cosine"] == 0
        # whichever is the default passed on the validation set
        assert all(r["figures_from"] == "validation" and r["passed"] for r in mine if r["default"])
        assert q8["default"] == (q8["passed"] and q8["speedup"] >= 1.05)


def test_int8_candidates_are_measured(bundle):
    _, m = bundle
    for which in ENCODERS:
        a = _art(m, "int8", which)
        q = a["info"]["int8"]
        # the probe set followed by the generated calibration set
        assert q["calibration_rows"] == (6 + vset.CALIBRATION_IMAGES if which == "image"
                                         else 8 + vset.CALIBRATION_CAPTIONS)
        assert q["fp32_median_ms"] > 0
        rows = {r["name"]: r for r in q["candidates"]}
        assert CANDIDATES[which] <= set(rows)
        for name, r in rows.items():
            for key in ("quantized_op_types", "size_bytes", "median_ms", "speedup_vs_fp32", "cosine_min",
                        "zero_shot_agreement", "passed"):
                assert key in r, (which, name, key)
            assert r["size_bytes"] > 0 and r["median_ms"] > 0 and r["speedup_vs_fp32"] > 0
            assert 0 < r["cosine_min"] <= 1 + 1e-9 and 0 <= r["zero_shot_agreement"] <= 1
            assert r["passed"] == (r["cosine_min"] >= 0.999 and r["zero_shot_agreement"] >= 0.99)
            assert r["quantized_op_types"]
        assert "MatMul" in rows["dynamic-matmul"]["quantized_op_types"]
        assert "Conv" in rows["static-conv"]["quantized_op_types"]
        assert "MatMul" not in rows["static-conv"]["quantized_op_types"]
        chosen = rows[q["chosen"]]
        assert chosen["passed"] and q["chosen_passed"]
        # the chosen graph is the artifact (its doc string renamed: a few bytes)
        assert abs(chosen["size_bytes"] - a["size_bytes"]) < 1024
        # the choice rule: the fastest passing one where one beats fp32, else the most accurate passing
        passing = [r for r in rows.values() if r["passed"]]
        faster = [r for r in passing if r["median_ms"] < q["fp32_median_ms"]]
        if faster:
            assert chosen["median_ms"] == min(r["median_ms"] for r in faster)
        else:
            assert chosen["cosine_min"] == max(r["cosine_min"] for r in passing)
        print(f"\n[int8] {which}: fp32 {q['fp32_median_ms']:.1f} ms; chosen {q['chosen']}; " + "; ".join(
            f"{n} {r['size_bytes'] / 2**20:.1f} MiB {r['median_ms']:.1f} ms x{r['speedup_vs_fp32']:.2f} "
            f"cos {r['cosine_min']:.5f}" for n, r in rows.items()))
    # the text tower's embedding table is int8 in every first-round candidate; where none passed, the same
    # candidates with the table float were tried before any node was kept float
    text = _art(m, "int8", "text")["info"]["int8"]
    first = [r for r in text["candidates"] if r["name"] in CANDIDATES["text"]]
    assert all(r["quantized_op_types"].get("Gather") == 1 for r in first)
    assert text["embedding_tables"]["bytes_int8"] < text["embedding_tables"]["bytes_float32"] / 3
    floats = [r for r in text["candidates"] if "+float-tables" in r["name"]]
    assert bool(floats) == (not any(r["passed"] for r in first))
    assert all("Gather" not in r["quantized_op_types"] for r in floats)
    assert text["embedding_tables_int8"] == ("+float-tables" not in text["chosen"])


def test_int8_graphs_contain_quantized_ops(bundle):
    out, m = bundle
    for which in ENCODERS:
        a = _art(m, "int8", which)
        model = onnx.load(str(out / a["path"]))
        onnx.checker.check_model(model)
        ops = {n.op_type for n in model.graph.node}
        dynamic = {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
        static = "DequantizeLinear" in ops or any(o.startswith("QLinear") for o in ops)
        assert dynamic or static, (which, sorted(ops))
        int8 = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.INT8,
                                                                       onnx.TensorProto.UINT8)]
        assert sum(int(np.prod(t.dims)) for t in int8) > 1_000_000
        assert a["info"]["op_types"] == {k: v for k, v in a["info"]["op_types"].items() if v > 0}
        if which == "text":  # the token table is looked up in int8 exactly where the choice kept it int8
            names = {t.name for t in int8}
            assert any(n.op_type == "Gather" and n.input[0] in names for n in model.graph.node) == \
                a["info"]["int8"]["embedding_tables_int8"]


def test_int8_dynamic_batch_matches_the_batch(bundle):
    """Row by row (batch 1) the int8 graph gives nearly the batch's embeddings (dynamic activation
    ranges are per call, so not bit-equal) and the same retrieval."""
    out, m = bundle
    images, ids = np.load(out / "probe" / "images.npy"), np.load(out / "probe" / "token_ids.npy")
    for which, x in (("text", ids), ("image", images)):
        sess = ort.InferenceSession(str(out / _art(m, "int8", which)["path"]),
                                    providers=["CPUExecutionProvider"])
        whole = sess.run(None, {which: x})[0]
        rows = np.concatenate([sess.run(None, {which: x[k:k + 1]})[0] for k in range(len(x))])
        assert whole.shape == rows.shape == (len(x), 512)
        cos = (whole * rows).sum(-1) / np.linalg.norm(whole, axis=-1) / np.linalg.norm(rows, axis=-1)
        assert cos.min() > 0.998


def test_offline_optimization_record(bundle):
    out, m = bundle
    for which in ENCODERS:
        a = _art(m, "fp32", which)
        rec = a["info"]["ort_offline_optimization"]
        assert rec["evaluated"] is True and rec["level"] == "extended" and rec["mode"] == "auto"
        assert isinstance(rec["kept"], bool) and rec["why"]
        for key in ("load_ms", "run_ms"):
            assert set(rec[key]) == {"original", "optimized", "optimized_default_level", "original_extended"}
            assert all(v > 0 for v in rec[key].values()), rec[key]
        assert rec["parity"]["passed"] and rec["parity"]["max_abs"] <= 1e-5
        assert rec["load_speedup"] > 0 and rec["run_time_ratio"] > 0
        assert rec["kept"] == (rec["load_speedup"] >= 1.05 and rec["run_time_ratio"] <= 1.03)
        # kept: the artifact is the optimized graph (ONNX Runtime's fused ops); else the exporter's
        model = onnx.load(str(out / a["path"]), load_external_data=False)
        contrib = any(n.domain == "com.microsoft" for n in model.graph.node)
        assert contrib == (rec["kept"] and bool(rec["contrib_ops"]))
        print(f"\n[ort-offline] {which}: kept={rec['kept']} load ms "
              f"{ {k: round(v) for k, v in rec['load_ms'].items()} } run ms "
              f"{ {k: round(v, 1) for k, v in rec['run_ms'].items()} }: {rec['why']}")
    # int8 artifacts are not offline-optimized (the evaluation is for fp32 graphs)
    assert all("ort_offline_optimization" not in _art(m, "int8", w)["info"] for w in ENCODERS)
