import pytest
import torch
from PIL import Image

from clipdeploy.models import get_spec, preprocess_image


def _thirds(w, h):
    """A wide image: red left third, green middle, blue right third."""
    img = Image.new("RGB", (w, h))
    px = img.load()
    for x in range(w):
        c = (255, 0, 0) if x < w // 3 else (0, 255, 0) if x < 2 * w // 3 else (0, 0, 255)
        for y in range(h):
            px[x, y] = c
    return img


def test_resize_shorter_side_then_center_crop():
    spec = get_spec("mobileclip_s0")
    x = preprocess_image(_thirds(900, 300), spec)
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # the center crop of the wide image is the green third (mean/std not applied: S0 has none)
    assert torch.allclose(x[:, :, 5:-5].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=0.02)


def test_modes_and_sizes():
    spec = get_spec("mobileclip_b")
    for img in (Image.new("L", (50, 80), 128), Image.new("RGBA", (640, 480), (10, 20, 30, 0)),
                Image.new("P", (300, 300))):
        assert preprocess_image(img, spec).shape == (3, 224, 224)
    with pytest.raises(TypeError, match="PIL"):
        preprocess_image(torch.zeros(3, 8, 8), spec)


def test_normalize_only_where_the_spec_says():
    img = Image.new("RGB", (256, 256), (128, 128, 128))
    s0, s3 = get_spec("mobileclip_s0"), get_spec("mobileclip2_s3")
    assert torch.equal(preprocess_image(img, s0, normalize=True), preprocess_image(img, s0))
    n = preprocess_image(img, s3, normalize=True)
    expect = (128 / 255 - torch.tensor(s3.mean)) / torch.tensor(s3.std)
    assert torch.allclose(n.mean(dim=(1, 2)), expect, atol=1e-4)


def test_bicubic_for_l14_differs_from_bilinear():
    g = torch.Generator().manual_seed(0)
    arr = (torch.rand(333, 500, 3, generator=g) * 255).to(torch.uint8).numpy()
    img = Image.fromarray(arr)
    a = preprocess_image(img, get_spec("mobileclip2_l14"))
    b = preprocess_image(img, get_spec("mobileclip2_b"))
    assert a.shape == b.shape == (3, 224, 224)
    assert (a - b).abs().max() > 1e-3
