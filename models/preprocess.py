"""Image preprocessing to a model's input: resize the shorter side, center crop, RGB in [0, 1].

Mean/std normalization, for the models whose spec has it (MobileCLIP2-S3/S4/L-14), is part of the
model, not of this step: :meth:`CLIPModel.encode_image` applies it, and export bakes it into the
artifacts, so every runtime and app feeds the same [0, 1] tensor. ``normalize=True`` returns the
normalized tensor for callers that feed the raw open_clip module (``m.module.encode_image``).
"""
from __future__ import annotations

import torch

_INTERP = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}


def preprocess_image(image, spec, normalize: bool = False) -> torch.Tensor:
    """PIL image (any mode) -> float32 [3, R, R]."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    if not isinstance(image, Image.Image):
        raise TypeError(f"preprocess takes a PIL.Image, got {type(image).__name__}")
    image = image.convert("RGB")
    interp = getattr(InterpolationMode, _INTERP[spec.interpolation])
    image = TF.resize(image, spec.resize_size, interpolation=interp, antialias=True)
    image = TF.center_crop(image, [spec.image_size, spec.image_size])
    x = TF.to_tensor(image)                                  # float32, [0, 1]
    if normalize:
        x = normalize_image(x, spec)
    return x


def normalize_image(x: torch.Tensor, spec) -> torch.Tensor:
    """Apply the spec's mean/std (identity where it has none) on [..., 3, H, W]."""
    if spec.mean is None:
        return x
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std
