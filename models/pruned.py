"""TinyCLIP "auto" models: ViT-B/32 CLIPs pruned per layer, widths read from the checkpoint.

TinyCLIP's automatic weight inheritance (microsoft/Cream ``TinyCLIP/src/open_clip/l0module.py`` and
``model.py``, ``prune()`` methods; configs ``TinyCLIP-auto-ViT-*.json`` in wkcn/TinyCLIP) starts from
ViT-B/32 + a 12-layer text transformer and removes, with L0 masks,

* the residual width of each tower (one width per tower: ``ln_pre``/``positional_embedding`` size),
* attention heads per layer (head width stays 64; a layer with no heads has no ``ln_1``/``attn`` keys),
* MLP hidden units per layer.

The released checkpoints are physically pruned: every tensor has its reduced shape and the number of
layers is unchanged. Nothing in the config records the widths; :func:`infer_widths` reads them from
the shapes. open_clip's blocks cannot hold them (``nn.MultiheadAttention`` needs heads x 64 == width),
so :class:`PrunedBlock` is ours: the same key names as open_clip's ``ResidualAttentionBlock`` (so the
checkpoint loads strictly), pre-LN, exact GELU, attention computed as the fork's ``naive`` path does.
"""
from __future__ import annotations

import math
import re
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

HEAD_DIM = 64


class PrunedAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * heads * HEAD_DIM, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * heads * HEAD_DIM))
        self.out_proj = nn.Linear(heads * HEAD_DIM, width)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, _ = x.shape
        # (3, B, heads, N, 64) then select: XNNPACK takes these; a chunk/split of the last dim it does not
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(b, n, 3, self.heads, HEAD_DIM)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        scores = (q * (1.0 / math.sqrt(HEAD_DIM))) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores + attn_mask.to(scores.dtype)
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, self.heads * HEAD_DIM)
        return self.out_proj(out)


class PrunedMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class PrunedBlock(nn.Module):
    """A pre-LN transformer block with its own head count and MLP width (either may be pruned away)."""

    def __init__(self, width: int, heads: int, mlp: Optional[int], norm_layer, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        if heads:
            self.ln_1 = norm_layer(width)
            self.attn = PrunedAttention(width, heads)
        else:
            self.ln_1 = self.attn = None
        if mlp is not None:
            self.ln_2 = norm_layer(width)
            self.mlp = PrunedMlp(width, mlp)
        else:
            self.ln_2 = self.mlp = None

    def get_weight_dtype(self) -> torch.dtype:  # open_clip's Transformer asks its first block
        return (self.mlp.c_fc if self.mlp is not None else self.attn.out_proj).weight.dtype

    def forward(self, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask: Optional[torch.Tensor] = None):
        x = q_x if self.batch_first else q_x.transpose(0, 1)
        if self.attn is not None:
            x = x + self.attn(self.ln_1(x), attn_mask)
        if self.mlp is not None:
            x = x + self.mlp(self.ln_2(x))
        return x if self.batch_first else x.transpose(0, 1)


def _blocks(widths: dict, norm_layer, batch_first: bool) -> nn.ModuleList:
    return nn.ModuleList(PrunedBlock(widths["width"], h, m, norm_layer, batch_first)
                         for h, m in zip(widths["heads"], widths["mlp"]))


def prune_to(model: nn.Module, widths: dict) -> nn.Module:
    """Resize an open_clip ViT-B/32 ``CustomTextCLIP`` (in place) to per-tower/per-layer ``widths``:
    ``{"vision": {"width": D, "heads": [h_i], "mlp": [m_i or None]}, "text": {...}}``."""
    visual, text = model.visual, model.text
    norm = type(visual.ln_pre)
    embed = visual.proj.shape[1]
    d = widths["vision"]["width"]
    patch = visual.conv1.kernel_size
    visual.conv1 = nn.Conv2d(3, d, kernel_size=patch, stride=patch, bias=False)
    visual.class_embedding = nn.Parameter(torch.zeros(d))
    visual.positional_embedding = nn.Parameter(torch.zeros(visual.positional_embedding.shape[0], d))
    visual.ln_pre, visual.ln_post = norm(d), norm(d)
    visual.proj = nn.Parameter(torch.zeros(d, embed))
    visual.transformer.resblocks = _blocks(widths["vision"], norm, visual.transformer.batch_first)
    visual.transformer.width = d

    d = widths["text"]["width"]
    text.token_embedding = nn.Embedding(text.token_embedding.num_embeddings, d)
    text.positional_embedding = nn.Parameter(torch.zeros(text.positional_embedding.shape[0], d))
    text.ln_final = norm(d)
    text.text_projection = nn.Parameter(torch.zeros(d, embed))
    text.transformer.resblocks = _blocks(widths["text"], norm, text.transformer.batch_first)
    text.transformer.width = text.width = d
    return model


_BLOCK = re.compile(r"^(visual|text)\.transformer\.resblocks\.(\d+)\.")


def infer_widths(sd: dict, spec=None) -> dict:
    """Per-tower/per-layer widths of a pruned checkpoint (any accepted layout), from tensor shapes."""
    from .errors import CheckpointError
    from .layouts import detect_layout, from_layout
    layout = detect_layout(sd)
    native = from_layout(sd, None, spec, layout) if layout in ("tinyclip", "native") else None
    name = spec.name if spec is not None else "this model"
    need = ("visual.ln_pre.weight", "text.positional_embedding")
    if native is None or any(k not in native for k in need):
        raise CheckpointError(f"cannot read {name}'s pruned widths from this checkpoint (no "
                              f"{' / '.join(need)} in the TinyCLIP layout); pass the TinyCLIP fork's "
                              f".pt file of the model")
    out = {}
    for tower, width_key in (("vision", "visual.ln_pre.weight"), ("text", "text.positional_embedding")):
        prefix = "visual" if tower == "vision" else "text"
        layers = 1 + max((int(m.group(2)) for k in native if (m := _BLOCK.match(k)) and m.group(1) == prefix),
                         default=-1)
        heads, mlp = [], []
        for i in range(layers):
            p = f"{prefix}.transformer.resblocks.{i}."
            qkv = native.get(p + "attn.in_proj_weight")
            heads.append(int(qkv.shape[0]) // (3 * HEAD_DIM) if qkv is not None else 0)
            fc = native.get(p + "mlp.c_fc.weight")
            mlp.append(int(fc.shape[0]) if fc is not None else None)
        out[tower] = {"width": int(native[width_key].shape[-1]), "heads": heads, "mlp": mlp}
    return out


def describe(widths: dict) -> str:
    v, t = widths["vision"], widths["text"]
    return (f"vision width {v['width']}, heads {v['heads']}; text width {t['width']}, heads {t['heads']}")
