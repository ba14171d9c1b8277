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
    extra: tuple = ()                # (filename, url) downloaded next to the weights (HF config.json)
    repo: Optional[str] = None       # Hugging Face repo id of an "hf" checkpoint


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                      # "mobileclip" | "mobileclip2" | "openai" | "tinyclip"
    open_clip_config: Optional[str]  # open_clip model config the towers are built from
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
    # open_clip-style config (embed_dim, vision_cfg, text_cfg, quick_gelu) where open_clip has none
    model_config: Optional[dict] = field(default=None, hash=False, compare=False)
    hf_repo: Optional[str] = None       # Hugging Face CLIPModel repo with the same weights, if any
    pruned: bool = False                # TinyCLIP "auto": per-block widths come from the checkpoint
    pruned_default: Optional[dict] = field(default=None, hash=False, compare=False)  # widths w/o one

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


def _openai(url):
    # OpenAI's clip.py checks these files against the sha256 that is the URL's second-to-last part
    return Checkpoint(url, url.rsplit("/", 1)[1], url.rsplit("/", 2)[1], None, "openai")


def _hf_dir(repo, weights="pytorch_model.bin"):
    """A Hugging Face ``CLIPModel`` repo: ``config.json`` + weights, downloaded into one directory."""
    return Checkpoint(HF_URL.format(repo, weights), weights, None, None, "hf",
                      extra=(("config.json", HF_URL.format(repo, "config.json")),), repo=repo)


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

OPENAI_LICENSE = "OpenAI CLIP weights: MIT license (see https://github.com/openai/CLIP)"
_OPENAI_TEXT = "12-layer causal transformer, width {}, {} heads, QuickGELU, EOT pooling"
_OPENAI = "https://openaipublic.azureedge.net/clip/models/{}/{}"


def _openai_spec(name, config, image_tower, size, embed, text_width, text_heads, url, aliases, hf=None):
    # architecture: open_clip's own "<name>-quickgelu" config (OpenAI's released models use QuickGELU)
    layouts = ("openai", "hf", "native") if hf else ("openai", "native")
    return ModelSpec(
        name=name, family="openai", open_clip_config=config, image_tower=image_tower,
        text_tower=_OPENAI_TEXT.format(text_width, text_heads), image_size=size, resize_size=size,
        interpolation="bicubic", mean=OPENAI_MEAN, std=OPENAI_STD, embed_dim=embed, text_width=text_width,
        text_heads=text_heads, text_layers=12, causal_text=True, layouts=layouts,
        checkpoint=_openai(url), license=OPENAI_LICENSE, aliases=aliases, hf_repo=hf)


_SPECS += [
    _openai_spec("openai_rn50", "RN50-quickgelu", "ModifiedResNet-50 (open_clip), attention pooling", 224,
                 1024, 512, 8, _OPENAI.format(
                     "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt"),
                 ("clip_rn50",)),
    # the rest of OpenAI's clip.available_models() ResNets (clip/clip.py _MODELS); towers from open_clip's
    # RN101/RN50x4/RN50x16/RN50x64-quickgelu configs: layers [3,4,23,3] / [4,6,10,6] / [6,8,18,8] /
    # [3,15,36,10], stem width 64 / 80 / 96 / 128, text width = embed dim, heads = width / 64
    _openai_spec("openai_rn101", "RN101-quickgelu", "ModifiedResNet-101 (open_clip), attention pooling", 224,
                 512, 512, 8, _OPENAI.format(
                     "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt"),
                 ("clip_rn101",)),
    _openai_spec("openai_rn50x4", "RN50x4-quickgelu", "ModifiedResNet-50x4 (open_clip), attention pooling",
                 288, 640, 640, 10, _OPENAI.format(
                     "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt"),
                 ("clip_rn50x4",)),
    _openai_spec("openai_rn50x16", "RN50x16-quickgelu", "ModifiedResNet-50x16 (open_clip), attention pooling",
                 384, 768, 768, 12, _OPENAI.format(
                     "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt"),
                 ("clip_rn50x16",)),
    _openai_spec("openai_rn50x64", "RN50x64-quickgelu", "ModifiedResNet-50x64 (open_clip), attention pooling",
                 448, 1024, 1024, 16, _OPENAI.format(
                     "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", "RN50x64.pt"),
                 ("clip_rn50x64",)),
    _openai_spec("openai_vit_b32", "ViT-B-32-quickgelu", "ViT-B/32, width 768, 12 layers", 224, 512, 512,
                 8, _OPENAI.format("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
                                   "ViT-B-32.pt"), ("clip_vit_b32", "openai_vit_b_32"),
                 hf="openai/clip-vit-base-patch32"),
    _openai_spec("openai_vit_b16", "ViT-B-16-quickgelu", "ViT-B/16, width 768, 12 layers", 224, 512, 512,
                 8, _OPENAI.format("5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
                                   "ViT-B-16.pt"), ("clip_vit_b16", "openai_vit_b_16"),
                 hf="openai/clip-vit-base-patch16"),
    _openai_spec("openai_vit_l14", "ViT-L-14-quickgelu", "ViT-L/14, width 1024, 24 layers", 224, 768, 768,
                 12, _OPENAI.format("b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
                                    "ViT-L-14.pt"), ("clip_vit_l14", "openai_vit_l_14"),
                 hf="openai/clip-vit-large-patch14"),
    _openai_spec("openai_vit_l14_336", "ViT-L-14-336-quickgelu", "ViT-L/14 at 336 px, width 1024, 24 layers",
                 336, 768, 768, 12, _OPENAI.format(
                     "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt"),
                 ("clip_vit_l14_336", "openai_vit_l_14_336"), hf="openai/clip-vit-large-patch14-336"),
]

