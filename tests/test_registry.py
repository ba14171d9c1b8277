import json

import pytest

from clipdeploy.models import REGISTRY, UnknownModelError, get_spec, list_models

EXPECTED = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b", "mobileclip_blt",
            "mobileclip2_s0", "mobileclip2_s2", "mobileclip2_b", "mobileclip2_s3", "mobileclip2_s4",
            "mobileclip2_l14", "openai_rn50", "openai_rn101", "openai_rn50x4", "openai_rn50x16",
            "openai_rn50x64", "openai_vit_b32", "openai_vit_b16", "openai_vit_l14",
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


def test_openai_resnets_are_the_rest_of_clip_available_models():
    """OpenAI's clip/clip.py _MODELS: RN101, RN50x4, RN50x16, RN50x64 next to RN50, each URL carrying
    the file's sha256 as its second-to-last part."""
    from clipdeploy.models.build import open_clip_config
    want = {
        "openai_rn101": ("RN101.pt", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
                         224, 512, 512, 8),
        "openai_rn50x4": ("RN50x4.pt", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
                          288, 640, 640, 10),
        "openai_rn50x16": ("RN50x16.pt", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
                           384, 768, 768, 12),
        "openai_rn50x64": ("RN50x64.pt", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
                           448, 1024, 1024, 16),
    }
    for name, (file, sha, size, embed, width, heads) in want.items():
        s = get_spec(name)
        assert s.checkpoint.url == f"https://openaipublic.azureedge.net/clip/models/{sha}/{file}"
        assert s.checkpoint.sha256 == sha and s.checkpoint.filename == file and s.checkpoint.layout == "openai"
        assert (s.image_size, s.resize_size, s.embed_dim, s.text_width, s.text_heads) == (size, size, embed, width, heads)
        assert s.layouts == ("openai", "native") and s.interpolation == "bicubic" and s.causal_text
        assert s.open_clip_config == file[:-3] + "-quickgelu" and open_clip_config(s)["quick_gelu"]
        assert get_spec("clip_" + name[len("openai_"):]).name == name
