"""Bad input: one clear line naming the problem and the fix, a non-zero exit, never a traceback."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

from clipdeploy.models import CheckpointError, CheckpointMismatchError, load_model
from clipdeploy.models.cli import main


@pytest.fixture(scope="module")
def s0_file(tmp_path_factory, seeded_model):
    p = tmp_path_factory.mktemp("ck") / "mobileclip_s0.pt"
    torch.save(seeded_model("mobileclip_s0").state_dict("apple"), p)
    return p


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err, *needles):
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_model(capsys):
    rc, _, err = run_cli(capsys, "check", "mobileclip_s9", "--random-weights", "0")
    assert rc == 2
    assert_one_line_error(err, "unknown model 'mobileclip_s9'", "did you mean", "mobileclip_s0")


def test_wrong_model_checkpoint_names_keys_and_the_model_it_looks_like(capsys, s0_file):
    rc, _, err = run_cli(capsys, "check", "mobileclip_s1", "--checkpoint", str(s0_file))
    assert rc == 2
    assert_one_line_error(err, "does not fit model 'mobileclip_s1'", "missing keys", "unexpected keys",
                          "text_encoder.transformer.0.convffn", "look like 'mobileclip_s0'",
                          "--model mobileclip_s0")
    with pytest.raises(CheckpointMismatchError) as e:
        load_model("mobileclip_s1", checkpoint=s0_file)
    assert e.value.looks_like == "mobileclip_s0" and e.value.missing and e.value.unexpected


def test_apple_checkpoint_for_an_open_clip_model(s0_file):
    with pytest.raises(CheckpointMismatchError, match="Apple's .pt layout.*look like 'mobileclip_s0'"):
        load_model("mobileclip2_s0", checkpoint=s0_file)


def test_missing_and_shape_mismatched_keys(tmp_path, seeded_model):
    sd = seeded_model("mobileclip_s0").state_dict("apple")
    del sd["text_encoder.final_layer_norm.bias"]
    sd["text_encoder.projection_layer"] = torch.zeros(512, 256)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_model("mobileclip_s0", checkpoint=tmp_path / "broken.pt")
    msg = str(e.value)
    assert "1 missing keys (e.g. text_encoder.final_layer_norm.bias)" in msg
    assert "text_encoder.projection_layer [512, 256] vs [512, 512]" in msg


def test_truncated_file(capsys, tmp_path, s0_file):
    data = s0_file.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    rc, _, err = run_cli(capsys, "check", "mobileclip_s0", "--checkpoint", str(tmp_path / "cut.pt"))
    assert rc == 2
    assert_one_line_error(err, "corrupt or truncated", "download it again")


def test_pickle_with_code_is_refused(capsys, tmp_path):
    torch.save({"hook": os.system, "w": torch.zeros(1)}, tmp_path / "evil.pt")   # a global that runs code
    rc, _, err = run_cli(capsys, "check", "mobileclip_s0", "--checkpoint", str(tmp_path / "evil.pt"))
    assert rc == 2
    assert_one_line_error(err, "weights-only load refuses", "never unpickles", "safetensors")


@pytest.mark.parametrize("make, needle", [
    (lambda p: p, "checkpoint not found"),
    (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.with_suffix(".safetensors").write_bytes(b"\x00" * 100), p.with_suffix(".safetensors"))[1],
     "not a readable safetensors file"),
])
def test_unreadable_files(tmp_path, make, needle):
    path = make(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=needle):
        load_model("mobileclip_s0", checkpoint=path)


def test_not_a_clip_checkpoint(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a CLIP checkpoint"):
        load_model("mobileclip_s0", checkpoint=tmp_path / "other.pt")


def test_unwritable_save_target(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run_cli(capsys, "check", "mobileclip_s0", "--random-weights", "0",
                         "--save", str(blocker / "sub" / "w.pt"))
    assert rc == 2
    assert_one_line_error(err, "cannot write", "writable")


def test_console_script_prints_no_traceback():
    exe = [sys.executable, "-m", "clipdeploy.models.cli", "info", "mobileclip-s7"]
    r = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: unknown model") and "Traceback" not in r.stderr


def test_training_checkpoint_with_its_args_namespace_is_read(tmp_path):
    """Training checkpoints (the TinyCLIP fork's) keep an argparse.Namespace next to the weights: an
    attribute bag, which the weights-only load allows; the weights in it are read."""
    from clipdeploy.models.checkpoint import read_state_dict
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1), "epoch": 3},
               tmp_path / "train.pt")
    assert list(read_state_dict(tmp_path / "train.pt")) == ["w"]
