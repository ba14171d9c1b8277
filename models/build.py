"""Build the train-time (unfused) torch module of a registry model.

Two architectures, chosen by the checkpoint layout (``arch_of``):

* ``open_clip``: an open_clip ``CustomTextCLIP`` built from the open_clip config the spec names (or,
  for models open_clip has no config for, the config the spec carries, e.g. TinyCLIP's from its fork),
  with timm image towers for MobileCLIP. The Apple, open_clip, OpenAI and TinyCLIP-fork layouts load
  into it. Deviations from what open_clip builds:

  * MobileCLIP-S0's text tower is ours (:mod:`.text_mct`): open_clip has no MobileCLIP-S0.
  * Apple's MobileCLIP-B/B-LT ViT-B/16 tower pads its first stem conv (k4, s4) by 1 and uses LayerNorm
    eps 1e-5; timm's ``vit_base_mci_224`` pads 0 and uses 1e-6. We set Apple's values.
  * TinyCLIP's "auto" models are pruned per layer: :mod:`.pruned` resizes each block to the widths the
    checkpoint has.
* ``hf``: transformers' ``CLIPModel`` (:mod:`.hf`), for Hugging Face ``CLIPModel`` checkpoints.
"""
from __future__ import annotations

import copy
import logging

from torch import nn

from .registry import ModelSpec
from .text_mct import MCTTextEncoder

ARCHS = ("open_clip", "hf")


def arch_of(layout: str) -> str:
    """The module architecture a checkpoint layout loads into."""
    return "hf" if layout == "hf" else "open_clip"


def default_arch(spec: ModelSpec) -> str:
    return arch_of(spec.layouts[0])


def open_clip_config(spec: ModelSpec) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``) of ``spec``."""
    if spec.model_config is not None:
        return copy.deepcopy(spec.model_config)
    import open_clip
    cfg = open_clip.get_model_config(spec.open_clip_config)
    if cfg is None:  # pragma: no cover - depends on the installed open_clip
        raise RuntimeError(f"open_clip {open_clip.__version__} has no config '{spec.open_clip_config}'"
                           f" (needed by {spec.name}); upgrade open_clip_torch")
    return {k: v for k, v in cfg.items() if k != "custom_text"}


def build_module(spec: ModelSpec, arch: str = None, widths: dict = None,
                 hf_config: dict = None) -> nn.Module:
    """The module of ``spec`` in ``arch`` (default: the arch of its first layout).

    ``widths``: per-block widths of a pruned (TinyCLIP auto) model, from :func:`.pruned.infer_widths`;
    ``hf_config``: a HF checkpoint's ``config.json`` (checked against the spec).
    """
    arch = arch or default_arch(spec)
    if arch == "hf":
        from .hf import build_hf
        return build_hf(spec, hf_config)
    if arch != "open_clip":
        raise ValueError(f"unknown architecture '{arch}': one of {', '.join(ARCHS)}")
    from open_clip.model import CustomTextCLIP

    logging.getLogger("open_clip").setLevel(logging.ERROR)
    model = CustomTextCLIP(**open_clip_config(spec))
    if spec.custom_text == "mct":
        model.text = MCTTextEncoder(vocab_size=spec.vocab_size, context_length=spec.context_length,
                                    width=spec.text_width, heads=spec.text_heads,
                                    embed_dim=spec.embed_dim)
    if spec.apple_vit_stem:
        trunk = model.visual.trunk
        trunk.patch_embed.backbone[0].conv.padding = (1, 1)
        for m in trunk.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-5
    if spec.pruned:
        from .pruned import prune_to
        prune_to(model, widths or spec.pruned_default)
    return model.eval()
