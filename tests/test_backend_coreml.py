"""Core ML backend: real coremltools conversions of the fused MobileCLIP encoders (no mocks).

On Linux the packages are checked structurally (spec protobuf + MILBlob weights); prediction is
exercised only on macOS. Each (model, encoder, precision) is converted once per module.
"""
import gc
import sys
import tempfile
import time

import numpy as np
import pytest

from clipdeploy.export.backends.base import BackendUnavailable
from clipdeploy.export.backends.coreml_backend import CoreMLBackend, CoreMLStructureError
from clipdeploy.export.wrappers import encoder as make_encoder, example_input

from conftest import EXPORT_MODELS

import coremltools as ct  # a pinned dependency: a broken install fails here, never skips

_CONVERTED = {}
TIMINGS = {}


@pytest.fixture(scope="module")
def backend():
    return CoreMLBackend()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("coreml")


@pytest.fixture(scope="module")
def converted(backend, workdir, fused_session):
    """converted(name, which, precision, ios=17) -> (ExportResult, spec), once per module."""
    scratch = workdir / "scratch"
    scratch.mkdir()

    def get(name, which, precision, ios=17):
        key = (name, which, precision, ios)
        if key not in _CONVERTED:
            m = fused_session(name)
            wrapper = make_encoder(m.module, m.spec, which)
            out = workdir / f"{name}_{which}_{precision}_ios{ios}.mlpackage"
            # the ImageType variant is converted for S0 fp16 only (it doubles the image conversion time)
            opts = {"ios": ios, "image_type": (name, precision, ios) == ("mobileclip_s0", "fp16", 17)}
            t0 = time.perf_counter()
            # every conversion's scratch goes to one watched folder (test_no_scratch_packages_left)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(tempfile, "tempdir", str(scratch))
                res = backend.export(wrapper, example_input(m.spec, which), which, precision, out, m.spec, opts)
            TIMINGS[key] = round(time.perf_counter() - t0, 1)
            _CONVERTED[key] = (res, m.spec)
        return _CONVERTED[key]
    yield get
    _CONVERTED.clear()   # free this module's models/artifacts before the worker's next file
    gc.collect()


def _expected(spec, which):
    if which == "image":
        inp = {"name": "image", "shape": [1, 3, spec.image_size, spec.image_size], "dtype": "float32"}
    else:
        inp = {"name": "text", "shape": [1, spec.context_length], "dtype": "int32"}
    return [inp], [{"name": "embedding", "shape": [1, spec.embed_dim], "dtype": "float32"}]


@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.parametrize("which", ["image", "text"])
def test_convert_structure(name, which, backend, converted):
    checks, weights = {}, {}
    for precision in ("fp32", "fp16"):
        res, spec = converted(name, which, precision)
        exp_in, exp_out = _expected(spec, which)
        assert res.path.is_dir() and res.path.suffix == ".mlpackage"
        assert res.files[0] == res.path.name
        assert len(res.files) == (2 if (name, which, precision) == ("mobileclip_s0", "image", "fp16") else 1)
        assert res.inputs == exp_in and res.outputs == exp_out
        chk = backend.structural_check(res.path, exp_in, exp_out, precision=precision)
        checks[precision] = chk
        assert chk["model_type"] == "mlProgram" and chk["opset"] == "CoreML7"  # iOS17
        assert chk["specification_version"] == 8
        ops = set(chk["op_types"])
        assert {"reduce_l2_norm", "real_div"} <= ops        # F.normalize at the end
        if which == "text":
            assert "reduce_argmax" in ops and "gather_nd" in ops   # EOT pooling over int32 ids
            assert "softmax" in ops and "layer_norm" in ops
        else:
            assert "conv" in ops
        if precision == "fp16":
            assert "cast" in ops                 # float32 I/O around an fp16 program
        weights[precision] = chk["weight_file_bytes"]
        print(f"\n{name} {which} {precision}: {TIMINGS[(name, which, precision, 17)]}s {res.info['timings']}, "
              f"weights {chk['weight_file_bytes'] / 1e6:.1f} MB, {chk['n_ops']} ops: {chk['op_histogram']}")

    # plausible sizes: at least 4 MB of weights for the smallest tower, fp16 about half of fp32
    assert weights["fp32"] > 4e6
    assert 0.45 < weights["fp16"] / weights["fp32"] < 0.55, weights
    by16, by32 = checks["fp16"]["weight_bytes_by_dtype"], checks["fp32"]["weight_bytes_by_dtype"]
    assert by16.get("float16", 0) > 0.95 * sum(by16.values()), by16
    assert by32.get("float16", 0) == 0 and by32.get("float32", 0) > 0.95 * sum(by32.values()), by32


