"""Reparameterization: zero BatchNorm / train-time modules left, parity, idempotence, a verifier that bites."""
import gc
import json

import pytest
import torch
from timm.models import fastvit

from clipdeploy.models import load_model
from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images
from clipdeploy.reparam import (FoldError, batchnorm_modules, reparameterize, train_time_modules)
from clipdeploy.reparam import folds
from clipdeploy.reparam.cli import main as reparam_main

_FUSED = {}


@pytest.fixture(scope="module")
def fused_model(seeded_model):
    def get(name):
        if name not in _FUSED:
            _FUSED[name] = reparameterize(seeded_model(name))
        return _FUSED[name]
    yield get
    _FUSED.clear()   # free this module's models/artifacts before the worker's next file
    gc.collect()


def _embeddings(m):
    x = probe_images(m.spec.image_size, 6)
    return m.encode_image(x), m.encode_text(m.tokenize(PROBE_CAPTIONS))


@pytest.mark.parametrize("name", ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2"])
def test_everything_folds_with_parity(name, seeded_model, fused_model):
    m = seeded_model(name)
    fused, report = fused_model(name)
    for tower in ("visual", "text"):
        sub = getattr(fused.module, tower)
        assert batchnorm_modules(sub) == [], f"BatchNorm left in the {tower} tower"
        assert train_time_modules(sub) == [], f"train-time modules left in the {tower} tower"
    assert report.batchnorm["after"] == 0 and report.batchnorm["before"] > 40
    assert report.train_time_modules["after"] == 0 and report.not_folded == []
    # the unfused model is untouched (deep copy)
    assert len(batchnorm_modules(m.module)) == report.batchnorm["before"]
    (ib, tb), (ia, ta) = _embeddings(m), _embeddings(fused)
    assert float((ib - ia).abs().max()) <= 1e-5
    assert float((tb - ta).abs().max()) <= 1e-5
    assert float((ib * ia).sum(-1).min()) > 0.99999
    # zero-shot agreement on the probe set
    assert torch.equal((ib @ tb.T).argmax(-1), (ia @ ta.T).argmax(-1))
    assert report.params["after"] < report.params["before"]
    assert all(f["rel"] <= 1e-5 for f in report.folds)


def test_s0_report_names_every_fold_kind(fused_model):
    _, report = fused_model("mobileclip_s0")
    kinds = report.folds_by_kind
    for k in ("MobileOneBlock", "RepMixer", "ReparamLargeKernelConv", "RepConditionalPosEnc",
              "RepMixer (text 1x11)", "conv-BN", "BN->qkv", "layer scale"):
        assert kinds.get(k, 0) > 0, k
    assert kinds["RepMixer (text 1x11)"] == 2 and kinds["BN->qkv"] == 2
    d = json.loads(json.dumps(report.to_dict()))
    assert d["flops"]["image"]["after"] <= d["flops"]["image"]["before"]
    assert d["flops"]["text"]["before"] > 1e9
    table = report.table()
    assert "BatchNorm modules" in table and "parity on probe set" in table


def test_idempotent(fused_model):
    fused, _ = fused_model("mobileclip_s0")
    again, report = reparameterize(fused)
    assert report.folds == [] and "nothing to fold" in report.note
    a, b = fused.module.state_dict(), again.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_b_has_no_train_time_branches(seeded_model):
    fused, report = reparameterize(seeded_model("mobileclip_b"))
    assert "no train-time branches" in report.note
    assert report.folds_by_kind == {"conv-BN": 2}      # the conv stem's two BatchNorms
    assert batchnorm_modules(fused.module) == []
    assert max(report.parity["image_max_abs"], report.parity["text_max_abs"]) <= 1e-5


# --- the verifier bites: deliberately wrong folds are caught, with the module named -------------

def test_fold_ignoring_bn_running_statistics_is_caught(seeded_model, monkeypatch):
    def no_running_stats(bn):
        return bn.weight.double(), bn.bias.double()
    monkeypatch.setattr(folds, "bn_scale_shift", no_running_stats)
    with pytest.raises(FoldError) as e:
        reparameterize(seeded_model("mobileclip_s0"))
    assert e.value.module_name == "text.transformer.0.token_mixer"
    assert "text.transformer.0.token_mixer" in str(e.value) and e.value.rel > 1e-2


def test_fold_dropping_the_layer_scale_is_caught(seeded_model, monkeypatch):
    monkeypatch.setattr(folds, "scale_output_channels", lambda w, b, g: (w.double(), b.double()))
    with pytest.raises(FoldError) as e:
        reparameterize(seeded_model("mobileclip_s0"))
    assert e.value.kind == "layer scale"
    assert e.value.module_name.startswith("visual.trunk.stages.0.blocks.0")
    assert e.value.module_name in str(e.value)


def test_fold_dropping_repcpe_identity_is_caught(seeded_model, monkeypatch):
    def without_identity(self):
        conv = torch.nn.Conv2d(self.dim, self.dim_out, self.spatial_shape, 1, self.spatial_shape[0] // 2,
                               groups=self.groups, bias=True)
        conv.weight.data = self.pos_enc.weight.data.clone()
        conv.bias.data = self.pos_enc.bias.data.clone()
        self.reparam_conv = conv
        del self.pos_enc
    monkeypatch.setattr(fastvit.RepConditionalPosEnc, "reparameterize", without_identity)
    with pytest.raises(FoldError) as e:
        reparameterize(seeded_model("mobileclip_s0"))
    assert e.value.kind == "RepConditionalPosEnc"
    assert e.value.module_name == "visual.trunk.stages.3.pos_emb"


# --- fused checkpoints --------------------------------------------------------------------------

def test_clip_reparam_writes_a_fused_checkpoint_load_model_recognizes(tmp_path, capsys, seeded_model,
                                                                     fused_model):
    out = tmp_path / "s0_fused.pt"
    assert reparam_main(["--model", "mobileclip_s0", "--random-weights", "0", "-o", str(out),
                         "--runs", "2", "--json"]) == 0
    cap = capsys.readouterr()
    report = json.loads(cap.out)
    assert report["batchnorm"]["after"] == 0 and report["output"] == str(out)
    assert report["latency_ms"]["runs"] == 2 and report["latency_ms"]["image"]["before"] > 0
    assert "[2/4]" in cap.err
    loaded = load_model("mobileclip_s0", checkpoint=out)
    assert loaded.fused and loaded.layout == "fused"
    assert batchnorm_modules(loaded.module) == []
    fused, _ = fused_model("mobileclip_s0")
    (a_img, a_txt), (b_img, b_txt) = _embeddings(fused), _embeddings(loaded)
    assert torch.equal(a_img, b_img) and torch.equal(a_txt, b_txt)
    ref_img, _ = _embeddings(seeded_model("mobileclip_s0"))
    assert float((ref_img - b_img).abs().max()) <= 1e-5


def test_fused_checkpoint_of_another_model_is_refused(tmp_path, fused_model):
    from clipdeploy.models import CheckpointMismatchError
    from clipdeploy.models.checkpoint import save_state_dict
    from clipdeploy.reparam import fused_state_dict
    fused, _ = fused_model("mobileclip_s0")
    path = save_state_dict(fused_state_dict(fused), tmp_path / "f.safetensors")
    with pytest.raises(CheckpointMismatchError, match="does not fit model 'mobileclip_s1' \\(fused layout\\)"):
        load_model("mobileclip_s1", checkpoint=path)
