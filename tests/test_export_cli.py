"""clip-export end to end: the bundle, its manifest, the gate, and bad input."""
import json
import os
import shutil
import sys

import numpy as np
import onnx
import pytest

from clipdeploy.export import targets as targets_mod
from clipdeploy.export.cli import main
from clipdeploy.export.parity import ParityError
from clipdeploy.export.pipeline import export_bundle


S0_LABELS = ["dog", "cat", "sports car", "crème brûlée", "airplane"]


@pytest.fixture(scope="module")
def s0_bundle(tmp_path_factory):
    """``clip-export --model mobileclip_s0 --target all --classifier labels.txt`` (the default templates: the
    CLIP paper's 80): every encoder and every classifier artifact through its gate."""
    d = tmp_path_factory.mktemp("bundles")
    out = d / "mobileclip_s0"
    (d / "labels.txt").write_text("\n".join(S0_LABELS) + "\n", encoding="utf-8")
    rc = main(["--model", "mobileclip_s0", "--target", "all", "--random-weights", "0",
               "--out", str(out), "--classifier", str(d / "labels.txt")])
    assert rc == 0
    return out


def test_target_all_writes_a_verified_bundle(s0_bundle):
    m = json.loads((s0_bundle / "manifest.json").read_text())
    assert m["model"] == "mobileclip_s0" and m["schema_version"] == 2
    assert m["checkpoint_sha256"] is None or len(m["checkpoint_sha256"]) == 64
    assert m["spec"]["image_size"] == 256 and m["embedding_dim"] == 512
    assert m["reparam"]["batchnorm"]["after"] == 0
    assert m["versions"]["torch"] == "2.14.1"
    got = {(a["target"], a["precision"], a["encoder"]) for a in m["artifacts"]}
    assert got == {(t, p, e) for t, p in (("coreml", "fp16"), ("onnx", "fp32"), ("executorch", "fp32"),
                                          ("litert", "fp32")) for e in ("image", "text", "classifier")}
    for a in m["artifacts"]:
        if a["encoder"] == "classifier":
            continue                                   # test_s0_classifier_artifacts_pass_their_gates
        assert (s0_bundle / a["path"]).exists()
        assert a["inputs"][0]["name"] == ("image" if a["encoder"] == "image" else "text")
        assert a["outputs"][0]["name"] == "embedding"
        p = a["parity"]
        if a["target"] == "coreml" and sys.platform != "darwin":
            # off macOS: structure, then the Core ML reference interpreter at the fp16 bars
            assert p["checked"] == "reference-interpreter" and p["passed"] and p["structure"]["opset"]
            assert "not Apple's kernels" in p["runtime"]
            variants = [p] + ([p["image_type_variant"]] if a["encoder"] == "image" else [])
            for v in variants:
                assert 1e-5 < v["max_abs"] <= 1.5e-3 and v["cosine_min"] >= 0.99995   # fp16 is emulated
                assert v["zero_shot_agreement"] == 1.0 and v["interpreter"]["first_nonfinite"] is None
            # fp16 is held to its bars on the validation set too (32 images, 64 captions never shipped)
            v = p["validation"]
            assert v["checked"] == "reference-interpreter" and v["passed"] and v["rows_below_cosine"] == 0
            assert v["n"] == (32 if a["encoder"] == "image" else 64) and v["n_other"] == (64 if a["encoder"] == "image" else 32)
            assert v["max_abs"] <= 1.5e-3 and v["cosine_min"] >= 0.99995
            assert v["zero_shot_agreement"] >= 0.95 and v["retrieval_agreement"] >= 0.95
        else:
            assert p["checked"] == "numeric" and p["passed"]
            assert p["max_abs"] <= 1e-5 and p["zero_shot_agreement"] == 1.0 and p["cosine_min"] > 0.99999
        if a["precision"] == "fp32":              # fp32: 1e-5 on the validation set as well
            v = p["validation"]
            assert v["checked"] == "numeric" and v["passed"] and v["max_abs"] <= 1e-5, v
    assert m["validation"]["images"] == 32 and m["validation"]["captions"] == 64 and m["validation"]["seed"] == 0
    assert m["calibration"]["seed"] == 1 and m["validation"]["shipped"] is False
    assert not (s0_bundle / "validation").exists()
    text = [a for a in m["artifacts"] if a["encoder"] == "text"]
    assert all(a["inputs"][0]["dtype"] == "int32" for a in text)
    assert not list(s0_bundle.parent.glob(".*partial"))


