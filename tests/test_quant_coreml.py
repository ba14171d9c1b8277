"""Core ML int8 (weight-compressed) export: real coremltools conversion and compression, the candidates
and the export gate through the Core ML reference interpreter (no mocks).

One MobileCLIP-S0 bundle (random weights, seed 0) with ``--precision int8`` is written per module: it
holds coreml-fp16 and coreml-int8 artifacts for both encoders. Core ML prediction needs macOS and is
not used here; the interpreter evaluates the saved packages.

With random weights seed 0 the probe's 8th caption is a near tie between images 2 and 5 (a 3.1e-5
margin in the reference); the gate counts a top-1 within ``ZERO_SHOT_TIE`` of the reference's as
agreeing, so every int8 artifact must pass every bar (no ``accept_degraded``), on the probe and on the
validation set.
"""
import json
import time

import numpy as np
import pytest
import torch
from torch import nn

import coremltools as ct  # a pinned dependency: a broken install fails here, never skips

from clipdeploy.export.backends import coreml_backend as cb
from clipdeploy.export.backends.coreml_backend import CoreMLBackend, CoreMLStructureError
from clipdeploy.export.parity import THRESHOLDS, VALIDATION_THRESHOLDS
from clipdeploy.export.pipeline import export_bundle
from clipdeploy.latency import coreml_ref as cr

pytestmark = pytest.mark.usefixtures("interpreter_one_thread")

TIMINGS = {}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml_int8") / "b"
    t0 = time.perf_counter()
    export_bundle("mobileclip_s0", ["coreml"], precision="int8", random_weights=0, out=out,
                  log=lambda *a: None)
    TIMINGS["bundle_s"] = round(time.perf_counter() - t0, 1)
    on_disk = json.loads((out / "manifest.json").read_text())
    return out, on_disk


def _art(manifest, precision, encoder):
    [a] = [a for a in manifest["artifacts"]
           if (a["target"], a["precision"], a["encoder"]) == ("coreml", precision, encoder)]
    return a


def _weights(root, art, file=None):
    return (root / (file or art["path"]) / cb.WEIGHTS_REL).stat().st_size


def test_bundle_has_fp16_and_int8_for_both_encoders(bundle):
    root, m = bundle
    got = {(a["target"], a["precision"], a["encoder"]) for a in m["artifacts"]}
    assert got == {("coreml", p, e) for p in ("fp16", "int8") for e in ("image", "text")}
    for a in m["artifacts"]:
        for f in a["files"]:
            assert (root / f).is_dir(), f
    img8 = _art(m, "int8", "image")
    assert img8["files"] == ["coreml-int8/image_encoder.mlpackage", "coreml-int8/image_encoder_imagetype.mlpackage"]
    assert img8["inputs"] == _art(m, "fp16", "image")["inputs"]
    assert _art(m, "int8", "text")["inputs"] == [{"name": "text", "shape": [1, 77], "dtype": "int32"}]
    print(f"\nbundle (fp16 + int8, S0 image + text): {TIMINGS['bundle_s']}s; "
          + "; ".join(f"{a['precision']} {a['encoder']} export {a['export_seconds']}s {a['info']['timings']}"
                      for a in m["artifacts"]))


def test_int8_weights_are_smaller(bundle):
    root, m = bundle
    sizes = {}
    for enc in ("image", "text"):
        f16, i8 = _art(m, "fp16", enc), _art(m, "int8", enc)
        sizes[enc] = (_weights(root, f16), _weights(root, i8))
        assert sizes[enc][1] < sizes[enc][0], sizes
        assert i8["size_bytes"] < f16["size_bytes"]
    assert sizes["image"][0] / sizes["image"][1] >= 1.7, sizes["image"]
    # the ImageType variant carries the same compressed weights
    img8 = _art(m, "int8", "image")
    assert _weights(root, img8, img8["files"][1]) == sizes["image"][1]
    print("\nweight.bin fp16 -> int8: " + ", ".join(f"{e} {a / 1e6:.2f} -> {b / 1e6:.2f} MB (x{a / b:.2f})"
                                                      for e, (a, b) in sizes.items()))


