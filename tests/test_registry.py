import json

import pytest

from clipdeploy.models import REGISTRY, UnknownModelError, get_spec, list_models

EXPECTED = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b", "mobileclip_blt",
            "mobileclip2_s0", "mobileclip2_s2", "mobileclip2_b", "mobileclip2_s3", "mobileclip2_s4",
            "mobileclip2_l14"]


def test_registry_lists_every_model():
    assert list_models() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_spec_contract(name):
    s = get_spec(name)
    d = s.to_dict()
    json.dumps(d)  # serializable into the bundle manifest
    for field in ("name", "family", "image_size", "interpolation", "mean", "std", "tokenizer",
                  "context_length", "embed_dim", "layouts", "checkpoint", "license"):
        assert field in d
    assert s.context_length == 77 and s.tokenizer == "openai-clip-bpe"
    assert s.checkpoint.url.startswith("https://")
    assert s.checkpoint.sha256 is None or len(s.checkpoint.sha256) == 64


def test_model_facts():
    assert get_spec("mobileclip_s0").image_size == 256 and get_spec("mobileclip_b").image_size == 224
    # no mean/std for MobileCLIP S0/S1/S2/B and MobileCLIP2-S0/S2/B; OpenAI's for S3/S4/L-14
    assert [n for n in EXPECTED if REGISTRY[n].mean is not None] == [
        "mobileclip2_s3", "mobileclip2_s4", "mobileclip2_l14"]
    assert get_spec("mobileclip2_l14").interpolation == "bicubic"
    assert get_spec("mobileclip_b").causal_text and not get_spec("mobileclip_s1").causal_text
    assert get_spec("mobileclip_s0").custom_text == "mct"
    assert all(REGISTRY[n].layouts == ("apple", "native") for n in EXPECTED[:5])
    assert all(REGISTRY[n].layouts == ("open_clip",) for n in EXPECTED[5:])
    assert get_spec("mobileclip_s0").checkpoint.url == (
        "https://docs-assets.developer.apple.com/ml-research/datasets/mobileclip/mobileclip_s0.pt")


def test_names_are_forgiving_but_unknown_names_suggest():
    assert get_spec("MobileCLIP-S0").name == "mobileclip_s0"
    assert get_spec("mobileclip_b_lt").name == "mobileclip_blt"
    with pytest.raises(UnknownModelError) as e:
        get_spec("mobilclip_s1")
    msg = str(e.value)
    assert "unknown model 'mobilclip_s1'" in msg and "did you mean mobileclip_s1" in msg
    assert "\n" not in msg