def test_s0_classifier_artifacts_pass_their_gates(s0_bundle):
    """Issue 23: one image -> logits artifact per target, gated on its logits against PyTorch on the probe
    images (max abs in logit_scale units, top-1) and the validation images; the Core ML one off macOS through
    the reference interpreter (fp16 emulated), its ImageType variant too."""
    m = json.loads((s0_bundle / "manifest.json").read_text())
    c = m["classifier"]
    assert c["labels"] == S0_LABELS and c["template_source"] == "openai" and len(c["templates"]) == 80
    assert c["logit_scale"] == m["logit_scale"] and c["class_embeddings"] == "classifier/class_embeddings.npy"
    classes = np.load(s0_bundle / c["class_embeddings"])
    assert classes.shape == (5, 512) and np.allclose(np.linalg.norm(classes, axis=1), 1, atol=1e-6)
    arts = {a["target"]: a for a in m["artifacts"] if a["encoder"] == "classifier"}
    assert set(arts) == {"coreml", "onnx", "executorch", "litert"}
    for t, a in arts.items():
        assert a["inputs"][0]["name"] == "image" and a["outputs"][0]["name"] == "logits", a
        assert a["outputs"][0]["shape"][-1] == 5 and a["default"] is True and a["classes"] == 5
        p = a["parity"]
        assert p["passed"] and p["n"] == 6 and p["top1_agreement"] == 1.0 and p["validation"]["n"] == 32
        assert p["validation"]["passed"] and p["validation"]["top1_agreement"] >= 0.95
        assert p["reference_top1_labels"] >= 2               # the probe images are not all one label
        if t == "coreml" and sys.platform != "darwin":
            assert p["checked"] == "reference-interpreter" and p["structure"]["opset"]
            assert p["max_abs_cosine_units"] <= 1e-2 and p["image_type_variant"]["top1_agreement"] == 1.0
        else:
            assert p["checked"] == "numeric" and p["max_abs_cosine_units"] <= 2e-5, (t, p)
        assert f"{a['path']}" in m["integrity"]["files"] or any(f.startswith(a["path"] + "/")
                                                                for f in m["integrity"]["files"])
    rows = {r["target"]: r for r in c["comparison"]}
    for t in ("onnx", "executorch", "litert"):
        assert rows[t]["top1_agreement"] == 1.0 and rows[t]["classifier_median_ms"] > 0, rows[t]
    assert "## Zero-shot classifier" in (s0_bundle / "README.md").read_text()