def test_int8_programs_decompress_weights_at_load(bundle):
    root, m = bundle
    backend = CoreMLBackend()
    for enc in ("image", "text"):
        a8, a16 = _art(m, "int8", enc), _art(m, "fp16", enc)
        chk = backend.structural_check(root / a8["path"], a8["inputs"], a8["outputs"], precision="int8")
        assert chk["opset"] == "CoreML7" and chk["compressed_ops"] > 0
        assert set(k for k in chk["op_histogram"] if k.startswith("constexpr_")) <= {
            "constexpr_affine_dequantize", "constexpr_lut_to_dense"}                 # the iOS16/17 ops
        by = chk["weight_bytes_by_dtype"]
        # the image tower's weights are mostly int8; the text tower's token table (most of its bytes) may stay
        # fp16 where its int8 rounding would take long captions below the bar on the calibration rows
        share = 0.2 if enc == "image" else 0.1
        assert by.get("int8", 0) + by.get("uint8", 0) > share * sum(by.values()), by
        assert chk["compressed_ops"] == a8["info"]["int8"]["candidates"][
            [c["name"] for c in a8["info"]["int8"]["candidates"]].index(a8["info"]["int8"]["chosen"])][
            "compressed_ops"]
        f16 = backend.structural_check(root / a16["path"], a16["inputs"], a16["outputs"], precision="fp16")
        assert f16["compressed_ops"] == 0
        with pytest.raises(CoreMLStructureError, match="no constexpr"):
            backend.structural_check(root / a16["path"], a16["inputs"], a16["outputs"], precision="int8")
        meta = ct.models.MLModel(str(root / a8["path"]), skip_model_load=True).user_defined_metadata
        assert meta["precision"] == "int8" and meta["compute_precision"] == "fp16"
        assert meta["weight_compression"] == a8["info"]["int8"]["chosen"]
        print(f"\n{enc} int8 ({meta['weight_compression']}): {chk['compressed_ops']} constexpr ops, blobs {by}")


def test_interpreter_decompression_matches_coremltools(bundle, tmp_path):
    """The interpreter's constexpr results in the written image package equal coremltools' own
    decompression of it (8-bit LUT / int8 ops as coremltools 9 writes them for iOS17)."""
    import coremltools.optimize.coreml as cto

    root, m = bundle
    path = root / _art(m, "int8", "image")["path"]
    dpath = tmp_path / "decompressed.mlpackage"
    cto.decompress_weights(ct.models.MLModel(str(path), skip_model_load=True)).save(str(dpath))
    pc, pd = cr.load_program(path, cache=False), cr.load_program(dpath, cache=False)
    cc, cd = pc.constants(), pd.constants()
    compressed = [n for n in cb._constexpr_outputs(pc.spec)]
    assert compressed and not cb._constexpr_outputs(pd.spec)
    for n in compressed:
        assert n in cd, n
        np.testing.assert_array_equal(np.asarray(cc[n]), np.asarray(cd[n]), err_msg=n)


def test_int8_parity_from_manifest(bundle):
    _, m = bundle
    for enc in ("image", "text"):
        p = _art(m, "int8", enc)["parity"]
        assert p["cosine_min"] >= 0.999 and p["thresholds"] == THRESHOLDS["int8"]
        variants = [p] + ([p["image_type_variant"]] if enc == "image" else [])
        assert p["checked"] == "reference-interpreter" and "not Apple's kernels" in p["runtime"]
        for v in variants:
            assert v["passed"] and v["thresholds"] == THRESHOLDS["int8"]
            assert v["cosine_min"] >= 0.999 and v["zero_shot_agreement"] >= 0.99
            assert v["interpreter"]["first_nonfinite"] is None
        # the written package was evaluated on the calibration rows while choosing the candidate; the probe
        # rows are their first rows, so the probe gate reads that evaluation
        assert "int8 candidate evaluation" in p["interpreter"]["reused"]
        # and on the validation set, which the calibration never saw: every row at the bar, both ways
        v = p["validation"]
        assert v["checked"] == "reference-interpreter" and v["passed"] is True
        assert v["thresholds"] == VALIDATION_THRESHOLDS["int8"] and v["rows_below_cosine"] == 0
        assert v["cosine_min"] >= 0.999 and v["zero_shot_agreement"] >= 0.95 and v["retrieval_agreement"] >= 0.95
        f16 = _art(m, "fp16", enc)["parity"]["validation"]
        assert f16["passed"] and f16["thresholds"] == VALIDATION_THRESHOLDS["fp16"] and f16["cosine_min"] >= 0.99995
        print(f"\n{enc} validation: int8 min cos {v['cosine_min']:.6f} mean {v['cosine_mean']:.6f} "
              f"{v['rows_below_cosine']} below, {v['zero_shot_agreement']:.1%} / {v['retrieval_agreement']:.1%} "
              f"({v['seconds']:.1f} s); fp16 min cos {f16['cosine_min']:.6f}, {f16['zero_shot_agreement']:.1%} / "
              f"{f16['retrieval_agreement']:.1%} ({f16['seconds']:.1f} s)")
        if enc == "image":
            assert "reused" not in variants[1]["interpreter"]      # the ImageType package ran here
        print(f"\n{enc} int8 gate: cos min {p['cosine_min']:.6f}, max abs {p['max_abs']:.2e}, zero-shot "
              f"{p['zero_shot_agreement']:.0%}" + (f"; ImageType cos {variants[1]['cosine_min']:.6f}"
                                                   if enc == "image" else ""))


