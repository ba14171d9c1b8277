"""Apple's released checkpoint layout: exact keys, strict loading, round trips."""
import zlib

import pytest
import torch
from torch import nn

from clipdeploy.models import build_module, get_spec, load_model
from clipdeploy.models.checkpoint import read_state_dict, save_state_dict
from clipdeploy.models.layouts import apple_to_native, expected_apple_shapes, native_to_apple
from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images

from conftest import APPLE_MODELS, read_reference_layout

DTYPES = {"float32": torch.float32, "int64": torch.int64}


def reference_state_dict(name):
    """Random tensors with exactly the keys, dtypes and shapes of the released checkpoint."""
    sd = {}
    for key, (dtype, shape) in read_reference_layout(name).items():
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if DTYPES[dtype] == torch.int64:
            t = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif key == "logit_scale":
            t = torch.tensor(4.0)
        else:
            t = torch.randn(shape, generator=g) * 0.05
        sd[key] = t
    return sd


def outputs(m):
    x = probe_images(m.spec.image_size, 3)
    return m.encode_image(x), m.encode_text(m.tokenize(PROBE_CAPTIONS[:3]))


@pytest.mark.parametrize("name", APPLE_MODELS)
def test_expected_layout_is_the_released_one(name):
    """native -> Apple translation gives exactly the reference keys, dtypes and shapes."""
    spec = get_spec(name)
    with torch.device("meta"):
        module = build_module(spec)
    got = {k: (str(d).replace("torch.", ""), s) for k, (d, s) in expected_apple_shapes(module, spec).items()}
    ref = read_reference_layout(name)
    assert sorted(set(ref) - set(got)) == []
    assert sorted(set(got) - set(ref)) == []
    assert {k: v for k, v in got.items() if ref[k] != v} == {}


@pytest.mark.parametrize("name", APPLE_MODELS)
def test_released_layout_loads_strictly_and_round_trips(name, tmp_path):
    sd = reference_state_dict(name)
    path = tmp_path / f"{name}.pt"
    torch.save(sd, path)
    m = load_model(name, checkpoint=path)
    assert m.layout == "apple"
    img, txt = outputs(m)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    assert img.shape == (3, 512) and torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)

    # every tensor of the file arrived in the module (through the library converters)
    back = m.state_dict("apple")
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)

    # save -> load again, in both layouts and both file formats: identical outputs
    for layout, fname in (("native", "native.safetensors"), ("apple", "apple.pt")):
        p = save_state_dict(m.state_dict(layout), tmp_path / fname)
        m2 = load_model(name, checkpoint=p)
        assert m2.layout == layout
        img2, txt2 = outputs(m2)
        assert torch.equal(img, img2) and torch.equal(txt, txt2)


@pytest.mark.parametrize("name", APPLE_MODELS)
def test_inverse_agrees_with_library_converters(name, seeded_model):
    m = seeded_model(name)
    native = m.module.state_dict()
    again = apple_to_native(native_to_apple(native, m.module, m.spec), m.module, m.spec)
    assert set(again) == set(native)
    assert all(torch.equal(again[k], native[k]) for k in native)


def test_mobileclip_b_uses_apples_stem_padding_and_layernorm_eps(seeded_model):
    m = seeded_model("mobileclip_b")
    trunk = m.module.visual.trunk
    assert trunk.patch_embed.backbone[0].conv.padding == (1, 1)
    eps = {mod.eps for mod in trunk.modules() if isinstance(mod, nn.LayerNorm)}
    assert eps == {1e-5}
    # and it matters: timm's defaults (padding 0, eps 1e-6) give clearly different embeddings
    x = probe_images(224, 2)
    ref = m.encode_image(x)
    trunk.patch_embed.backbone[0].conv.padding = (0, 0)
    try:
        shifted = m.encode_image(x)
    finally:
        trunk.patch_embed.backbone[0].conv.padding = (1, 1)
    assert (ref - shifted).abs().max() > 1e-2
    # MobileCLIP2-B's open_clip checkpoints are published for timm's definition: left as is
    m2 = build_module(get_spec("mobileclip2_b"))
    assert m2.visual.trunk.patch_embed.backbone[0].conv.padding == (0, 0)


def test_file_formats_and_wrappers(tmp_path, seeded_model):
    m = seeded_model("mobileclip_s0")
    sd = m.state_dict("apple")
    # {'state_dict': ...} containers and DataParallel 'module.' prefixes are unwrapped
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.pth")
    flat = read_state_dict(tmp_path / "w.pth")
    assert set(flat) == set(sd)
    m2 = load_model("mobileclip_s0", checkpoint=tmp_path / "w.pth")
    a, b = outputs(m), outputs(m2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
