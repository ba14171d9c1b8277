"""Checkpoint layouts and the translation between them.

* ``apple``: the flat state dict of Apple's released ``mobileclip_*.pt`` (``logit_scale``,
  ``image_encoder.model.…``, ``text_encoder.…``), unfused train-time branches, BN buffers included.
* ``native``: ``module.state_dict()`` of the module :func:`clipdeploy.models.build_module` makes: an
  open_clip ``CustomTextCLIP`` (``visual.trunk.…`` timm names, ``text.…``). For the MobileCLIP2 models
  this *is* the open_clip layout their official checkpoints use.

Apple -> native goes through the libraries' own converters (timm's ``checkpoint_filter_fn`` for the
image towers, open_clip's ``convert_mobile_clip_state_dict`` for the text towers). Native -> Apple is the
inverse, written here: it gives the exact Apple key set a model expects (for strict checking and clear
errors) and lets random test weights be written in the released layout. The tests check it against the
reference key layouts and against the forward converters.
"""
from __future__ import annotations

import re

import torch
from torch import nn

APPLE_IMAGE_PREFIX = "image_encoder.model."
APPLE_TEXT_PREFIX = "text_encoder."


def detect_layout(keys) -> str:
    """'apple', 'native' (open_clip) or 'unknown', from a checkpoint's keys."""
    keys = list(keys)
    if any(k.startswith(APPLE_IMAGE_PREFIX) or k.startswith(APPLE_TEXT_PREFIX) for k in keys):
        return "apple"
    if any(k.startswith("visual.") or k.startswith("text.") for k in keys):
        return "native"
    return "unknown"


# ----------------------------------------------------------------------------------------------
# native -> apple


def _fastvit_network_index(trunk: nn.Module) -> dict:
    """Map timm stage parts to the index they have in Apple's flat ``network`` list.

    Apple's list is, stage by stage: [downsample PatchEmbed] [RepCPE] [blocks].
    """
    idx, table = 0, {}
    for s, stage in enumerate(trunk.stages):
        if not isinstance(stage.downsample, nn.Identity):
            table[f"stages.{s}.downsample.proj"] = f"network.{idx}.proj"
            idx += 1
        if not isinstance(stage.pos_emb, nn.Identity):
            table[f"stages.{s}.pos_emb.pos_enc"] = f"network.{idx}.pe"
            idx += 1
        table[f"stages.{s}.blocks"] = f"network.{idx}"
        idx += 1
    return table


_FASTVIT_RENAMES = [
    ("stem", "patch_embed"), ("conv_kxk", "rbr_conv"), ("conv_scale", "rbr_scale"),
    ("identity", "rbr_skip"), ("final_conv", "conv_exp"), ("large_conv", "lkb_origin"),
    ("mlp", "convffn"),
]


def _fastvit_to_apple(trunk_sd: dict, trunk: nn.Module) -> dict:
    table = _fastvit_network_index(trunk)
    out = {}
    for k, v in trunk_sd.items():
        if k == "head.fc.bias":
            continue  # Apple's projection has no bias (the forward converter fills zeros)
        if k == "head.fc.weight":
            out["head.proj"] = v.t().contiguous()
            continue
        for src, dst in table.items():
            if k.startswith(src + "."):
                k = dst + k[len(src):]
                break
        k = re.sub(r"layer_scale(_[0-9])?\.gamma$", r"layer_scale\1", k)
        for src, dst in _FASTVIT_RENAMES:
            k = re.sub(rf"(^|\.){src}(\.|$)", rf"\g<1>{dst}\2", k)
        if k.startswith("conv_exp.se."):
            k = k.replace("se.fc1", "se.reduce").replace("se.fc2", "se.expand")
        out[k] = v
    return out


