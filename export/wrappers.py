"""Export-friendly encoder wrappers: the exact functions every artifact computes.

* image: float32 ``image`` [B, 3, R, R] RGB in [0, 1] -> L2-normalized float32 ``embedding`` [B, D];
  any mean/std the model needs is applied inside.
* text: int32 ``text`` [B, 77] token ids (0-padded) -> L2-normalized float32 ``embedding`` [B, D];
  EOT pooling is an argmax over the int32 ids (never an int64 argmax, which ONNX Runtime lacks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_INPUT, TEXT_INPUT, OUTPUT = "image", "text", "embedding"


class ImageEncoder(nn.Module):
    def __init__(self, clip_module: nn.Module, spec):
        super().__init__()
        self.visual = clip_module.visual
        self.spec = spec
        if spec.mean is not None:
            self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("inv_std", 1.0 / torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))
        else:
            self.mean = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            image = (image - self.mean) * self.inv_std
        return F.normalize(self.visual(image), dim=-1)


class TextEncoder(nn.Module):
    def __init__(self, clip_module: nn.Module, spec):
        super().__init__()
        self.text = clip_module.text
        self.spec = spec

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(text), dim=-1)


def encoder(clip_module: nn.Module, spec, which: str) -> nn.Module:
    """``which`` = "image" | "text"; returns the wrapper in eval mode."""
    cls = {"image": ImageEncoder, "text": TextEncoder}[which]
    return cls(clip_module, spec).eval()


def example_input(spec, which: str, batch: int = 1) -> torch.Tensor:
    if which == "image":
        return torch.rand(batch, 3, spec.image_size, spec.image_size)
    ids = torch.zeros(batch, spec.context_length, dtype=torch.int32)
    ids[:, 0], ids[:, 1], ids[:, 2] = 49406, 320, 49407
    return ids