def test_s0_onnx_classifier_equals_pytorch_from_the_manifest(s0_bundle):
    """The ONNX classifier's logits = logit_scale x image embedding . class embeddings, with PyTorch computing
    both from the manifest's own labels and templates (not from the bundle's stored matrix)."""
    import onnxruntime as ort
    import torch
    from test_classifier import _by_hand      # the prompt ensemble by hand, one definition

    from clipdeploy.export.wrappers import encoder
    from clipdeploy.models import load_model
    from clipdeploy.reparam import to_inference_form
    m = json.loads((s0_bundle / "manifest.json").read_text())
    c = m["classifier"]
    model = load_model("mobileclip_s0", random_weights=0)
    module = to_inference_form(model.module).eval()
    text, image = encoder(module, model.spec, "text"), encoder(module, model.spec, "image")
    classes = _by_hand(text, model.tokenize, c["labels"], c["templates"])
    with torch.no_grad():
        x = np.load(s0_bundle / "probe" / "images.npy")
        emb = image(torch.from_numpy(x)).double().numpy()
    want = c["logit_scale"] * emb @ classes.T
    sess = ort.InferenceSession(str(s0_bundle / "onnx-fp32" / "classifier.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(["logits"], {"image": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.abs(got - want).max() / c["logit_scale"] < 2e-5
    assert np.array_equal(got.argmax(-1), want.argmax(-1)) and len(set(want.argmax(-1))) >= 2


@pytest.mark.parametrize("target", ["onnx", "executorch"])
def test_s0_image_artifacts_take_batch_4(s0_bundle, target):
    from shapecheck import image_rows_equal_batch1
    image_rows_equal_batch1(s0_bundle, target)


def test_s0_text_keeps_77_tokens_and_says_why(s0_bundle):
    m = json.loads((s0_bundle / "manifest.json").read_text())
    assert m["text_causality"]["causal"] is False
    for a in m["artifacts"]:
        if a["encoder"] == "text":
            assert a["shapes"]["length"] == {"kind": "fixed", "values": [77], "reason": a["shapes"]["length"]["reason"]}
            assert "77 positions" in a["shapes"]["length"]["reason"] or "static shapes" in a["shapes"]["length"]["reason"]


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
    tok = json.loads((s0_bundle / "manifest.json").read_text())["tokenizer"]
    for key in ("config", "vocab", "merges", "bpe"):             # the paths the apps open
        assert (s0_bundle / tok[key]).is_file(), key
    assert tok["merges_count"] == 48894
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


def _perturb_largest_blob(pkg, factor):
    """Scale the largest float weight blob (fp16 or fp32) of a saved .mlpackage in place."""
    import struct

    from clipdeploy.latency.milblob import WEIGHTS_REL
    wf = pkg / WEIGHTS_REL
    data = bytearray(wf.read_bytes())
    count, off, best = struct.unpack_from("<I", data, 0)[0], 64, None
    for _ in range(count):
        _, dtype, size, start = struct.unpack_from("<IIQQ", data, off)
        if dtype in (1, 2) and (best is None or size > best[1]):
            best = (start, size, np.float16 if dtype == 1 else np.float32)
        off = (start + size + 63) // 64 * 64
    start, size, dt = best
    w = np.frombuffer(bytes(data[start:start + size]), dt) * dt(factor)
    data[start:start + size] = w.astype(dt).tobytes()
    wf.write_bytes(bytes(data))


def test_coreml_gate_catches_a_perturbed_weight_off_macos(tmp_path, monkeypatch):
    """The Core ML gate is numeric on Linux too: one weight blob x1.01 in the saved package fails it."""
    from clipdeploy.export.backends.coreml_backend import CoreMLBackend
    original = CoreMLBackend.export

    def export_then_perturb(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        _perturb_largest_blob(result.path, 1.01)
        return result

    monkeypatch.setattr(CoreMLBackend, "export", export_then_perturb)
    out = tmp_path / "bundle"
    with pytest.raises(ParityError, match=r"coreml-fp32/image_encoder.mlpackage failed the parity gate: "
                                          r"max abs error .* > 1e-05"):
        export_bundle("mobileclip_s0", ["coreml"], precision="fp32", random_weights=0, out=out,
                      log=lambda *a: None)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_latency_verify_runs_the_interpreter_on_a_bundle(s0_bundle, tmp_path, capsys):
    """clip-latency verify: every Core ML package of the bundle (with the ImageType variant) through the
    reference interpreter; figures equal the export gate's; a perturbed package fails naming itself."""
    import shutil

    from clipdeploy.latency.cli import main as latency

    out = tmp_path / "verify.json"
    assert latency(["verify", str(s0_bundle), "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "not Apple's Core ML kernels" in printed and "all 5 passed" in printed
    res = json.loads(out.read_text())
    got = {r["artifact"]: r for r in res["records"]}
    assert set(got) == {"coreml-fp16/image_encoder.mlpackage", "coreml-fp16/image_encoder_imagetype.mlpackage",
                        "coreml-fp16/text_encoder.mlpackage", "coreml-fp16/classifier.mlpackage",
                        "coreml-fp16/classifier_imagetype.mlpackage"}
    man = {a["path"]: a["parity"] for a in json.loads((s0_bundle / "manifest.json").read_text())["artifacts"]}
    for path, r in got.items():
        assert r["passed"] and r["opset"] == "CoreML7" and r["program_precision"] == "fp16"
        if "classifier" in path:        # logits against logit_scale x probe image embeddings @ class matrix
            assert r["encoder"] == "classifier" and r["top1_agreement"] == 1.0
            assert 0 < r["max_abs_cosine_units"] <= 1e-2 and r["thresholds"]["top1_agreement"] == 1.0
            exp = man.get(path) or man["coreml-fp16/classifier.mlpackage"]["image_type_variant"]
            assert r["max_abs"] == pytest.approx(exp["max_abs"], rel=0.05)
            continue
        assert 1e-5 < r["max_abs"] <= 1.5e-3 and r["cosine_min"] >= 0.99995 and r["zero_shot_agreement"] == 1.0
        exp = man.get(path) or man["coreml-fp16/image_encoder.mlpackage"]["image_type_variant"]
        assert r["max_abs"] == pytest.approx(exp["max_abs"], rel=1e-6)

    from clipdeploy.latency.milblob import WEIGHTS_REL
    bad = _linked_copy(s0_bundle, tmp_path / "bad")
    _own(bad / "coreml-fp16" / "text_encoder.mlpackage" / WEIGHTS_REL)      # not the fixture's file
    _perturb_largest_blob(bad / "coreml-fp16" / "text_encoder.mlpackage", -1.0)
    assert latency(["verify", str(bad), "--encoder", "text", "--quiet"]) == 2      # its digests say no
    assert "text_encoder.mlpackage/Data/com.apple.CoreML/weights/weight.bin does not match" in capsys.readouterr().err
    _rerecord(bad, drop=("onnx", "executorch", "litert"))   # a manifest rewritten over it: the numbers say no
    assert latency(["verify", str(bad), "--encoder", "text", "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "coreml-fp16/text_encoder.mlpackage" in printed and "FAILED" in printed and "1 of 1 failed" in printed

    empty = tmp_path / "no_coreml"
    shutil.copytree(s0_bundle, empty, ignore=shutil.ignore_patterns("coreml-*"))
    _rerecord(empty, drop=("coreml",))
    assert latency(["verify", str(empty)]) == 2
    err = capsys.readouterr().err
    assert [l for l in err.splitlines() if l.startswith("error:")] == [
        f"error: {empty} has no Core ML artifacts to verify; export them with clip-export --target coreml"]


def _rerecord(bundle, drop=()):
    """The manifest of a bundle edited on purpose: artifacts of ``drop`` targets removed, integrity
    record rewritten over what is on disk now."""
    from clipdeploy.latency import integrity
    man = json.loads((bundle / "manifest.json").read_text())
    man["artifacts"] = [a for a in man["artifacts"] if a["target"] not in drop]
    man["integrity"] = integrity.record(bundle)
    (bundle / "manifest.json").unlink()                     # a linked copy's manifest is the original's file
    (bundle / "manifest.json").write_text(json.dumps(man))


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
    # a small model: what is tested is --force, not the export (S0 took 40 s here)
    m = export_bundle("tinyclip_vit_8m_16_text_3m", ["onnx"], random_weights=0, out=out, force=True,
                      log=lambda *a: None)
    assert not (out / "old.txt").exists() and (out / "onnx-fp32" / "image_encoder.onnx").exists()
    assert [a["target"] for a in m["artifacts"]] == ["onnx", "onnx"]


def test_jvm_core_reads_a_real_bundle(s0_bundle, jvm_classes, tmp_path):
    """The apps' core on what clip-export wrote: its tokenizer (from the bundle's tokenizer files) gives the
    probe's token ids, and its benchmark + report writer list every artifact (none runs on a plain JVM)."""
    import subprocess

    from clipdeploy.latency.report import validate_report
    captions = json.loads((s0_bundle / "probe" / "captions.json").read_text())
    r = subprocess.run(["java", "-cp", str(jvm_classes), "org.clipdeploy.core.TokenizeTool",
                        str(s0_bundle / "tokenizer")], input=json.dumps(captions), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.array_equal(np.array(json.loads(r.stdout), dtype=np.int32), np.load(s0_bundle / "probe" / "token_ids.npy"))
    report = tmp_path / "r.json"
    r = subprocess.run(["java", "-cp", str(jvm_classes), "org.clipdeploy.core.ReportTool", str(s0_bundle),
                        str(report), "3", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = validate_report(json.loads(report.read_text()))
    m = json.loads((s0_bundle / "manifest.json").read_text())
    assert rep["bundle"]["model"] == "mobileclip_s0" and rep["bundle"]["manifest_created"] == m["created"]
    assert sorted(x["artifact"] for x in rep["records"]) == sorted(a["path"] for a in m["artifacts"])
    assert all(x["status"] == "skipped" and "not requested" in x["reason"] for x in rep["records"])
    runtimes = {x["artifact"].split("/")[0]: x["runtime"] for x in rep["records"]}
    assert runtimes["onnx-fp32"] == "onnxruntime" and runtimes["executorch-fp32"] == "executorch"


# ---------------------------------------------------------------------------------------------------
# the exported bundle is untrusted input to clip-latency (issue 22): each case refused with exit 2 and
# one line before anything is loaded or measured (no report written, no worker started)

def test_the_export_records_every_file_it_wrote(s0_bundle):
    import hashlib
    m = json.loads((s0_bundle / "manifest.json").read_text())
    files = m["integrity"]["files"]
    on_disk = sorted(p.relative_to(s0_bundle).as_posix() for p in s0_bundle.rglob("*") if p.is_file())
    assert sorted(files) == [f for f in on_disk if f != "manifest.json"]
    pkg = [f for f in files if ".mlpackage/" in f]
    assert any(f.endswith("weight.bin") for f in pkg) and any(f.endswith("model.mlmodel") for f in pkg)
    assert "README.md" in files and "tokenizer/vocab.json" in files and "probe/images.npy" in files
    for rel in ("onnx-fp32/image_encoder.onnx", "probe/token_ids.npy"):
        assert files[rel]["sha256"] == hashlib.sha256((s0_bundle / rel).read_bytes()).hexdigest()


def _linked_copy(src, dest):
    """A copy made of hard links (cheap); a file about to be changed is unlinked and copied first."""
    shutil.copytree(src, dest, copy_function=os.link)
    return dest


def _own(p):
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data)
    return p


def _flip_near_end(p):
    _own(p)
    data = bytearray(p.read_bytes())
    data[len(data) - 64] ^= 0x01
    p.write_bytes(bytes(data))


def _mlpackage_weight(b):
    return next((b / "coreml-fp16" / "image_encoder.mlpackage").rglob("weight.bin"))


def _edit_manifest(b, fn):
    mp = _own(b / "manifest.json")
    m = json.loads(mp.read_text())
    fn(m)
    mp.write_text(json.dumps(m))


def _path_out(b):
    shutil.copy(b / "onnx-fp32" / "image_encoder.onnx", b.parent / "outside.onnx")

    def fn(m):
        a = next(a for a in m["artifacts"] if a["path"] == "onnx-fp32/image_encoder.onnx")
        a["path"], a["files"] = "../outside.onnx", ["../outside.onnx"]
    _edit_manifest(b, fn)


def _absolute(b):
    def fn(m):
        a = next(a for a in m["artifacts"] if a["path"] == "executorch-fp32/image_encoder.pte")
        a["path"] = a["files"][0] = str((b / a["path"]).resolve())
    _edit_manifest(b, fn)


def _symlink_out(b):
    target = b.parent / "elsewhere.onnx"
    shutil.copy(b / "onnx-fp32" / "text_encoder.onnx", target)       # the very bytes: same digest
    (b / "onnx-fp32" / "text_encoder.onnx").unlink()
    os.symlink(target, b / "onnx-fp32" / "text_encoder.onnx")


def _truncate_probe(b):
    p = _own(b / "probe" / "images.npy")
    p.write_bytes(p.read_bytes()[:-4096])


def _not_json(b):
    _own(b / "manifest.json").write_text('{"schema_version": 2, "model": "mobileclip_s0", "artifacts": [')


def _unlisted_in_mlpackage(b):
    (_mlpackage_weight(b).parent / "extra.bin").write_bytes(b"\0" * 128)


TAMPER = {
    "onnx": (lambda b: _flip_near_end(b / "onnx-fp32" / "image_encoder.onnx"),
             "onnx-fp32/image_encoder.onnx does not match the manifest (sha256"),
    "pte": (lambda b: _flip_near_end(b / "executorch-fp32" / "text_encoder.pte"),
            "executorch-fp32/text_encoder.pte does not match the manifest (sha256"),
    "mlpackage-file": (lambda b: _flip_near_end(_mlpackage_weight(b)), "weight.bin does not match the manifest"),
    "mlpackage-unlisted": (_unlisted_in_mlpackage, "extra.bin is not in the manifest's integrity record"),
    "path-out": (_path_out, "manifest path '../outside.onnx' contains '..'"),
    "absolute": (_absolute, "is absolute"),
    "symlink-out": (_symlink_out, "'onnx-fp32/text_encoder.onnx' resolves outside the bundle"),
    "truncated-probe": (_truncate_probe, "is incomplete: probe/images.npy is"),
    "not-json": (_not_json, "manifest.json: not JSON"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_clip_latency_refuses_a_tampered_bundle_before_measuring(s0_bundle, tmp_path, capsys, case):
    from clipdeploy.latency.cli import main as latency_main
    b = _linked_copy(s0_bundle, tmp_path / "mobileclip_s0")
    tamper, expect = TAMPER[case]
    tamper(b)
    report = tmp_path / "now.json"
    capsys.readouterr()
    rc = latency_main(["run", str(b), "--runs", "3", "--processes", "1", "--json", str(report)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert not report.exists() and "Traceback" not in err
    if case.startswith(("mlpackage", "not-json")):                 # the Core ML checker refuses it as well
        rc = latency_main(["verify", str(b)])
        err = capsys.readouterr().err
        assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err


def test_integrity_check_of_the_s0_bundle_is_cached(s0_bundle, tmp_path):
    """Hashing every file once, then the digest cache: the second open costs a stat per file."""
    import time

    from clipdeploy.latency.bundle import Bundle
    b = _linked_copy(s0_bundle, tmp_path / "copy")
    t = time.perf_counter()
    first = Bundle(b).verify_all()
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    second = Bundle(b).verify_all()
    t2 = time.perf_counter() - t
    assert first["hashed_bytes"] == first["bytes"] > 50 << 20 and first["cached_files"] == 0
    assert second["hashed_bytes"] == 0 and second["cached_files"] == second["files"] == first["files"]
    print(f"S0 bundle: {first['files']} files, {first['bytes'] / 2 ** 20:.1f} MB: {t1:.2f} s hashed, "
          f"{t2 * 1e3:.1f} ms from the cache")
