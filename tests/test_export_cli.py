"""clip-export end to end: the bundle, its manifest, the gate, and bad input."""
import json
import sys

import numpy as np
import onnx
import pytest

from clipdeploy.export import targets as targets_mod
from clipdeploy.export.cli import main
from clipdeploy.export.parity import ParityError
from clipdeploy.export.pipeline import export_bundle


@pytest.fixture(scope="module")
def s0_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "mobileclip_s0"
    rc = main(["--model", "mobileclip_s0", "--target", "all", "--random-weights", "0",
               "--out", str(out)])
    assert rc == 0
    return out


def test_target_all_writes_a_verified_bundle(s0_bundle):
    m = json.loads((s0_bundle / "manifest.json").read_text())
    assert m["model"] == "mobileclip_s0" and m["schema_version"] == 1
    assert m["checkpoint_sha256"] is None or len(m["checkpoint_sha256"]) == 64
    assert m["spec"]["image_size"] == 256 and m["embedding_dim"] == 512
    assert m["reparam"]["batchnorm"]["after"] == 0
    assert m["versions"]["torch"] == "2.14.1"
    got = {(a["target"], a["precision"], a["encoder"]) for a in m["artifacts"]}
    assert got == {(t, p, e) for t, p in (("coreml", "fp16"), ("onnx", "fp32"), ("executorch", "fp32"))
                   for e in ("image", "text")}
    for a in m["artifacts"]:
        assert (s0_bundle / a["path"]).exists()
        assert a["inputs"][0]["name"] == ("image" if a["encoder"] == "image" else "text")
        assert a["outputs"][0]["name"] == "embedding"
        if a["target"] == "coreml" and sys.platform != "darwin":
            assert a["parity"]["checked"] == "structural"
        else:
            p = a["parity"]
            assert p["checked"] == "numeric" and p["passed"]
            assert p["max_abs"] <= 1e-5 and p["zero_shot_agreement"] == 1.0 and p["cosine_min"] > 0.99999
    text = [a for a in m["artifacts"] if a["encoder"] == "text"]
    assert all(a["inputs"][0]["dtype"] == "int32" for a in text)
    assert not list(s0_bundle.parent.glob(".*partial"))


def test_bundle_carries_probe_and_tokenizer(s0_bundle):
    ref = np.load(s0_bundle / "probe" / "image_embeddings.npy")
    ids = np.load(s0_bundle / "probe" / "token_ids.npy")
    assert ref.shape == (6, 512) and ids.dtype == np.int32 and ids.shape == (8, 77)
    assert np.allclose(np.linalg.norm(ref, axis=1), 1, atol=1e-5)
    assert len(list((s0_bundle / "probe").glob("image_*.png"))) == 6
    vocab = json.loads((s0_bundle / "tokenizer" / "vocab.json").read_text())
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    merges = (s0_bundle / "tokenizer" / "merges.txt").read_text().splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 48894
    card = (s0_bundle / "README.md").read_text()
    assert "Swift" in card and "Kotlin" in card and "onnxruntime" in card


def test_onnx_artifact_in_bundle_reproduces_probe_reference(s0_bundle):
    import onnxruntime as ort
    ref = np.load(s0_bundle / "probe" / "text_embeddings.npy")
    ids = np.load(s0_bundle / "probe" / "token_ids.npy")
    sess = ort.InferenceSession(str(s0_bundle / "onnx-fp32" / "text_encoder.onnx"),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {"text": ids})[0]
    assert np.abs(got - ref).max() <= 1e-5


def test_perturbed_artifact_fails_the_gate_and_nothing_is_written(tmp_path, monkeypatch):
    from clipdeploy.export.backends.onnx_backend import OnnxBackend
    original = OnnxBackend.export

    def export_then_perturb(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        model = onnx.load(str(result.path))
        biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        arr = onnx.numpy_helper.to_array(biggest) * 1.01
        biggest.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), biggest.name))
        onnx.save(model, str(result.path))
        return result

    monkeypatch.setattr(OnnxBackend, "export", export_then_perturb)
    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match="failed the parity gate"):
        export_bundle("mobileclip_s0", ["onnx"], random_weights=0, out=out, log=lambda *a: None)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def _one_line_error(capsys, argv, *needles, rc=2):
    assert main(argv) == rc
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_input(capsys, tmp_path):
    base = ["--model", "mobileclip_s0", "--random-weights", "0"]
    _one_line_error(capsys, base + ["--target", "onxx", "--out", str(tmp_path / "a")],
                    "unknown target 'onxx'", "did you mean onnx")
    _one_line_error(capsys, base + ["--target", "executorch", "--precision", "fp16", "--out", str(tmp_path / "a")],
                    "cannot write fp16", "executorch")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, base + ["--target", "onnx", "--out", str(blocker / "sub")], "cannot write to --out")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    _one_line_error(capsys, base + ["--target", "onnx", "--out", str(full)], "not empty", "--force")
    assert (full / "keep.txt").exists()
    _one_line_error(capsys, base + ["--target", "coreml", "--ios", "15", "--out", str(tmp_path / "a")],
                    "--ios 15")
    _one_line_error(capsys, ["--model", "mobileclip_s7", "--target", "onnx"], "unknown model")


def test_coreml_on_an_unsupported_coremltools_is_refused(capsys, tmp_path, monkeypatch):
    import coremltools
    monkeypatch.setattr(coremltools, "__version__", "6.3")
    _one_line_error(capsys, ["--model", "mobileclip_s0", "--random-weights", "0", "--target", "coreml",
                             "--out", str(tmp_path / "a")], "coremltools")


def test_force_replaces_an_existing_bundle(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "old.txt").write_text("x")
    m = export_bundle("mobileclip_s0", ["onnx"], random_weights=0, out=out, force=True, log=lambda *a: None)
    assert not (out / "old.txt").exists() and (out / "onnx-fp32" / "image_encoder.onnx").exists()
    assert [a["target"] for a in m["artifacts"]] == ["onnx", "onnx"]
