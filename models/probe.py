"""A small deterministic probe set: synthetic images and captions that differ from each other.

Used wherever two computations of the same model are compared (reparameterization, export parity,
the latency harness): structured images that differ globally (noise images all pool to the same
features), and captions of different lengths, including the empty one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

PROBE_CAPTIONS = [
    "a photo of a dog",
    "a diagram of a rocket engine",
    "",
    "two red apples on a wooden table next to a glass of milk",
    "ein Foto von einer Katze, café crème",
    "a blurry photo of a striped zebra",
    "a satellite image of a city at night",
    "a sketch of a bicycle",
]

PROBE_LABELS = ["dog", "cat", "car", "tree", "airplane", "flower", "boat", "house"]


def probe_images(size: int, n: int = 6) -> torch.Tensor:
    """float32 [n, 3, size, size] in [0, 1]; deterministic."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    ones = torch.ones_like(xx)
    g = torch.Generator().manual_seed(0)
    rr = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2).sqrt()
    imgs = [
        torch.stack([xx, 0.5 * ones, 1 - xx]),                                   # gradient
        torch.stack([(torch.sin(yy * 20) > 0).float(), yy, 0.2 * ones]),          # stripes
        torch.stack([((xx * 8).floor() + (yy * 8).floor()) % 2] * 3),             # checkerboard
        torch.stack([(rr < 0.3).float(), 0.3 * ones, (rr >= 0.3).float() * 0.8]),  # disc
        torch.rand(3, size, size, generator=g),                                    # noise
        torch.stack([0.5 + 0.5 * torch.sin(xx * 2 * math.pi * 3 + yy * 5)] * 2 + [yy]),
    ]
    while len(imgs) < n:
        imgs.append(torch.rand(3, size, size, generator=g) * torch.rand(3, 1, 1, generator=g))
    return torch.stack(imgs[:n]).clamp(0, 1).float()


def probe_pil_images(size: int, n: int = 6):
    """The probe images as PIL images (for preprocessing demos)."""
    from torchvision.transforms.functional import to_pil_image
    return [to_pil_image(x) for x in probe_images(size, n)]


def write_probe_files(dest: Path, images: np.ndarray, captions: list, ids: np.ndarray,
                      ref_image: np.ndarray, ref_text: np.ndarray, pngs: bool = True) -> dict:
    """The probe set as a bundle stores it (``probe/``): inputs and reference embeddings as ``.npy``, the
    captions, and (``pngs``) 8-bit PNG copies of the images. Returns the manifest's ``probe`` block."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    block = {}
    if pngs:
        from PIL import Image
        names = []
        for i, img in enumerate(images):
            arr = (np.clip(img.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(dest / f"image_{i}.png")
            names.append(f"probe/image_{i}.png")
        block["images_png"] = names
    np.save(dest / "images.npy", images.astype(np.float32))
    np.save(dest / "token_ids.npy", ids.astype(np.int32))
    np.save(dest / "image_embeddings.npy", ref_image.astype(np.float32))
    np.save(dest / "text_embeddings.npy", ref_text.astype(np.float32))
    (dest / "captions.json").write_text(json.dumps(captions, ensure_ascii=False, indent=1))
    block.update({"images": "probe/images.npy", "captions": "probe/captions.json", "token_ids": "probe/token_ids.npy",
                  "reference": {"image": "probe/image_embeddings.npy", "text": "probe/text_embeddings.npy"},
                  "note": "images.npy is the exact float32 input the reference saw; the PNGs are 8-bit copies"})
    return block
