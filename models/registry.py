"""The model zoo: one :class:`ModelSpec` per supported model.

A spec is the contract every later stage reads (export writes it into the bundle manifest, the apps
read it from there): image size and preprocessing, tokenizer, embedding size, the checkpoint layouts
the loader accepts, and the official download with its checksum.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Optional

from .errors import UnknownModelError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

APPLE_URL = "https://docs-assets.developer.apple.com/ml-research/datasets/mobileclip/{}"
HF_URL = "https://huggingface.co/{}/resolve/main/{}"

APPLE_LICENSE = ("Apple ml-mobileclip weights: Apple Machine Learning Research Model license "
                 "(research use; see https://github.com/apple/ml-mobileclip)")
MC2_LICENSE = ("MobileCLIP2 weights: Apple Machine Learning Research Model license "
               "(see https://huggingface.co/apple)")


@dataclass(frozen=True)
class Checkpoint:
    """Where the official weights live. ``sha256`` is None where no published checksum is known."""
    url: str
    filename: str
    sha256: Optional[str]
    size: Optional[int] = None
    layout: str = "apple"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                      # "mobileclip" (Apple .pt layout) | "mobileclip2" (open_clip layout)
    open_clip_config: str            # open_clip model config the towers are built from
    image_tower: str                 # human-readable description of the image tower
    text_tower: str                  # human-readable description of the text tower
    image_size: int
    resize_size: int                 # shorter side is resized to this, then center-cropped to image_size
    interpolation: str               # "bilinear" | "bicubic"
    mean: Optional[tuple]            # None: the network takes [0,1] RGB directly
    std: Optional[tuple]
    embed_dim: int
    text_width: int
    text_heads: int
    text_layers: int
    causal_text: bool
    layouts: tuple                   # checkpoint layouts load_model accepts
    checkpoint: Checkpoint
    license: str
    tokenizer: str = "openai-clip-bpe"
    context_length: int = 77
    vocab_size: int = 49408
    custom_text: Optional[str] = None   # "mct": our own MobileCLIP-S0 text tower
    apple_vit_stem: bool = False        # ViT-B/16 tower: Apple's stem padding and LayerNorm eps
    aliases: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean) if self.mean else None
        d["std"] = list(self.std) if self.std else None
        d["layouts"] = list(self.layouts)
        d["aliases"] = list(self.aliases)
        return d


def _apple(name, file, sha, size=None):
    return Checkpoint(APPLE_URL.format(file), file, sha, size, "apple")


def _hf(repo, file, sha, size=None):
    return Checkpoint(HF_URL.format(repo, file), file, sha, size, "open_clip")


_MCI_TEXT = "12-layer pre-norm transformer, width 512, 8 heads, no causal mask"

_SPECS = [
    ModelSpec(
        name="mobileclip_s0", family="mobileclip", open_clip_config="MobileCLIP2-S0",
        image_tower="MCi0 (timm fastvit_mci0)", text_tower="mct: RepMixer + 4 transformer layers + RepMixer",
        image_size=256, resize_size=256, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=6, causal_text=False, layouts=("apple", "native"),
        checkpoint=_apple("mobileclip_s0", "mobileclip_s0.pt",
                          "809b408eff74f8058843e86a1f92967097d42ba782450e85b8f4867b7f0ca0b7", 215934653),
        license=APPLE_LICENSE, custom_text="mct"),
    ModelSpec(
        name="mobileclip_s1", family="mobileclip", open_clip_config="MobileCLIP-S1",
        image_tower="MCi1 (timm fastvit_mci1)", text_tower=_MCI_TEXT,
        image_size=256, resize_size=256, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=False, layouts=("apple", "native"),
        checkpoint=_apple("mobileclip_s1", "mobileclip_s1.pt",
                          "1270fab6ea23bacbd61cea564bd521a7e875fdb0fcb6d31382bccf4d973b71a6", 340784294),
        license=APPLE_LICENSE),
    ModelSpec(
        name="mobileclip_s2", family="mobileclip", open_clip_config="MobileCLIP-S2",
        image_tower="MCi2 (timm fastvit_mci2)", text_tower=_MCI_TEXT,
        image_size=256, resize_size=256, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=False, layouts=("apple", "native"),
        checkpoint=_apple("mobileclip_s2", "mobileclip_s2.pt",
                          "063a87b2a846791bcffafa9f7670ec3968d572a3e7f99e5e4b14348006631d6f", 398067246),
        license=APPLE_LICENSE),
    ModelSpec(
        name="mobileclip_b", family="mobileclip", open_clip_config="MobileCLIP-B",
        image_tower="ViT-B/16 with conv stem (timm vit_base_mci_224, Apple padding/eps)",
        text_tower="12-layer pre-norm transformer, width 512, 8 heads, causal mask",
        image_size=224, resize_size=224, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=True, layouts=("apple", "native"),
        checkpoint=_apple("mobileclip_b", "mobileclip_b.pt",
                          "0dd1d92c911841121a0a82af2db74941ffa78bc05d215334b95db030242ec7f9"),
        license=APPLE_LICENSE, apple_vit_stem=True),
    ModelSpec(
        name="mobileclip_blt", family="mobileclip", open_clip_config="MobileCLIP-B",
        image_tower="ViT-B/16 with conv stem (timm vit_base_mci_224, Apple padding/eps)",
        text_tower="12-layer pre-norm transformer, width 512, 8 heads, causal mask",
        image_size=224, resize_size=224, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=True, layouts=("apple", "native"),
        checkpoint=_apple("mobileclip_blt", "mobileclip_blt.pt",
                          "670844f7a886dd6eff7a9285adfc53f3d3c889c03bfc8354010cb5c6bf27441a", 599214572),
        license=APPLE_LICENSE, apple_vit_stem=True, aliases=("mobileclip_b_lt",)),
    ModelSpec(
        name="mobileclip2_s0", family="mobileclip2", open_clip_config="MobileCLIP2-S0",
        image_tower="MCi0 (timm fastvit_mci0)", text_tower=_MCI_TEXT,
        image_size=256, resize_size=256, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=False, layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-S0-OpenCLIP", "open_clip_pytorch_model.bin", None),
        license=MC2_LICENSE),
    ModelSpec(
        name="mobileclip2_s2", family="mobileclip2", open_clip_config="MobileCLIP2-S2",
        image_tower="MCi2 (timm fastvit_mci2)", text_tower=_MCI_TEXT,
        image_size=256, resize_size=256, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=False, layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-S2-OpenCLIP", "open_clip_pytorch_model.bin",
                       "15179d4f3b2f348f6b7373eb50789cdaf226b9e54fde753e39bef789616884b6"),
        license=MC2_LICENSE),
    ModelSpec(
        name="mobileclip2_b", family="mobileclip2", open_clip_config="MobileCLIP2-B",
        image_tower="ViT-B/16 with conv stem (timm vit_base_mci_224)",
        text_tower="12-layer pre-norm transformer, width 512, 8 heads, causal mask",
        image_size=224, resize_size=224, interpolation="bilinear", mean=None, std=None, embed_dim=512,
        text_width=512, text_heads=8, text_layers=12, causal_text=True, layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-B-OpenCLIP", "open_clip_pytorch_model.bin",
                       "50dded4edfc94f26161e92a7bea8279ce2781caeb67eb44980f5cf5cd9b48425"),
        # open_clip-layout weights are published for open_clip's tower definition: keep timm's stem/eps
        license=MC2_LICENSE),
    ModelSpec(
        name="mobileclip2_s3", family="mobileclip2", open_clip_config="MobileCLIP2-S3",
        image_tower="MCi3 (timm fastvit_mci3)",
        text_tower="12-layer pre-norm transformer, width 768, 12 heads, no causal mask",
        image_size=256, resize_size=256, interpolation="bilinear", mean=OPENAI_MEAN, std=OPENAI_STD,
        embed_dim=768, text_width=768, text_heads=12, text_layers=12, causal_text=False,
        layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-S3-OpenCLIP", "open_clip_pytorch_model.bin",
                       "553b3394c826383d899beb7297b973947f588d7348e69bd6776cf8fb44209b76"),
        license=MC2_LICENSE),
    ModelSpec(
        name="mobileclip2_s4", family="mobileclip2", open_clip_config="MobileCLIP2-S4",
        image_tower="MCi4 (timm fastvit_mci4)",
        text_tower="12-layer pre-norm transformer, width 768, 12 heads, no causal mask",
        image_size=256, resize_size=256, interpolation="bilinear", mean=OPENAI_MEAN, std=OPENAI_STD,
        embed_dim=768, text_width=768, text_heads=12, text_layers=12, causal_text=False,
        layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-S4-OpenCLIP", "open_clip_pytorch_model.bin",
                       "f25c203a6c982e91e6f55da0427cc736594ea701e5afd62049cdae8d48223af2"),
        license=MC2_LICENSE),
    ModelSpec(
        name="mobileclip2_l14", family="mobileclip2", open_clip_config="MobileCLIP2-L-14",
        image_tower="ViT-L/14 (timm vit_large_patch14_clip_224)",
        text_tower="12-layer pre-norm transformer, width 768, 12 heads, no causal mask",
        image_size=224, resize_size=224, interpolation="bicubic", mean=OPENAI_MEAN, std=OPENAI_STD,
        embed_dim=768, text_width=768, text_heads=12, text_layers=12, causal_text=False,
        layouts=("open_clip",),
        checkpoint=_hf("timm/MobileCLIP2-L-14-OpenCLIP", "open_clip_pytorch_model.bin", None),
        license=MC2_LICENSE, aliases=("mobileclip2_l_14",)),
]

REGISTRY: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
_ALIASES = {a: s.name for s in _SPECS for a in s.aliases}


def list_models() -> list[str]:
    """Names of every registry model, in registry order."""
    return [s.name for s in _SPECS]


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (case and '-'/'_' insensitive); unknown names suggest close ones."""
    key = _normalize(name)
    key = _ALIASES.get(key, key)
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, list(REGISTRY) + list(_ALIASES), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModelError(
        f"unknown model '{name}': {hint}choose one of: {', '.join(list_models())} "
        f"(`clip-models list` shows them all)")