def test_int8_candidates_recorded(bundle):
    _, m = bundle
    for enc in ("image", "text"):
        a = _art(m, "int8", enc)
        q = a["info"]["int8"]
        assert q["weight_threshold"] == cb.INT8_WEIGHT_THRESHOLD == 2048 and q["ios"] == 17
        cands = {c["name"]: c for c in q["candidates"]}
        assert {"linear8", "palettize8"} <= set(cands)
        for c in q["candidates"]:
            assert c["size_bytes"] > 1e6 and c["compressed_ops"] > 0
            assert 0.9 < c["cosine_min"] <= 1.0 and 0.0 <= c["zero_shot_agreement"] <= 1.0
            assert 0 < c["max_abs"] < 1
            # passing on the calibration rows needs a margin over the bar (see INT8_CALIBRATION_COSINE)
            assert c["passed"] == (c["cosine_min"] >= cb.INT8_CALIBRATION_COSINE and c["zero_shot_agreement"] >= 0.99)
        chosen = cands[q["chosen"]]
        assert q["zero_shot_against"] == "the other tower's reference embeddings"    # the pipeline passes it
        assert chosen["cosine_min"] >= 0.999
        if chosen["passed"]:
            assert chosen["cosine_min"] == max(c["cosine_min"] for c in q["candidates"] if c["passed"])
        else:       # nothing passed: the most accurate one, and the export gate decides
            assert not any(c["passed"] for c in q["candidates"])
            assert chosen["cosine_min"] == max(c["cosine_min"] for c in q["candidates"])
        assert q["kept_fp16"] == chosen["kept_fp16"]
        if q["fallback"] is None:        # fp16 weights kept only where neither candidate passed
            assert not chosen["kept_fp16"]
        else:
            assert not cands["linear8"]["passed"] and not cands["palettize8"]["passed"]
            assert "+fp16" in chosen["name"] and chosen["kept_fp16"]
        # the gate's probe rows are the first calibration rows: its minimum is over a subset of the chosen
        # candidate's rows, on the same package bytes
        assert a["parity"]["cosine_min"] >= chosen["cosine_min"] - 1e-12
        assert q["calibration_cosine"] == cb.INT8_CALIBRATION_COSINE
        print(f"\n{enc}: chosen {q['chosen']}; " + "; ".join(
            f"{c['name']} {c['size_bytes'] / 1e6:.2f} MB cos {c['cosine_min']:.6f} agree "
            f"{c['zero_shot_agreement']:.0%} max abs {c['max_abs']:.2e} {c['compressed_ops']} ops"
            + (f" ({len(c['kept_fp16'])} kept fp16)" if c["kept_fp16"] else "") for c in q["candidates"]))


def test_precision_tradeoffs_keep_fp16_default(bundle):
    _, m = bundle
    rows = [r for r in m["precision_tradeoffs"] if r["target"] == "coreml"]
    assert {(r["encoder"], r["precision"]) for r in rows} == {(e, p) for e in ("image", "text")
                                                             for p in ("fp16", "int8")}
    for r in rows:
        assert r["default"] == (r["precision"] == "fp16")
        assert r["median_ms"] is None                       # Core ML cannot be timed off macOS
        if r["precision"] == "int8":
            assert r["size_ratio"] < 1 and r["cosine_min"] >= 0.999
            assert r["passed"] and "cannot be timed" in r["default_decision"]
        else:
            assert r["size_ratio"] == 1
    assert all(a["default"] == (a["precision"] == "fp16") for a in m["artifacts"])
    for r in rows:
        print(f"\n{r['encoder']} {r['precision']}: {r['size_bytes'] / 1e6:.2f} MB (x{r['size_ratio']:.3f}), "
              f"cos {r['cosine_min']:.6f}, default {r['default']}, {r.get('default_decision', '')}")