@pytest.mark.parametrize("name", ["mobileclip_s0", "mobileclip_b"])
def test_metadata(name, converted):
    import importlib.metadata

    for which in ("image", "text"):
        res, spec = converted(name, which, "fp16")
        m = ct.models.MLModel(str(res.path), skip_model_load=True)
        assert m.author == "clipdeploy"
        assert m.license == spec.license
        assert m.version == importlib.metadata.version("clipdeploy")
        assert spec.name in m.short_description and which in m.short_description
        assert m.input_description[which] and m.output_description["embedding"]
        meta = m.user_defined_metadata
        assert meta["model_name"] == spec.name
        assert meta["clipdeploy_version"] == importlib.metadata.version("clipdeploy")
        assert meta["tokenizer"] == spec.tokenizer == "openai-clip-bpe"
        assert meta["context_length"] == "77"
        assert meta["embedding_dim"] == str(spec.embed_dim)
        assert meta["image_size"] == str(spec.image_size)
        assert meta["resize_size"] == str(spec.resize_size)
        assert meta["crop"] == "center" and meta["interpolation"] == spec.interpolation
        assert meta["mean"] == "none" and meta["std"] == "none"   # the Apple models take [0,1] RGB
        assert meta["precision"] == "fp16" and meta["encoder"] == which
        assert meta["minimum_deployment_target"] == "iOS17"
        assert "com.github.apple.coremltools.version" in meta


def test_imagetype_variant(backend, converted):
    res, spec = converted("mobileclip_s0", "image", "fp16")
    assert res.files == [res.path.name, res.path.stem + "_imagetype.mlpackage"]
    it_path = res.path.parent / res.files[1]
    assert it_path.is_dir()
    variant = res.info["image_type_variant"]
    assert variant["file"] == it_path.name and "CVPixelBuffer" in variant["description"]
    exp_in = [{"name": "image", "shape": [1, 3, 256, 256], "dtype": "image", "color_layout": "RGB"}]
    _, exp_out = _expected(spec, "image")
    chk = backend.structural_check(it_path, exp_in, exp_out, precision="fp16")
    assert chk["inputs"] == exp_in and variant["inputs"] == exp_in
    spec_pb = ct.models.MLModel(str(it_path), skip_model_load=True).get_spec()
    it = spec_pb.description.input[0].type.imageType
    assert (it.width, it.height) == (256, 256)
    assert it.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    # the 1/255 scale is in the program; the same weights as the tensor-input package
    assert chk["weight_file_bytes"] == backend.structural_check(
        res.path, *_expected(spec, "image"))["weight_file_bytes"]
    meta = ct.models.MLModel(str(it_path), skip_model_load=True).user_defined_metadata
    assert meta["input_type"] == "image"
    # a multiarray expectation must not pass on the image-input package
    with pytest.raises(CoreMLStructureError, match="dtype image != expected float32"):
        backend.structural_check(it_path, *_expected(spec, "image"))


@pytest.mark.parametrize("ios,opset", [(16, "CoreML6"), (18, "CoreML8")])
def test_other_deployment_targets(ios, opset, backend, converted):
    res, spec = converted("mobileclip_s0", "text", "fp16", ios=ios)
    chk = backend.structural_check(res.path, *_expected(spec, "text"), precision="fp16")
    assert chk["opset"] == opset
    assert res.info["minimum_deployment_target"] == f"iOS{ios}"
    print(f"\nS0 text fp16 iOS{ios}: {TIMINGS[('mobileclip_s0', 'text', 'fp16', ios)]}s, "
          f"spec v{chk['specification_version']}, ops {chk['op_types']}")


