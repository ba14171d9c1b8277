"""MobileCLIP-S0's text tower ("mct"), written from the architecture description.

No maintained library ships it (open_clip has S1/S2/B but not S0), so it is ours. Submodule names are
those of Apple's released checkpoint, so ``text_encoder.<key>`` in ``mobileclip_s0.pt`` loads as is.

    token embedding + learned positional embedding
    -> RepMixerBlock -> 4 x pre-norm transformer layer -> RepMixerBlock
    -> final LayerNorm -> token at argmax(ids) (EOT) -> x @ projection

The transformer layer is also reusable on its own (:class:`TransformerLayer`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
LN_EPS = 1e-5


class ConvBN(nn.Sequential):
    """Conv (no bias) followed by BatchNorm; Apple's ``conv``/``bn`` names."""

    def __init__(self, channels: int, kernel=(1, 11), padding=(0, 5), groups=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=padding, bias=False,
                              groups=groups or channels)
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS)


class RepBranches(nn.Module):
    """Train-time multi-branch block: sum of conv-BN branches plus an identity BatchNorm.

    ``rbr_conv`` may be empty (a pure BN "norm" branch). No activation, no 1x1 scale branch: that is
    the form the S0 text tower uses for both the mixer and the norm of a RepMixer.
    """

    def __init__(self, channels: int, num_conv_branches: int = 1, kernel=(1, 11), padding=(0, 5)):
        super().__init__()
        self.rbr_skip = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.rbr_conv = nn.ModuleList(
            ConvBN(channels, kernel, padding) for _ in range(num_conv_branches))

    def forward(self, x):
        out = self.rbr_skip(x)
        for branch in self.rbr_conv:
            out = out + branch(x)
        return out


class RepMixer(nn.Module):
    """``x + layer_scale * (mixer(x) - norm(x))`` on (B, C, 1, L)."""

    def __init__(self, dim: int, kernel=(1, 11), padding=(0, 5)):
        super().__init__()
        self.norm = RepBranches(dim, 0)
        self.mixer = RepBranches(dim, 1, kernel, padding)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        return x + self.layer_scale * (self.mixer(x) - self.norm(x))


class ConvFFN(nn.Module):
    """Depthwise (1,11) conv-BN -> 1x1 conv -> GELU -> 1x1 conv."""

    def __init__(self, dim: int, hidden: int, kernel=(1, 11), padding=(0, 5)):
        super().__init__()
        self.conv = ConvBN(dim, kernel, padding)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.conv(x))))


class RepMixerBlock(nn.Module):
    """RepMixer token mixing then a layer-scaled ConvFFN, on sequences (B, L, C)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.token_mixer = RepMixer(dim)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        x = x.transpose(1, 2).unsqueeze(2)          # (B, L, C) -> (B, C, 1, L)
        x = self.token_mixer(x)                     # RepMixer, or its fused depthwise conv
        h = self.convffn(x)
        if self.layer_scale is not None:            # None once folded into convffn.fc2
            h = self.layer_scale * h
        x = x + h
        return x.squeeze(2).transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Fused-qkv attention; qkv splits as (3, heads, head_dim). Softmax in fp32, explicit (no SDPA)."""

    def __init__(self, dim: int, heads: int, causal: bool = False):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.causal = causal
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv_proj(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.causal:
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            attn = attn.masked_fill(mask, float("-inf"))
        attn = torch.softmax(attn.float(), dim=-1).to(q.dtype)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype."""

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


class TransformerLayer(nn.Module):
    """Pre-norm layer: ``x + MHA(LN(x))`` then ``x + FFN(LN(x))`` (Apple's key names)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, causal: bool = False):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.pre_norm_mha = nn.Sequential(
            LayerNormFp32(dim, eps=LN_EPS), MultiHeadAttention(dim, heads, causal), nn.Dropout(0.0))
        self.pre_norm_ffn = nn.Sequential(
            LayerNormFp32(dim, eps=LN_EPS), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0),
            nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x):
        x = x + self.pre_norm_mha(x)
        return x + self.pre_norm_ffn(x)


class _PosEmbed(nn.Module):
    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, length, dim))


class LearnablePositionalEmbedding(nn.Module):
    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos_embed = _PosEmbed(length, dim)

    def forward(self, seq_len: int):
        pe = self.pos_embed.pos_embed
        if seq_len != pe.shape[2]:
            raise ValueError(f"text input has {seq_len} tokens; this tower takes exactly "
                             f"{pe.shape[2]} (pad with 0 to the context length)")
        return pe.reshape(1, seq_len, pe.shape[-1])


class MCTTextEncoder(nn.Module):
    """MobileCLIP-S0 text encoder. ``forward(ids [B,77]) -> [B, embed_dim]`` (not normalized)."""

    def __init__(self, vocab_size=49408, context_length=77, width=512, heads=8, embed_dim=512,
                 num_transformer_layers=4, mlp_ratio=4.0):
        super().__init__()
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.output_dim = embed_dim
        self.embedding_layer = nn.Embedding(vocab_size, width)
        self.positional_embedding = LearnablePositionalEmbedding(context_length, width)
        layers = [RepMixerBlock(width, mlp_ratio)]
        layers += [TransformerLayer(width, heads, mlp_ratio) for _ in range(num_transformer_layers)]
        layers += [RepMixerBlock(width, mlp_ratio)]
        self.transformer = nn.ModuleList(layers)
        self.final_layer_norm = LayerNormFp32(width, eps=LN_EPS)
        self.projection_layer = nn.Parameter(torch.empty(width, embed_dim))
        nn.init.normal_(self.projection_layer, std=width ** -0.5)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.embedding_layer(text)
        x = x + self.positional_embedding(text.shape[1]).to(x.dtype)
        for layer in self.transformer:
            x = layer(x)
        x = self.final_layer_norm(x)
        eot = text.argmax(dim=-1)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return x @ self.projection_layer
