"""ONNX backend: real torch.onnx (dynamo) exports of the fused MobileCLIP encoders, run in ONNX Runtime
(no mocks) and held to the parity gate. Each (model, encoder, precision) is exported once per module.
"""
import gc
import time

import numpy as np
import pytest
import torch
from torch import nn

from clipdeploy.export.backends.base import BackendUnavailable
from clipdeploy.export.backends.onnx_backend import OnnxBackend
from clipdeploy.export.parity import ParityError, check, measure
from clipdeploy.export.wrappers import encoder as make_encoder, example_input

from conftest import EXPORT_MODELS

import onnx  # noqa: E402  (pinned dependencies: fail, never skip)
import onnxruntime as ort  # noqa: E402
import onnx_ir as ir  # noqa: E402

_EXPORTED = {}
TIMINGS = {}
FP16_MODELS = ["mobileclip_s0", "mobileclip_b"]


@pytest.fixture(scope="module")
def backend():
    return OnnxBackend()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def exported(backend, workdir, fused_session, probe_reference):
    """exported(name, which, precision) -> (ExportResult, figures, outputs on the probe batch)."""
    def get(name, which, precision):
        key = (name, which, precision)
        if key not in _EXPORTED:
            m = fused_session(name)
            images, ids, ref_i, ref_t = probe_reference(name)
            wrapper = make_encoder(m.module, m.spec, which)
            out = workdir / f"{name}_{which}_{precision}.onnx"
            t0 = time.perf_counter()
            res = backend.export(wrapper, example_input(m.spec, which), which, precision, out, m.spec)
            TIMINGS[key] = round(time.perf_counter() - t0, 1)
            got = backend.run(res.path, images if which == "image" else ids)
            ref, other = (ref_i, ref_t) if which == "image" else (ref_t, ref_i)
            figs = measure(ref, got, other)
            print(f"\n[onnx] {name} {which} {precision}: export {TIMINGS[key]}s, "
                  f"{res.info['file_size'] / 2**20:.1f} MiB, {res.info['node_count']} nodes, "
                  f"max_abs {figs['max_abs']:.3g}, cos_min {figs['cosine_min']:.7f}")
            _EXPORTED[key] = (res, figs, got)
        return _EXPORTED[key]
    yield get
    _EXPORTED.clear()   # free this module's models/artifacts before the worker's next file
    gc.collect()


def _expected(spec, which):
    if which == "image":
        inp = {"name": "image", "shape": ["batch", 3, spec.image_size, spec.image_size], "dtype": "float32"}
    else:
        inp = {"name": "text", "shape": ["batch", spec.context_length], "dtype": "int32"}
    return [inp], [{"name": "embedding", "shape": ["batch", spec.embed_dim], "dtype": "float32"}]


def _check_structure(res, spec, which):
    assert res.path.exists() and res.files[0] == res.path.name
    for f in res.files:
        assert (res.path.parent / f).exists()
    assert (res.inputs, res.outputs) == _expected(spec, which)
    onnx.checker.check_model(str(res.path))
    model = onnx.load(str(res.path), load_external_data=False)
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opset["ai.onnx"] >= 18 and res.info["opset"] == opset["ai.onnx"]
    assert res.info["node_count"] == len(model.graph.node) == sum(res.info["op_types"].values())
    assert res.info["external_data"] is False and len(res.files) == 1  # S0..B are far below 2 GB
    assert res.info["file_size"] == res.path.stat().st_size
    for key in ("onnx", "onnxruntime", "torch"):
        assert res.info[key]
    # what ONNX Runtime itself sees
    sess = OnnxBackend.session(res.path)
    (i,), (o,) = sess.get_inputs(), sess.get_outputs()
    assert (i.name, i.type, i.shape[0]) == (which, "tensor(float)" if which == "image" else "tensor(int32)",
                                            "batch")
    assert (o.name, o.type, o.shape[0]) == ("embedding", "tensor(float)", "batch")
    return model, sess


def _argmax_inputs_int32(path):
    """EOT pooling: every ArgMax reads int32 ids (never an int64 cast of them)."""
    g = ir.load(str(path)).graph
    argmaxes = [n for n in g.all_nodes() if n.op_type == "ArgMax"] if hasattr(g, "all_nodes") else \
        [n for n in g if n.op_type == "ArgMax"]
    assert argmaxes, "no ArgMax (EOT pooling) in the text graph"
    for n in argmaxes:
        assert n.inputs[0].dtype == ir.DataType.INT32, (n.name, n.inputs[0].dtype)