# ------------------------------------------------------------------------------ small pieces

def test_kmeans_lut():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((512, 300)) * 0.09).astype(np.float16)
    lut, idx = cb._kmeans_lut(w)
    assert lut.shape == (256,) and lut.dtype == np.float16 and idx.dtype == np.uint8 and idx.shape == (w.size,)
    assert np.all(np.diff(lut.astype(np.float64)) >= 0)
    deq = lut[idx].astype(np.float64)
    x = w.reshape(-1).astype(np.float64)
    # every value goes to its nearest palette entry
    nearest = np.abs(x[:, None] - lut.astype(np.float64)[None, :]).min(1)
    np.testing.assert_array_equal(np.abs(deq - x), nearest)
    mse = np.mean((deq - x) ** 2)
    s = np.abs(x).max() / 127                                      # symmetric int8, one scale
    assert mse < 0.5 * np.mean((np.round(x / s) * s - x) ** 2)
    # few distinct values: exact
    small = np.array([0.5, -0.25, 0.5, 1.0, 0.0], np.float16)
    lut, idx = cb._kmeans_lut(small)
    np.testing.assert_array_equal(lut[idx], small)
    # float32 input takes the np.unique path
    lut32, idx32 = cb._kmeans_lut(w.astype(np.float32))
    assert lut32.dtype == np.float32 and np.mean((lut32[idx32] - x) ** 2) <= 1.01 * mse


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(8, 64, 3, padding=1)
        self.fc = nn.Linear(64, 96)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.1

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("ios,ops", [(16, {"constexpr_affine_dequantize", "constexpr_lut_to_dense"}),
                                     (17, {"constexpr_affine_dequantize", "constexpr_lut_to_dense"}),
                                     (18, {"constexpr_blockwise_shift_scale", "constexpr_lut_to_dense"})])
def test_candidate_configs_per_ios(ios, ops, tmp_path):
    """Both candidate configs at each deployment target the backend accepts: the constexpr flavour
    coremltools writes, and the interpreter's result against PyTorch."""
    model = _Tiny().eval()
    x = torch.rand(1, 8, 6, 6)
    with torch.no_grad():
        ref = model(x).numpy()
        ep = torch.export.export(model, (x,)).run_decompositions({})
    ml = ct.convert(ep, inputs=[ct.TensorType(name="x", shape=(1, 8, 6, 6), dtype=np.float32)],
                    outputs=[ct.TensorType(name="y", dtype=np.float32)], convert_to="mlprogram",
                    minimum_deployment_target=getattr(ct.target, f"iOS{ios}"),
                    compute_precision=ct.precision.FLOAT16)
    seen = set()
    for method in cb.INT8_CANDIDATES:
        path = tmp_path / f"{method}.mlpackage"
        cb._compress(ml, method, cb._KMeansLUT()).save(str(path))
        types = set(cb._constexpr_outputs(ct.models.MLModel(str(path), skip_model_load=True).get_spec()).values())
        assert len(types) == 1, types                         # conv 4608 and fc 6144 elements; biases stay fp16
        seen |= types
        got, info = cr.evaluate(path, x.numpy())
        cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
        assert cos > 0.999, (method, ios, cos)
    assert seen == ops


def test_int8_needs_calibration(tmp_path):
    from clipdeploy.export.wrappers import example_input
    from clipdeploy.models import get_spec

    spec = get_spec("mobileclip_s0")
    with pytest.raises(ValueError, match="calibration"):
        CoreMLBackend().export(nn.Identity(), example_input(spec, "text"), "text", "int8",
                               tmp_path / "t.mlpackage", spec, {"calibration": None})


def test_backend_accepts_int8():
    b = CoreMLBackend()
    assert "int8" in b.precisions
    b.check_available("int8")
