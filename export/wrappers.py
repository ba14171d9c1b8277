"""Export-friendly encoder wrappers: the exact functions every artifact computes.

* image: float32 ``image`` [B, 3, R, R] RGB in [0, 1] -> L2-normalized float32 ``embedding`` [B, D];
  any mean/std the model needs is applied inside.
* text: int32 ``text`` [B, L] token ids (0-padded; L = 77, or for a causal tower any 1 <= L <= 77 that
  holds the caption's tokens) -> L2-normalized float32 ``embedding`` [B, D]; EOT pooling is an argmax
  over the int32 ids (never an int64 argmax, which ONNX Runtime lacks).

open_clip's ``TextTransformer`` adds its whole 77 x 77 causal mask whatever the input length (it slices
the mask only when it also builds a padding mask); :class:`TextEncoder` runs the same submodules with the
mask cut to the input's length, which at 77 is the same computation and below 77 is what lets a causal
tower take the shorter input (``clipdeploy.export.shapes`` checks, per model, that it then gives the
77-token embedding).
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
        return F.normalize(_text_features(self.text, text), dim=-1)


def _sliced_mask_tower(t) -> bool:
    """An open_clip ``TextTransformer`` whose forward adds the full causal mask at every length."""
    from open_clip.transformer import TextTransformer
    return (isinstance(t, TextTransformer) and getattr(t, "attn_mask", None) is not None
            and t.cls_emb is None and not getattr(t, "use_pad_mask", False) and not t.output_tokens)


def _text_features(t, text: torch.Tensor) -> torch.Tensor:
    if not _sliced_mask_tower(t):
        return t(text)
    from open_clip.transformer import text_global_pool
    n = text.shape[1]
    cast = t.transformer.get_cast_dtype()
    # as TextTransformer._embeds, with the positional rows and the mask padded by one before they are
    # cut to n: a cut at the full 77 would be a no-op view, which torch.export guards on (n != 77) and
    # so cannot give one program for every length
    pos = F.pad(t.positional_embedding, (0, 0, 0, 1))[:n]
    x = t.token_embedding(text).to(cast) + pos.to(cast)
    mask = F.pad(t.attn_mask, (0, 1, 0, 1))[:n, :n]
    x = t.ln_final(t.transformer(x, attn_mask=mask))
    pooled = text_global_pool(x, text, pool_type=t.pool_type, eos_token_id=getattr(t, "eos_id", None))
    if t.text_projection is None:
        return pooled
    if isinstance(t.text_projection, nn.Linear):
        return t.text_projection(pooled)
    return pooled @ t.text_projection


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
