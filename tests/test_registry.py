import json

import pytest

from clipdeploy.models import REGISTRY, UnknownModelError, get_spec, list_models

EXPECTED = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b", "mobileclip_blt",
            "mobileclip2_s0", "mobileclip2_s2", "mobileclip2_b", "mobileclip2_s3", "mobileclip2_s4",
            "mobileclip2_l14", "openai_rn50", "openai_vit_b32", "openai_vit_b16", "openai_vit_l14",
            "openai_vit_l14_336", "tinyclip_vit_8m_16_text_3m", "tinyclip_vit_39m_16_text_19m",
            "tinyclip_vit_40m_32_text_19m", "tinyclip_vit_61m_32_text_29m", "tinyclip_resnet_19m_text_19m",
            "tinyclip_resnet_30m_text_29m", "tinyclip_auto_vit_63m_32_text_31m",
            "tinyclip_auto_vit_45m_32_text_18m", "tinyclip_auto_vit_22m_32_text_10m"]
MOBILECLIP = EXPECTED[:11]


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
    assert [n for n in MOBILECLIP if REGISTRY[n].mean is not None] == [
        "mobileclip2_s3", "mobileclip2_s4", "mobileclip2_l14"]
    assert get_spec("mobileclip2_l14").interpolation == "bicubic"
    assert get_spec("mobileclip_b").causal_text and not get_spec("mobileclip_s1").causal_text
    assert get_spec("mobileclip_s0").custom_text == "mct"
    assert all(REGISTRY[n].layouts == ("apple", "native") for n in EXPECTED[:5])
    assert all(REGISTRY[n].layouts == ("open_clip",) for n in MOBILECLIP[5:])
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


def test_openai_and_tinyclip_facts():
    """Sources: open_clip's `*-quickgelu` configs and pretrained.py (OpenAI); microsoft/Cream
    TinyCLIP/src/open_clip/model_configs/TinyCLIP-*.json (TinyCLIP)."""
    from clipdeploy.models.build import open_clip_config
    rn50 = get_spec("openai_rn50")
    assert rn50.checkpoint.layout == "openai" and rn50.checkpoint.sha256 == rn50.checkpoint.url.split("/")[-2]
    assert open_clip_config(rn50)["quick_gelu"] and rn50.embed_dim == 1024
    assert get_spec("openai_vit_l14_336").image_size == 336 and get_spec("openai_vit_l14").embed_dim == 768
    assert get_spec("openai_vit_b32").layouts == ("openai", "hf", "native")
    assert get_spec("openai_rn50").layouts == ("openai", "native")       # transformers has no ResNet tower
    t8 = get_spec("TinyCLIP-ViT-8M-16-Text-3M")                          # the fork's own name works
    cfg = open_clip_config(t8)
    assert not cfg["quick_gelu"] and cfg["vision_cfg"]["width"] == 256 and cfg["text_cfg"]["layers"] == 3
    assert t8.checkpoint.layout == "hf" and t8.checkpoint.repo == "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"
    assert dict(t8.checkpoint.extra)["config.json"].endswith("/config.json")
    rn19 = open_clip_config(get_spec("tinyclip_resnet_19m_text_19m"))
    assert rn19["vision_cfg"]["layers"] == [3, 4, 6, 3] and rn19["vision_cfg"]["width"] == 44
    assert rn19["embed_dim"] == 1024
    auto = get_spec("tinyclip_auto_vit_22m_32_text_10m")
    assert auto.pruned and auto.layouts == ("tinyclip", "native")
    assert open_clip_config(auto)["vision_cfg"]["width"] == 768   # pruned from ViT-B/32
