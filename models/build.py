"""Build the train-time (unfused) torch module of a registry model.

Every model is an open_clip ``CustomTextCLIP`` built from the open_clip config the spec names, with
timm image towers. Two deviations from what open_clip builds:

* MobileCLIP-S0's text tower is ours (:mod:`.text_mct`): open_clip has no MobileCLIP-S0.
* Apple's MobileCLIP-B/B-LT ViT-B/16 tower pads its first stem conv (k4, s4) by 1 and uses LayerNorm
  eps 1e-5; timm's ``vit_base_mci_224`` pads 0 and uses 1e-6. We set Apple's values.
"""
from __future__ import annotations

import logging

from torch import nn

from .registry import ModelSpec
from .text_mct import MCTTextEncoder


def build_module(spec: ModelSpec) -> nn.Module:
    import open_clip
    from open_clip.model import CustomTextCLIP

    cfg = open_clip.get_model_config(spec.open_clip_config)
    if cfg is None:  # pragma: no cover - depends on the installed open_clip
        raise RuntimeError(f"open_clip {open_clip.__version__} has no config '{spec.open_clip_config}'"
                           f" (needed by {spec.name}); upgrade open_clip_torch")
    cfg = {k: v for k, v in cfg.items() if k != "custom_text"}
    logging.getLogger("open_clip").setLevel(logging.ERROR)
    model = CustomTextCLIP(**cfg)
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
    return model.eval()
