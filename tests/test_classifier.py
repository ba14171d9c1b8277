"""Zero-shot classifier artifacts (issue 23): label and template sources, the class matrix, the logits gate,
and one clip-export of a small model to ONNX with a template file, checked against PyTorch recomputed from
the manifest's own labels and templates. The S0 `--target all --classifier` export is in test_export_cli."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from clipdeploy.export import classifier as C
from clipdeploy.export.cli import main
from clipdeploy.export.wrappers import encoder

SMALL = "tinyclip_vit_8m_16_text_3m"
LABELS = ["dog", "cat", "sports car", "crème brûlée", "airplane"]


@pytest.fixture(scope="module")
def small():
    from clipdeploy.models import load_model
    from clipdeploy.reparam import reparameterize
    m = load_model(SMALL, random_weights=0)
    fused = reparameterize(m, flops=False)[0] if not m.fused else m
    return fused, {w: encoder(fused.module, fused.spec, w) for w in ("image", "text")}


def _labels(tmp_path, lines, name="labels.txt"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------------
# template sources and label files

def test_openai_templates_are_the_clip_papers_80():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    name, t = C.templates("openai")
    assert name == "openai" and len(t) == 80 == len(set(t))
    assert t == [f("{}") for f in OPENAI_IMAGENET_TEMPLATES]
    assert t[0] == "a bad photo of a {}." and "itap of a {}." in t and all(x.count("{}") == 1 for x in t)


def test_cifar10_and_simple_templates():
    name, t = C.templates("cifar10")
    assert name == "cifar10" and len(t) == 18 == len(set(t))
    assert t[0] == "a photo of a {}." and t[-1] == "a photo of the big {}."
    assert C.templates("simple") == ("simple", ["a photo of a {}."])


def test_template_file(tmp_path):
    p = _labels(tmp_path, ["# my templates", "", "  a photo of my {}.  ", "a {} in the wild."], "t.txt")
    assert C.templates(str(p)) == ("file", ["a photo of my {}.", "a {} in the wild."])


@pytest.mark.parametrize("lines,needle", [
    (["a photo."], "exactly one {}"),
    (["a {} and a {}."], "exactly one {}"),
    (["a {0} photo."], "exactly one {}"),
    (["a photo of a {}.", "a photo of a {}."], "appears twice"),
    (["# only a comment", ""], "no templates"),
])
def test_bad_template_files(tmp_path, lines, needle):
    p = _labels(tmp_path, lines, "t.txt")
    with pytest.raises(C.ClassifierInputError, match=needle.replace("{", r"\{").replace("}", r"\}")):
        C.templates(str(p))
    with pytest.raises(C.ClassifierInputError, match="not one of openai, cifar10, simple"):
        C.templates(str(tmp_path / "missing.txt"))


def test_label_file(tmp_path):
    assert C.read_labels(_labels(tmp_path, ["  dog ", "", "sports car", "crème brûlée"])) == \
        ["dog", "sports car", "crème brûlée"]
    with pytest.raises(C.ClassifierInputError, match=r"line 3: 'dog' repeats line 1"):
        C.read_labels(_labels(tmp_path, ["dog", "cat", "dog"]))
    with pytest.raises(C.ClassifierInputError, match="has a brace"):
        C.read_labels(_labels(tmp_path, ["a {} dog"]))
    with pytest.raises(C.ClassifierInputError, match="no labels"):
        C.read_labels(_labels(tmp_path, ["", "  "]))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(C.ClassifierInputError, match="not UTF-8"):
        C.read_labels(bad)
    with pytest.raises(C.ClassifierInputError, match="not found"):
        C.read_labels(tmp_path / "nope.txt")


def test_a_label_too_long_for_the_context_is_refused(small):
    fused, _ = small
    with pytest.raises(C.ClassifierInputError, match="does not fit 77 tokens"):
        C.check_prompt_lengths(["dog", "very " * 80 + "long"], ["a photo of a {}."], fused.tokenize, 77)


# ---------------------------------------------------------------------------------------------------
# the class matrix, per template source: open_clip's ensemble on the verified text tower equals the prompt
# embeddings averaged by hand, and the classifier's logits are logit_scale x image . class

def _by_hand(text, tokenize, labels, temps):
    rows = []
    with torch.no_grad():
        for lab in labels:
            e = F.normalize(text(tokenize([t.replace("{}", lab) for t in temps])).double(), dim=-1)
            rows.append(F.normalize(e.mean(0), dim=0))
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("source", ["openai", "cifar10", "simple", "file"])
def test_class_embeddings_per_template_source(small, tmp_path, source):
    fused, w = small
    src = str(_labels(tmp_path, ["a low-poly render of a {}.", "a {} seen from far away."], "t.txt")) \
        if source == "file" else source
    name, temps = C.templates(src)
    assert name == source
    classes = C.class_embeddings(w["text"], fused.tokenize, LABELS, temps)
    assert classes.dtype == np.float32 and classes.shape == (len(LABELS), fused.spec.embed_dim)
    assert np.allclose(np.linalg.norm(classes, axis=1), 1, atol=1e-6)
    assert np.abs(classes - _by_hand(w["text"], fused.tokenize, LABELS, temps)).max() < 1e-5
    # the templates matter (not the same matrix whatever the source) and labels are told apart
    other = C.class_embeddings(w["text"], fused.tokenize, LABELS, ["a photo of a {}."] if source != "simple"
                               else ["a drawing of a {}."])
    assert np.abs(classes - other).max() > 1e-3
    sim = classes @ classes.T
    assert sim[~np.eye(len(LABELS), dtype=bool)].max() < 0.9999
    cls = C.Classifier(w["image"], classes, fused.logit_scale).eval()
    from clipdeploy.models.probe import probe_images
    x = probe_images(fused.spec.image_size, 6)
    with torch.no_grad():
        logits, emb = cls(x).numpy(), w["image"](x).numpy()
    assert np.abs(logits - fused.logit_scale * emb @ classes.T).max() < 1e-4


def test_measure_logits_and_bars():
    ref = np.array([[10.0, 9.0, 1.0], [1.0, 5.0, 2.0], [3.0, 3.0 + 1e-5, 0.0]])
    same = C.measure_logits(ref, ref + 1e-6, 100.0)
    assert same["top1_agreement"] == 1.0 and same["max_abs"] < 2e-6 and not C.logit_failures(same, "fp32")
    swapped = ref.copy()
    swapped[0] = [9.0, 10.0, 1.0]
    fig = C.measure_logits(ref, swapped, 100.0)
    assert fig["top1_agreement"] == pytest.approx(2 / 3) and fig["reference_top1_labels"] == 2
    missed = C.logit_failures(fig, "fp32")
    assert any("top-1 agreement 66.7% < 100%" in m and "(1 of 3 images)" in m for m in missed)
    assert any("logits max abs 1" in m for m in missed)
    # the third row is a tie in the reference (1e-5 apart): either top-1 agrees
    tie = ref.copy()
    tie[2] = [3.0 + 2e-5, 3.0, 0.0]
    assert C.measure_logits(ref, tie, 100.0)["top1_agreement"] == 1.0
    assert C.logit_failures(C.measure_logits(ref, ref * np.nan, 100.0), "int8")[0] == "non-finite logits"


# ---------------------------------------------------------------------------------------------------
# clip-export: bad input fails before any work, with one line

def _one_line(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]


def test_classifier_bad_input(capsys, tmp_path):
    base = ["--model", SMALL, "--random-weights", "0", "--target", "onnx", "--out", str(tmp_path / "o")]
    _one_line(capsys, base + ["--templates", "cifar10"], "--templates needs --classifier")
    _one_line(capsys, base + ["--classifier", str(tmp_path / "none.txt")], "label file", "not found")
    _one_line(capsys, base + ["--classifier", str(_labels(tmp_path, ["dog", "dog"]))], "repeats line 1")
    good = str(_labels(tmp_path, ["dog", "cat"], "good.txt"))
    _one_line(capsys, base + ["--classifier", good, "--templates", "imagenet"], "not one of openai, cifar10")
    _one_line(capsys, base + ["--classifier", good, "--templates", str(_labels(tmp_path, ["no slot"], "t.txt"))],
              "exactly one {}")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------
# one export: ONNX, a template file; the artifact's logits against PyTorch recomputed from the manifest

@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    labels = _labels(d, LABELS)
    temps = _labels(d, ["a photo of a {}.", "a blurry photo of the {}.", "an origami {}."], "templates.txt")
    out = d / "bundle"
    assert main(["--model", SMALL, "--target", "onnx", "--random-weights", "0", "--out", str(out),
                 "--classifier", str(labels), "--templates", str(temps)]) == 0
    return out


def test_onnx_classifier_logits_equal_pytorch_from_the_manifest(onnx_bundle, small):
    fused, w = small
    m = json.loads((onnx_bundle / "manifest.json").read_text())
    c = m["classifier"]
    assert c["labels"] == LABELS and c["template_source"] == "file"
    assert c["templates"] == ["a photo of a {}.", "a blurry photo of the {}.", "an origami {}."]
    assert json.loads((onnx_bundle / "classifier" / "labels.json").read_text(encoding="utf-8")) == LABELS
    # PyTorch from the manifest's own labels and templates, by hand
    classes = _by_hand(w["text"], fused.tokenize, c["labels"], c["templates"])
    stored = np.load(onnx_bundle / "classifier" / "class_embeddings.npy")
    assert np.abs(stored - classes).max() < 1e-5
    from clipdeploy.models import validation as vset
    from clipdeploy.models.probe import probe_images
    x = np.concatenate([probe_images(fused.spec.image_size, 6).numpy(),
                        vset.validation_set(fused.spec.image_size, 16, 1)[0]])
    with torch.no_grad():
        emb = w["image"](torch.from_numpy(x)).double().numpy()
    want = c["logit_scale"] * emb @ classes.T
    assert c["logit_scale"] == pytest.approx(fused.logit_scale)
    art = next(a for a in m["artifacts"] if a["encoder"] == "classifier")
    assert art["path"] == "onnx-fp32/classifier.onnx" and art["outputs"][0]["name"] == "logits"
    assert art["outputs"][0]["shape"][1] == len(LABELS) and art["default"] is True
    sess = ort.InferenceSession(str(onnx_bundle / art["path"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits"] and [i.name for i in sess.get_inputs()] == ["image"]
    got = np.concatenate([sess.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
    fig = C.measure_logits(want, got, c["logit_scale"])
    assert fig["max_abs_cosine_units"] < 2e-5 and fig["top1_exact"] == 1.0, fig
    assert fig["reference_top1_labels"] >= 3              # the images are told apart: agreement means something
    # the gate's own record, probe and validation
    p = art["parity"]
    assert p["checked"] == "numeric" and p["passed"] and p["n"] == 6 and p["top1_agreement"] == 1.0
    assert p["max_abs_cosine_units"] <= 2e-5 and p["validation"]["n"] == 32 and p["validation"]["passed"]
    # the comparison against image encoder + class matrix
    row = m["classifier"]["comparison"][0]
    assert row["target"] == "onnx" and row["top1_agreement"] == 1.0 and row["logits_max_abs"] < 1e-4
    assert row["classifier_median_ms"] > 0 and row["image_encoder_plus_matrix_median_ms"] > 0
    assert row["image_encoder_plus_matrix_bytes"] == \
        next(a for a in m["artifacts"] if a["encoder"] == "image")["size_bytes"] + stored.nbytes + 128
    assert "Zero-shot classifier" in (onnx_bundle / "README.md").read_text()
    # every new file is in the integrity record
    files = m["integrity"]["files"]
    assert {"classifier/class_embeddings.npy", "classifier/labels.json", "onnx-fp32/classifier.onnx"} <= set(files)


def test_clip_latency_runs_the_classifier(onnx_bundle, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "r.json"
    from pathlib import Path
    exe = Path(sys.executable).parent / "clip-latency"
    r = subprocess.run([str(exe), "run", str(onnx_bundle), "--runtime", "onnxruntime", "--encoder", "classifier",
                        "--runs", "5", "--processes", "1", "--min-seconds", "0.3", "--min-blocks", "1",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    from clipdeploy.latency.report import validate_report
    rep = validate_report(json.loads(out.read_text()))
    recs = [x for x in rep["records"] if x["status"] == "ok"]
    assert [x["encoder"] for x in recs] == ["classifier"] and recs[0]["artifact"] == "onnx-fp32/classifier.onnx"
    p = recs[0]["parity"]
    assert p["top1_agreement"] == 1.0 and p["max_abs_cosine_units"] < 2e-5 and p["n"] == 6
