"""Variable-length text and batched images: the causality check, the plans, the artifacts in their runtimes,
the gate's shape checks (and that they fail), and MobileCLIP2-S0 through every target."""
import json

import numpy as np
import pytest
import torch

from clipdeploy.export import shapes as shapes_mod
from clipdeploy.export.cli import main
from clipdeploy.export.parity import ParityError
from clipdeploy.export.pipeline import _shape_gate
from clipdeploy.export.wrappers import encoder, example_input
from clipdeploy.models import shapes as S
from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images
from clipdeploy.reparam import reparameterize
from shapecheck import image_rows_equal_batch1


def _fused(seeded_model, name):
    m = seeded_model(name)
    return reparameterize(m, flops=False)[0] if not m.fused else m


# ------------------------------------------------------------------------------------------ causality

@pytest.mark.parametrize("name", ["openai_vit_b32", "tinyclip_vit_8m_16_text_3m", "mobileclip_b",
                                  "mobileclip2_b", "mobileclip2_s0", "mobileclip_s0"])
def test_causality_is_measured_per_model_and_agrees_with_the_spec(name, seeded_model):
    """open_clip (B/32, MobileCLIP-B, MobileCLIP2-B), transformers (TinyCLIP 8M's HF form) towers are causal;
    MobileCLIP2-S0 attends to every position; MobileCLIP-S0's own tower takes only 77 positions."""
    f = _fused(seeded_model, name)
    w = encoder(f.module, f.spec, "text")
    got = shapes_mod.text_causality(w, f.tokenize(PROBE_CAPTIONS).numpy())
    assert got["causal"] == f.spec.causal_text, got
    if got["causal"]:
        assert got["max_abs"] <= 1e-5 and len(got["checked"]) >= len(PROBE_CAPTIONS)
    elif name == "mobileclip_s0":
        assert "takes only 77 positions" in got["reason"]
    else:                      # not a rounding difference: the padding really changes the embedding
        assert got["max_abs"] > 1e-2 and "attends to every position" in got["reason"]


def test_plans_per_target():
    causal, not_causal = {"causal": True}, {"causal": False, "reason": "attends to every position"}
    assert shapes_mod.plan("onnx", "text", causal)["length"] == S.dynamic(1, 77)
    assert shapes_mod.plan("executorch", "text", causal) == {"batch": S.fixed(1), "length": S.dynamic(1, 77)}
    assert shapes_mod.plan("onnx", "text", not_causal)["length"] == S.fixed(77, "attends to every position")
    assert shapes_mod.plan("onnx", "image", causal) == {"batch": S.dynamic(1, None)}
    assert shapes_mod.plan("executorch", "image", causal) == {"batch": S.dynamic(1, 8)}
    for target in ("litert", "executorch-coreml", "coreml"):
        for which in ("image", "text"):
            p = shapes_mod.plan(target, which, causal)
            assert all(d["kind"] == "fixed" for d in p.values())
            assert "static shapes" in p["batch" if which == "image" else "length"]["reason"]
    assert shapes_mod.length_classes(S.dynamic(1, 77)) == [2, 8, 16, 32]
    assert shapes_mod.batch_sizes(S.dynamic(1, None)) == [4, 8] == shapes_mod.batch_sizes(S.dynamic(1, 8))


def test_trim_cuts_to_the_shortest_accepted_length():
    ids = np.zeros((2, 77), np.int32)
    ids[0, :3] = [49406, 320, 49407]
    ids[1, :11] = [49406] + [320] * 9 + [49407]
    assert S.trim(ids, S.dynamic(1, 77)).shape == (2, 11)
    assert S.trim(ids[:1], S.enumerated([8, 16, 32, 77])).shape == (1, 8)
    cut = S.trim(ids, S.enumerated([8]))                 # longer than the largest: EOT kept last
    assert cut.shape == (2, 8) and cut[1, -1] == 49407 and cut[0, 2] == 49407
    assert S.trim(ids, S.fixed(77)).shape == (2, 77)


# B/32 text in ONNX and ExecuTorch at [1, 8]: on the zoo's B/32 bundle, tests/test_zoo_export_openai.py (the same
# export; a second one here took ~100 s of CI)


# --------------------------------------------------------------------- the gate's shape checks can fail

def test_length_gate_fails_a_tower_that_attends_to_every_position(seeded_model, tmp_path):
    """MobileCLIP2-S0's text tower exported with a dynamic length anyway (what a wrong causality claim
    would ship): the artifact runs at 8 tokens, and the gate refuses it with the figures."""
    from clipdeploy.export.backends.onnx_backend import OnnxBackend
    f = _fused(seeded_model, "mobileclip2_s0")
    w = encoder(f.module, f.spec, "text")
    shp = {"batch": S.dynamic(1, None), "length": S.dynamic(1, 77)}
    r = OnnxBackend().export(w, example_input(f.spec, "text"), "text", "fp32", tmp_path / "t.onnx", f.spec,
                             {"shapes": shp})
    ids = f.tokenize(PROBE_CAPTIONS).numpy()
    img = encoder(f.module, f.spec, "image")
    with torch.no_grad():
        sets = {"text_ids": ids, "text_ref": w(torch.from_numpy(ids)).numpy(),
                "image_ref": img(probe_images(f.spec.image_size, 4)).numpy()}
    with pytest.raises(ParityError) as e:
        _shape_gate(OnnxBackend(), r.path, "text", "fp32", shp, sets, "t.onnx")
    assert "shortest accepted length" in str(e.value) and "max abs" in str(e.value)
    # the same artifact at 77 tokens is fine: only the cut padding breaks it
    fixed = {"batch": S.dynamic(1, None), "length": S.fixed(77)}
    assert _shape_gate(OnnxBackend(), r.path, "text", "fp32", fixed, sets, "t.onnx")["checked"]


# ------------------------------------------------------------------------ MobileCLIP2-S0, every target

@pytest.fixture(scope="module")
def mc2_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "mobileclip2_s0"
    # Core ML is left out: its fp16 text encoder misses the fp16 bar on the validation set for every
    # MobileCLIP2 model (max abs 2.2e-3 > 1.5e-3, see docs/performance.md); the other targets pass
    assert main(["--model", "mobileclip2_s0", "--target", "onnx", "--target", "executorch", "--target", "litert",
                 "--random-weights", "0", "--out", str(out)]) == 0
    return out


def test_mobileclip2_s0_passes_every_gate_but_core_ml(mc2_bundle):
    m = json.loads((mc2_bundle / "manifest.json").read_text())
    got = {(a["target"], a["precision"], a["encoder"]) for a in m["artifacts"]}
    assert got == {(t, p, e) for t, p in (("onnx", "fp32"), ("executorch", "fp32"),
                                          ("litert", "fp32")) for e in ("image", "text")}
    for a in m["artifacts"]:
        p = a["parity"]
        assert p["passed"] and p["validation"]["passed"], a["path"]
        if p["checked"] == "numeric":
            assert p["max_abs"] <= 1e-5 and p["zero_shot_agreement"] == 1.0
    # its text tower attends to every position: every text artifact keeps 77, saying why
    assert m["text_causality"]["causal"] is False
    for a in m["artifacts"]:
        if a["encoder"] == "text":
            assert a["shapes"]["length"]["kind"] == "fixed" and a["shapes"]["length"]["values"] == [77]
            assert a["shapes"]["length"]["reason"]


@pytest.mark.parametrize("target", ["onnx", "executorch"])
def test_mobileclip2_s0_image_artifacts_take_batch_4(mc2_bundle, target):
    image_rows_equal_batch1(mc2_bundle, target)
