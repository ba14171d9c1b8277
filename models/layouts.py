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
    """'apple', 'hf', 'tinyclip', 'openai', 'native' (open_clip) or 'unknown', from a checkpoint's keys."""
    keys = list(keys)
    if any(k.startswith(APPLE_IMAGE_PREFIX) or k.startswith(APPLE_TEXT_PREFIX) for k in keys):
        return "apple"
    if any(k.startswith("text_model.") or k.startswith("vision_model.") for k in keys):
        return "hf"
    if any(k.startswith(p) for k in keys for p in TINYCLIP_PREFIXES):
        return "tinyclip"
    if any(k.startswith("visual.") for k in keys) and ("token_embedding.weight" in keys
                                                        or "text_projection" in keys):
        return "openai"
    if any(k.startswith("visual.") or k.startswith("text.") for k in keys):
        return "native"
    return "unknown"


# ----------------------------------------------------------------------------------------------
# OpenAI (root text keys) and the TinyCLIP fork (wrapped towers) <-> native


# Constants OpenAI's published CLIP files keep next to the weights, as 0-dim int tensors (OpenAI's own
# loader, clip/model.py build_model, deletes them before load_state_dict), with the spec field each
# must equal. They are read only at the checkpoint's root.
OPENAI_CONSTANTS = (("input_resolution", "image_size"), ("context_length", "context_length"),
                    ("vocab_size", "vocab_size"))
OPENAI_NOT_WEIGHTS = tuple(k for k, _ in OPENAI_CONSTANTS)


def check_openai_constants(sd: dict, spec, source: str = "checkpoint") -> dict:
    """``sd`` without OpenAI's ``input_resolution``/``context_length``/``vocab_size`` entries, after
    checking each one present against ``spec``; a value that differs raises
    :class:`~.errors.CheckpointMismatchError` naming the key, the value found and the one expected."""
    from .errors import CheckpointMismatchError
    for key, field in OPENAI_CONSTANTS:
        if key not in sd:
            continue
        v, want = sd[key], getattr(spec, field)
        found = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else None
        try:
            integral = found is not None and float(found) == int(found)
        except (ValueError, OverflowError):        # nan, inf
            integral = False
        if not integral:
            shown = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointMismatchError(
                f"checkpoint {source}: '{key}' must be a single integer (found a tensor of shape {shown}); "
                f"it is not an OpenAI CLIP file: pass OpenAI's .pt or a plain state dict of '{spec.name}'",
                unexpected=[key])
        if int(found) != want:
            raise CheckpointMismatchError(
                f"checkpoint {source} has {key} = {int(found)}, but '{spec.name}' expects {key} = {want} "
                f"(its {field}): it is a checkpoint of another model; pass a {spec.name} checkpoint or "
                f"choose the model it was made for", mismatched=[key])
    return {k: v for k, v in sd.items() if k not in OPENAI_NOT_WEIGHTS}


def openai_to_native(sd: dict) -> dict:
    """OpenAI's CLIP state dict (text tower at the root) -> native, by open_clip's own converter; the
    constants OpenAI's files keep as tensors (checked by :func:`check_openai_constants`) are dropped."""
    from open_clip.model import convert_to_custom_text_state_dict
    return convert_to_custom_text_state_dict({k: v for k, v in sd.items() if k not in OPENAI_NOT_WEIGHTS})


def native_to_openai(sd: dict) -> dict:
    return {(k[len("text."):] if k.startswith("text.") else k): v for k, v in sd.items()}


# The TinyCLIP fork (microsoft/Cream TinyCLIP/src/open_clip/model.py, CLIPBase) wraps the towers of an
# open_clip CLIP: the image tower under `_image_encoder.visual.`, the text tower (open_clip CLIP's root
# text keys) under `_text_encoder.`, the temperature as `_logit_scale.logit_scale`. Its training loop
# wraps each in DistributedDataParallel, so released files carry `.module.` segments (`_image_encoder.
# module.visual.…`, read by the fork's `convert_to_new_checkpoint`), inside {"state_dict": …}. The
# pruned "auto" models are saved after `image_encoder_without_ddp = …prune()`, which registers the
# towers again as `image_encoder_without_ddp.`/`text_encoder_without_ddp.` (the names the fork's
# `load_pruned_model` reads); the `_image_encoder` copies may be present too, with equal tensors.
TINYCLIP_CANONICAL = (("_image_encoder.visual.", "visual."), ("_text_encoder.", "text."),
                      ("_logit_scale.logit_scale", "logit_scale"))