# TinyCLIP (Microsoft, ICCV 2023). Configs: microsoft/Cream TinyCLIP/src/open_clip/model_configs/
# TinyCLIP-*.json (the auto ones: wkcn/TinyCLIP src/open_clip/model_configs/TinyCLIP-auto-*.json, which
# are ViT-B-32.json plus mask flags). All: image 224, exact GELU (no config sets quick_gelu), head
# width 64, MLP x4, LayerNorm eps 1e-5, OpenAI mean/std, bicubic resize (transform.py), causal text
# with EOT (argmax) pooling. Weights: github.com/wkcn/TinyCLIP-model-zoo releases (fork .pt) and, for
# the four manual ViTs, Hugging Face CLIPModel repos wkcn/TinyCLIP-ViT-*.
TINYCLIP_LICENSE = "TinyCLIP weights: MIT license (see https://github.com/microsoft/Cream/tree/main/TinyCLIP)"
TINYCLIP_URL = "https://github.com/wkcn/TinyCLIP-model-zoo/releases/download/checkpoints/{}"


def _text_cfg(width, heads, layers):
    return {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers}


def _vit_cfg(width, layers, patch):
    return {"image_size": 224, "layers": layers, "width": width, "patch_size": patch}


def _tinyclip_spec(name, image_tower, embed, vision_cfg, text, checkpoint, aliases, hf=None,
                   pruned_default=None):
    width, heads, layers = text
    layouts = (("hf", "tinyclip", "native") if checkpoint.layout == "hf" else ("tinyclip", "native"))
    return ModelSpec(
        name=name, family="tinyclip", open_clip_config=None, image_tower=image_tower,
        text_tower=f"{layers}-layer causal transformer, width {width}, {heads} heads, GELU, EOT pooling"
                   + (" (pruned per layer)" if pruned_default else ""),
        image_size=224, resize_size=224, interpolation="bicubic", mean=OPENAI_MEAN, std=OPENAI_STD,
        embed_dim=embed, text_width=width, text_heads=heads, text_layers=layers, causal_text=True,
        layouts=layouts, checkpoint=checkpoint, license=TINYCLIP_LICENSE, aliases=aliases, hf_repo=hf,
        model_config={"embed_dim": embed, "quick_gelu": False, "vision_cfg": vision_cfg,
                      "text_cfg": _text_cfg(width, heads, layers)},
        pruned=pruned_default is not None, pruned_default=pruned_default)


def _fork(file):
    return Checkpoint(TINYCLIP_URL.format(file), file, None, None, "tinyclip")


def _auto_widths(v_width, v_heads, v_mlp, t_width, t_heads, t_mlp):
    return {"vision": {"width": v_width, "heads": v_heads, "mlp": v_mlp},
            "text": {"width": t_width, "heads": t_heads, "mlp": t_mlp}}


# Widths of the auto models' seeded test weights only (a real checkpoint's are read from its shapes):
# residual widths as reported for the released files where known (22M: 370/509, 45M: 549/510,
# 63M: 679/-), per-layer heads and MLP widths chosen to give the published parameter counts, and one
# attention-free layer in 22M (the fork drops a layer's ln_1/attn when all its heads are pruned).
_AUTO_22M = _auto_widths(
    370, [6, 6, 6, 5, 5, 5, 4, 4, 4, 3, 3, 0],
    [2280, 2184, 2096, 2000, 1912, 1824, 1728, 1640, 1552, 1456, 1368, 1272],
    509, [8, 6, 6, 5, 4, 4, 3, 3, 2, 2, 1, 0], [416, 400, 376, 360, 344, 328, 312, 296, 280, 264, 248, 232])