@pytest.mark.parametrize("name", EXPORT_MODELS)
@pytest.mark.parametrize("which", ["image", "text"])
def test_fp32_export_passes_parity(name, which, exported, fused_session, probe_reference):
    res, figs, got = exported(name, which, "fp32")
    spec = fused_session(name).spec
    model, sess = _check_structure(res, spec, which)
    assert res.info["precision"] == "fp32"
    # the parity gate, and the figures directly
    checked = check(figs, "fp32", f"{name} {which} fp32")
    assert checked["passed"]
    assert figs["finite"] and figs["max_abs"] <= 1e-5 and figs["zero_shot_agreement"] == 1.0
    assert figs["cosine_min"] > 1 - 1e-9
    assert got.dtype == np.float32 and got.shape == (6 if which == "image" else 8, spec.embed_dim)
    # dynamic batch: every row run alone gives the same row as the whole batch
    images, ids, _, _ = probe_reference(name)
    x = images if which == "image" else ids
    rows = np.concatenate([sess.run(None, {which: x[k:k + 1]})[0] for k in range(len(x))])
    np.testing.assert_allclose(rows, got, rtol=0, atol=2e-6)
    assert np.abs(OnnxBackend().run(res.path, x[:3]) - got[:3]).max() <= 2e-6
    if which == "text":
        _argmax_inputs_int32(res.path)
        assert res.info["int64_argmax_casts_removed"] == 0
        # int64 ids are cast to the model's int32 input by run()
        assert np.abs(OnnxBackend().run(res.path, x[:2].astype(np.int64)) - got[:2]).max() <= 2e-6


@pytest.mark.parametrize("name", FP16_MODELS)
@pytest.mark.parametrize("which", ["image", "text"])
def test_fp16_export_passes_parity(name, which, exported, fused_session):
    res, figs, got = exported(name, which, "fp16")
    res32, _, _ = exported(name, which, "fp32")
    spec = fused_session(name).spec
    model, _ = _check_structure(res, spec, which)  # float32 / int32 boundary kept
    assert res.info["precision"] == "fp16" and res.info["fp16_converter"]
    # the weights are fp16 (about half the fp32 file) and the compute is fp16 inside
    assert res.info["file_size"] < 0.6 * res32.info["file_size"]
    floats = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT,
                                                                      onnx.TensorProto.FLOAT16)]
    big16 = sum(int(np.prod(t.dims)) for t in floats if t.data_type == onnx.TensorProto.FLOAT16)
    big32 = sum(int(np.prod(t.dims)) for t in floats if t.data_type == onnx.TensorProto.FLOAT)
    assert big16 > 100 * max(big32, 1)
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    n_ln = res32.info["op_types"].get("LayerNormalization", 0) if which == "text" else 0
    assert len(casts) <= res32.info["op_types"].get("Cast", 0) + 2 + 4 * n_ln  # in, out, weight, bias
    # the first attempt loads in a default ONNX Runtime session (no fall-back of the ORT 1.32 optimizer
    # crash work-around needed); text towers keep their LayerNorms in float32 (the default mix)
    attempts = res.info["fp16_attempts"]
    assert attempts[-1]["ort_loads"] is True and len(attempts) == 1
    kept = res.info["fp16_kept_fp32"]
    assert kept["nodes"] == [] and kept["ops"] == ([] if which == "image" else ["LayerNormalization"])
    lns = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    if which == "text":  # the text towers' LayerNorms read float32 (a Cast in front of each)
        producers = {o: n for n in model.graph.node for o in n.output}
        assert lns and all(producers[n.input[0]].op_type == "Cast" for n in lns)
    check(figs, "fp16", f"{name} {which} fp16")
    assert figs["finite"] and figs["cosine_min"] >= 0.99995 and figs["max_abs"] <= 1.5e-3
    assert figs["zero_shot_agreement"] == 1.0
    assert figs["max_abs"] > 0  # it really is not the fp32 graph
    if which == "text":
        _argmax_inputs_int32(res.path)