TINYCLIP_RELEASE = {
    False: (("_image_encoder.module.visual.", "visual."), ("_text_encoder.module.", "text."),
            ("_logit_scale.module.logit_scale", "logit_scale")),
    True: (("image_encoder_without_ddp.visual.", "visual."), ("text_encoder_without_ddp.", "text."),
           ("_logit_scale.module.logit_scale", "logit_scale")),
}
TINYCLIP_PREFIXES = ("_image_encoder.", "_text_encoder.", "_logit_scale.", "image_encoder_without_ddp.",
                     "text_encoder_without_ddp.")


def _rename(sd: dict, pairs) -> dict:
    out = {}
    for k, v in sd.items():
        for src, dst in pairs:
            if k.startswith(src):
                k = dst + k[len(src):]
                break
        out[k] = v
    return out


def tinyclip_canonical(sd: dict) -> dict:
    """Any TinyCLIP-fork key variant (DDP `.module.`, `*_without_ddp` copies) -> `_image_encoder.visual.…`,
    `_text_encoder.…`, `_logit_scale.logit_scale`. Duplicate copies must hold equal tensors."""
    from .errors import CheckpointError
    out = {}
    for k, v in sd.items():
        c = k.replace("image_encoder_without_ddp.", "_image_encoder.", 1) if k.startswith("image_encoder_without_ddp.") else k
        if c.startswith("text_encoder_without_ddp."):
            c = "_text_encoder." + c[len("text_encoder_without_ddp."):]
        if c.startswith(("_image_encoder.", "_text_encoder.", "_logit_scale.")):
            c = re.sub(r"\.module(?=\.|$)", "", c)
        if c in out:
            if not (out[c].shape == v.shape and torch.equal(out[c], v)):
                raise CheckpointError(f"checkpoint has two different copies of {c} (e.g. {k}); it is "
                                      f"not a consistent TinyCLIP checkpoint")
            continue
        out[c] = v
    return out


def tinyclip_to_native(sd: dict) -> dict:
    return _rename(tinyclip_canonical(sd), TINYCLIP_CANONICAL)


def native_to_tinyclip(sd: dict, spec) -> dict:
    """Native -> the layout the fork's released files have (manual: DDP prefixes; auto: *_without_ddp)."""
    return _rename(sd, [(dst, src) for src, dst in TINYCLIP_RELEASE[bool(spec.pruned)]])


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


# ----------------------------------------------------------------------------------------------
# layout -> (native -> layout, layout -> native); "native" is the identity
_CONVERSIONS = {
    "apple": (native_to_apple, apple_to_native),
    "openai": (lambda sd, module, spec: native_to_openai(sd), lambda sd, module, spec: openai_to_native(sd)),
    "tinyclip": (lambda sd, module, spec: native_to_tinyclip(sd, spec),
                 lambda sd, module, spec: tinyclip_to_native(sd)),
}


def to_layout(native_sd: dict, module: nn.Module, spec, layout: str) -> dict:
    """``module``'s native (open_clip) state dict in checkpoint ``layout``."""
    if layout == "native":
        return dict(native_sd)
    if layout not in _CONVERSIONS:
        raise ValueError(f"no conversion from the native layout to '{layout}'")
    return _CONVERSIONS[layout][0](native_sd, module, spec)


def from_layout(sd: dict, module: nn.Module, spec, layout: str) -> dict:
    """A ``layout`` checkpoint's state dict in ``module``'s native keys (others: unchanged)."""
    return _CONVERSIONS[layout][1](sd, module, spec) if layout in _CONVERSIONS else dict(sd)
