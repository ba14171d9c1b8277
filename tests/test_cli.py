import json

import torch

from clipdeploy.models import load_model
from clipdeploy.models.cli import main


def test_list_and_info_json(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:2] == ["mobileclip_s0", "mobileclip_s1"] and len(rows) == 29
    assert main(["info", "mobileclip_b", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["image_size"] == 224 and info["checkpoint"]["sha256"].startswith("0dd1d92c")


def test_check_saves_and_reloads_apple_layout(capsys, tmp_path):
    out = tmp_path / "s0.pt"
    assert main(["check", "mobileclip_s0", "--random-weights", "3", "--save", str(out),
                 "--layout", "apple", "--json"]) == 0
    cap = capsys.readouterr()
    first = json.loads(cap.out)
    assert "[1/4]" in cap.err  # progress goes to stderr when --json is on
    assert first["max_image_pair_cosine"] < 0.99 and first["max_text_pair_cosine"] < 0.99
    assert len(first["zero_shot"]) == 6
    sd = torch.load(out, weights_only=True)
    assert "image_encoder.model.head.proj" in sd and "text_encoder.projection_layer" in sd
    assert main(["check", "mobileclip_s0", "--checkpoint", str(out), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["layout"] == "apple"
    assert second["zero_shot"] == first["zero_shot"]
    assert second["max_image_pair_cosine"] == first["max_image_pair_cosine"]
    ref = load_model("mobileclip_s0", random_weights=3)
    assert abs(ref.logit_scale - second["logit_scale"]) < 1e-3