_VIT_RENAMES = [
    (r"^patch_embed\.backbone\.(\d+)\.conv\.", r"patch_emb.\1.block.conv."),
    (r"^patch_embed\.backbone\.(\d+)\.bn\.", r"patch_emb.\1.block.norm."),
    (r"^norm\.", "post_transformer_norm."),
    (r"^blocks\.(\d+)\.norm1\.", r"transformer.\1.pre_norm_mha.0."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"transformer.\1.pre_norm_mha.1.qkv_proj."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"transformer.\1.pre_norm_mha.1.out_proj."),
    (r"^blocks\.(\d+)\.norm2\.", r"transformer.\1.pre_norm_ffn.0."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"transformer.\1.pre_norm_ffn.1."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"transformer.\1.pre_norm_ffn.4."),
]


def _vit_to_apple(trunk_sd: dict) -> dict:
    out = {}
    for k, v in trunk_sd.items():
        if k == "head.bias":
            continue
        if k == "head.weight":
            out["classifier.proj"] = v.t().contiguous()
            continue
        if k == "pos_embed":
            out["pos_embed.pos_embed.pos_embed"] = v.reshape(1, *v.shape)
            continue
        for pat, rep in _VIT_RENAMES:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


_TEXT_RENAMES = [
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"transformer.\1.pre_norm_mha.0."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$", r"transformer.\1.pre_norm_mha.1.qkv_proj.weight"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_bias$", r"transformer.\1.pre_norm_mha.1.qkv_proj.bias"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"transformer.\1.pre_norm_mha.1.out_proj."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"transformer.\1.pre_norm_ffn.0."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"transformer.\1.pre_norm_ffn.1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"transformer.\1.pre_norm_ffn.4."),
    (r"^ln_final\.", "final_layer_norm."),
    (r"^token_embedding\.", "embedding_layer."),
    (r"^text_projection$", "projection_layer"),
]


def _open_clip_text_to_apple(text_sd: dict) -> dict:
    out = {}
    for k, v in text_sd.items():
        if k == "positional_embedding":
            out["positional_embedding.pos_embed.pos_embed"] = v.reshape(1, 1, *v.shape)
            continue
        for pat, rep in _TEXT_RENAMES:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def _split(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def native_to_apple(native_sd: dict, module: nn.Module, spec) -> dict:
    """Translate ``module.state_dict()`` (native) into Apple's released layout."""
    if spec.family != "mobileclip":
        raise ValueError(f"{spec.name} has no Apple .pt layout (it uses {spec.layouts[0]})")
    trunk = module.visual.trunk
    trunk_sd = _split(native_sd, "visual.trunk.")
    image = _vit_to_apple(trunk_sd) if spec.apple_vit_stem else _fastvit_to_apple(trunk_sd, trunk)
    text_sd = _split(native_sd, "text.")
    text = text_sd if spec.custom_text == "mct" else _open_clip_text_to_apple(text_sd)
    out = {"logit_scale": native_sd["logit_scale"]}
    out.update({APPLE_TEXT_PREFIX + k: v for k, v in text.items()})
    out.update({APPLE_IMAGE_PREFIX + k: v for k, v in image.items()})
    return out


# ----------------------------------------------------------------------------------------------
# apple -> native (through the libraries' converters)


@torch.no_grad()
def apple_to_native(apple_sd: dict, module: nn.Module, spec) -> dict:
    """Translate an Apple-layout state dict into ``module``'s native keys.

    Keys the converters do not know are dropped here: check the key set against
    :func:`expected_apple_shapes` first (``load_state_dict_checked`` does).
    """
    from open_clip.convert import convert_mobile_clip_state_dict

    out = convert_mobile_clip_state_dict(module, dict(apple_sd), fastvit=not spec.apple_vit_stem)
    if spec.custom_text == "mct":
        out = {k: v for k, v in out.items() if not k.startswith("text.")}
        out.update({"text." + k[len(APPLE_TEXT_PREFIX):]: v for k, v in apple_sd.items()
                    if k.startswith(APPLE_TEXT_PREFIX)})
    return out


def expected_apple_shapes(module: nn.Module, spec) -> dict:
    """{apple key: (dtype, shape)} that ``module`` needs, from its own state dict."""
    sd = native_to_apple(module.state_dict(), module, spec)
    return {k: (v.dtype, tuple(v.shape)) for k, v in sd.items()}