def test_fp16_text_in_true_fp16_arithmetic(exported, probe_reference):
    """ONNX Runtime's CPU provider runs most fp16 nodes in float32 (it inserts Casts where MLAS has no
    fp16 kernel), so the parity gate above is optimistic for GPU / NPU providers that really compute
    in fp16. Evaluate the S0 fp16 text artifact with onnx's numpy reference evaluator instead, every op
    in fp16 (LayerNormalization statistics in float32, as its stash_type=1 demands): no overflow, and
    the figures stay close to the fp16 gate (about 50 s on 2 cores)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_layer_normalization import LayerNormalization as _LN

    class LayerNormalization(_LN):  # numpy's reference ignores stash_type: statistics in float32
        op_domain = ""

        def _run(self, X, Scale, B=None, axis=None, epsilon=None, stash_type=None):
            f = np.float32
            r = super()._run(X.astype(f), Scale.astype(f), None if B is None else B.astype(f),
                             axis=axis, epsilon=epsilon, stash_type=stash_type)
            return (r[0].astype(X.dtype),) + tuple(r[1:])

    name = "mobileclip_s0"
    res, _, _ = exported(name, "text", "fp16")
    images, ids, ref_i, ref_t = probe_reference(name)
    ev = ReferenceEvaluator(onnx.load(str(res.path)), new_ops=[LayerNormalization])
    with np.errstate(over="raise", invalid="raise"):
        got = ev.run(None, {"text": ids})[0]
    figs = measure(ref_t, got, ref_i)
    print(f"\n[onnx] {name} text fp16, numpy reference evaluator (true fp16): max_abs "
          f"{figs['max_abs']:.3g}, cos_min {figs['cosine_min']:.7f}, zero-shot {figs['zero_shot_agreement']}")
    assert figs["finite"] and figs["zero_shot_agreement"] == 1.0
    assert figs["cosine_min"] >= 0.9995 and figs["max_abs"] <= 5e-3


def test_perturbed_weight_fails_the_gate(exported, probe_reference, workdir):
    """Scale the largest weight initializer of a saved fp32 model by 1.01: the gate must bite."""
    name = "mobileclip_s0"
    res, figs, _ = exported(name, "text", "fp32")
    check(figs, "fp32")
    model = onnx.load(str(res.path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = onnx.numpy_helper.to_array(init)
    init.CopyFrom(onnx.numpy_helper.from_array((arr * np.float32(1.01)).astype(arr.dtype), init.name))
    bad = workdir / "perturbed_text.onnx"
    onnx.save_model(model, str(bad))
    images, ids, ref_i, ref_t = probe_reference(name)
    bad_figs = measure(ref_t, OnnxBackend().run(bad, ids), ref_i)
    assert bad_figs["max_abs"] > 1e-5
    with pytest.raises(ParityError) as e:
        check(bad_figs, "fp32", "perturbed")
    assert "max abs error" in str(e.value)


class _ToyText(nn.Module):
    """A tiny text tower with EOT pooling over an int64 cast of the ids (the classic failure)."""

    def __init__(self, cast_to_int64: bool):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Parameter(torch.randn(1000, 16, generator=g))
        self.proj = nn.Parameter(torch.randn(16, 8, generator=g))
        self.cast_to_int64 = cast_to_int64

    def forward(self, text):
        x = self.emb[text.long()]
        ids = text.long() if self.cast_to_int64 else text
        x = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
        return torch.nn.functional.normalize(x @ self.proj, dim=-1)


@pytest.mark.parametrize("cast_to_int64", [False, True])
def test_toy_text_int32_argmax_and_external_data(backend, tmp_path, cast_to_int64):
    toy = _ToyText(cast_to_int64).eval()
    ids = torch.randint(1, 999, (5, 77), dtype=torch.int32)
    ids[:, 10] = 999
    res = backend.export(toy, ids[:1], "text", "fp32", tmp_path / "toy.onnx", None,
                         {"external_data": True})
    assert res.files == ["toy.onnx", "toy.onnx.data"] and res.info["external_data"] is True
    assert (tmp_path / "toy.onnx.data").stat().st_size > 1000 * 16 * 4
    onnx.checker.check_model(str(res.path))
    _argmax_inputs_int32(res.path)
    assert (res.info["int64_argmax_casts_removed"] > 0) == cast_to_int64
    with torch.no_grad():
        ref = toy(ids).numpy()
    got = backend.run(res.path, ids.numpy())
    assert np.abs(got - ref).max() <= 1e-6
    np.testing.assert_allclose(backend.run(res.path, ids[3:4].numpy()), got[3:4], atol=1e-7, rtol=0)


def test_check_available(backend):
    backend.check_available("fp32")
    backend.check_available("fp16")
    backend.check_available("int8")
    with pytest.raises(BackendUnavailable, match="bf16"):
        backend.check_available("bf16")
    assert (backend.name, backend.extension, backend.precisions) == ("onnx", ".onnx", ("fp32", "fp16", "int8"))