def test_structural_check_rejects_mismatch(backend, converted):
    res, spec = converted("mobileclip_s0", "text", "fp32")
    exp_in, exp_out = _expected(spec, "text")
    bad_in = [{**exp_in[0], "shape": [1, 64]}]
    with pytest.raises(CoreMLStructureError, match=r"input 'text' shape \[1, 77\] != expected \[1, 64\]"):
        backend.structural_check(res.path, bad_in, exp_out)
    bad_out = [{**exp_out[0], "shape": [1, 768]}]
    with pytest.raises(CoreMLStructureError, match="output 'embedding' shape"):
        backend.structural_check(res.path, exp_in, bad_out)
    with pytest.raises(CoreMLStructureError, match="names"):
        backend.structural_check(res.path, [{**exp_in[0], "name": "input_ids"}], exp_out)
    with pytest.raises(CoreMLStructureError, match="expected float16"):
        backend.structural_check(res.path, exp_in, exp_out, precision="fp16")


def test_check_available(backend, monkeypatch):
    backend.check_available("fp16")
    backend.check_available("fp32")
    backend.check_available("int8")
    with pytest.raises(BackendUnavailable, match="unknown precision 'int4'"):
        backend.check_available("int4")
    monkeypatch.setattr(ct, "__version__", "7.2")
    with pytest.raises(BackendUnavailable, match=r"coremltools 7.2 is not supported.*pip install"):
        backend.check_available("fp16")


def test_backend_attributes(backend):
    assert backend.name == "coreml" and backend.extension == ".mlpackage"
    assert backend.precisions == ("fp16", "fp32", "int8")
    assert backend.can_run_here == (sys.platform == "darwin")


@pytest.mark.skipif(sys.platform == "darwin", reason="Linux/Windows behaviour of run()")
def test_run_needs_macos(backend, converted):
    res, _ = converted("mobileclip_s0", "text", "fp32")
    with pytest.raises(BackendUnavailable, match="Core ML prediction needs macOS; elsewhere the gate uses reference_run"):
        backend.run(res.path, np.zeros((1, 77), np.int32))


def test_reference_run_reproduces_pytorch_off_macos(backend, converted, fused_session):
    """What the export gate runs for Core ML where predict cannot: the saved package through the
    reference interpreter, row by row, equal to the PyTorch wrapper within the fp32 bar."""
    import torch

    from clipdeploy.models.probe import PROBE_CAPTIONS
    res, spec = converted("mobileclip_s0", "text", "fp32")
    m = fused_session("mobileclip_s0")
    ids = m.tokenize(PROBE_CAPTIONS[:3])
    with torch.no_grad():
        ref = make_encoder(m.module, spec, "text")(ids).numpy()
    got, info = backend.reference_run(res.path, ids.numpy().astype(np.int32))
    assert got.shape == ref.shape == (3, spec.embed_dim)
    assert np.abs(got - ref).max() <= 1e-5                # the fp32 gate
    assert info["opset"] == "CoreML7" and info["program_precision"] == "fp32" and info["ops"] > 100
    assert info["first_nonfinite"] is None and "not Apple's kernels" in info["runtime"]
    assert backend.reference_runtime == info["runtime"]


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML prediction (MLModel.predict) needs macOS")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_prediction_parity_macos(precision, backend, converted, probe_reference):
    from clipdeploy.export import parity

    images, ids, ref_img, ref_txt = probe_reference("mobileclip_s0")
    res_i, _ = converted("mobileclip_s0", "image", precision)
    res_t, _ = converted("mobileclip_s0", "text", precision)
    got_i = backend.run(res_i.path, images)
    got_t = backend.run(res_t.path, ids)
    # Core ML CPU execution is not bit-exact with PyTorch: hold fp32 programs to the fp16 bar
    bar = "fp16"
    parity.check(parity.measure(ref_img, got_i, ref_txt), bar, f"coreml image {precision}")
    parity.check(parity.measure(ref_txt, got_t, ref_img), bar, f"coreml text {precision}")


def test_no_scratch_packages_left(converted, workdir):
    """coremltools writes each converted model to a temp package (as large as the model's weights) it
    deletes only at interpreter exit; the backend's exports must not leave them behind in a long-lived
    process."""
    converted("mobileclip_s0", "text", "fp32")
    assert TIMINGS and (workdir / "scratch").is_dir()
    assert sorted(p.name for p in (workdir / "scratch").iterdir()) == []