_AUTO_45M = _auto_widths(
    549, [10, 10, 9, 9, 8, 8, 7, 7, 6, 6, 5, 4],
    [2960, 2840, 2720, 2600, 2488, 2368, 2248, 2128, 2016, 1896, 1776, 1656],
    510, [8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 2], [960, 920, 880, 840, 808, 768, 728, 688, 648, 616, 576, 536])
_AUTO_63M = _auto_widths(
    679, [12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 6],
    [3208, 3080, 2952, 2824, 2696, 2568, 2440, 2312, 2184, 2056, 1920, 1792],
    512, [8, 8, 8, 8, 7, 7, 7, 6, 6, 5, 5, 4],
    [2112, 2032, 1944, 1864, 1776, 1696, 1608, 1520, 1440, 1352, 1272, 1184])

_RN = [3, 4, 6, 3]
_SPECS += [
    _tinyclip_spec("tinyclip_vit_8m_16_text_3m", "ViT-8M/16, width 256, 10 layers", 512, _vit_cfg(256, 10, 16),
                   (256, 4, 3), _hf_dir("wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"), ("tinyclip_vit_8m",),
                   hf="wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"),
    _tinyclip_spec("tinyclip_vit_39m_16_text_19m", "ViT-39M/16, width 512, 12 layers", 512,
                   _vit_cfg(512, 12, 16), (512, 8, 6), _hf_dir("wkcn/TinyCLIP-ViT-39M-16-Text-19M-YFCC15M"),
                   ("tinyclip_vit_39m",), hf="wkcn/TinyCLIP-ViT-39M-16-Text-19M-YFCC15M"),
    _tinyclip_spec("tinyclip_vit_40m_32_text_19m", "ViT-40M/32, width 512, 12 layers", 512,
                   _vit_cfg(512, 12, 32), (512, 8, 6), _hf_dir("wkcn/TinyCLIP-ViT-40M-32-Text-19M-LAION400M"),
                   ("tinyclip_vit_40m",), hf="wkcn/TinyCLIP-ViT-40M-32-Text-19M-LAION400M"),
    _tinyclip_spec("tinyclip_vit_61m_32_text_29m", "ViT-61M/32, width 640, 12 layers", 512,
                   _vit_cfg(640, 12, 32), (512, 8, 9), _hf_dir("wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M"),
                   ("tinyclip_vit_61m",), hf="wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M"),
    _tinyclip_spec("tinyclip_resnet_19m_text_19m", "ModifiedResNet [3,4,6,3], width 44, attention pooling",
                   1024, {"image_size": 224, "layers": _RN, "width": 44, "patch_size": None}, (512, 8, 6),
                   _fork("TinyCLIP-ResNet-19M-Text-19M-LAION400M.pt"), ("tinyclip_rn19m", "tinyclip_resnet_19m")),
    _tinyclip_spec("tinyclip_resnet_30m_text_29m", "ModifiedResNet [3,4,6,3], width 56, attention pooling",
                   1024, {"image_size": 224, "layers": _RN, "width": 56, "patch_size": None}, (512, 8, 9),
                   _fork("TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt"), ("tinyclip_rn30m", "tinyclip_resnet_30m")),
    _tinyclip_spec("tinyclip_auto_vit_63m_32_text_31m", "ViT-B/32 pruned per layer (auto), ~63M", 512,
                   _vit_cfg(768, 12, 32), (512, 8, 12), _fork("TinyCLIP-auto-ViT-63M-32-Text-31M-LAION400M.pt"),
                   ("tinyclip_auto_vit_63m",), pruned_default=_AUTO_63M),
    _tinyclip_spec("tinyclip_auto_vit_45m_32_text_18m", "ViT-B/32 pruned per layer (auto), ~45M", 512,
                   _vit_cfg(768, 12, 32), (512, 8, 12), _fork("TinyCLIP-auto-ViT-45M-32-Text-18M-LAION400M.pt"),
                   ("tinyclip_auto_vit_45m",), pruned_default=_AUTO_45M),
    _tinyclip_spec("tinyclip_auto_vit_22m_32_text_10m", "ViT-B/32 pruned per layer (auto), ~22M", 512,
                   _vit_cfg(768, 12, 32), (512, 8, 12), _fork("TinyCLIP-auto-ViT-22M-32-Text-10M-LAION400M.pt"),
                   ("tinyclip_auto_vit_22m",), pruned_default=_AUTO_22M),
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
