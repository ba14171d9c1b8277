"""Hugging Face ``CLIPModel`` checkpoints: transformers defines the architecture, we adapt its interface.

A HF checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``).
The config is read by transformers' own ``CLIPConfig`` (which still accepts the old
``text_config_dict``/``vision_config_dict`` keys and the pre-2023 ``eos_token_id: 2``), checked field by
field against the registry spec, and the module is transformers' ``CLIPModel`` built from it. Old
exports also carry ``*.embeddings.position_ids`` buffers (a fixed ``arange``); they are checked and
dropped, everything else loads strictly.

:class:`HFCLIP` gives the module the interface the rest of clipdeploy uses (``visual``, ``text``,
``encode_image``, ``encode_text``, ``logit_scale``) without changing its state-dict layout.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, CheckpointMismatchError

POSITION_IDS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def expected_hf_config(spec) -> dict:
    """The ``CLIPConfig`` fields a checkpoint of ``spec`` must have (from the spec's open_clip config)."""
    from .build import open_clip_config
    cfg = open_clip_config(spec)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    head_width = v.get("head_width", 64)
    vision = {"hidden_size": v["width"], "intermediate_size": int(v["width"] * v.get("mlp_ratio", 4.0)),
              "num_hidden_layers": v["layers"], "num_attention_heads": v["width"] // head_width,
              "patch_size": v["patch_size"], "image_size": v["image_size"], "hidden_act": act,
              "layer_norm_eps": 1e-5, "num_channels": 3}
    text = {"hidden_size": t["width"], "intermediate_size": int(t["width"] * t.get("mlp_ratio", 4.0)),
            "num_hidden_layers": t["layers"], "num_attention_heads": t["heads"],
            "max_position_embeddings": t["context_length"], "vocab_size": t["vocab_size"],
            "hidden_act": act, "layer_norm_eps": 1e-5}
    return {"projection_dim": cfg["embed_dim"], "vision_config": vision, "text_config": text}


def config_for(spec, raw: dict = None):
    """transformers ``CLIPConfig`` for ``spec``: from a checkpoint's ``config.json`` dict (checked against
    the spec) or, without one, the spec's own (new-style keys, EOT id 49407)."""
    from transformers import CLIPConfig
    want = expected_hf_config(spec)
    if raw is None:
        text = dict(want["text_config"], bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
        cfg = CLIPConfig(text_config=text, vision_config=want["vision_config"],
                         projection_dim=want["projection_dim"])
    else:
        raw = {k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")}
        cfg = CLIPConfig(**raw)
        diffs = []
        if cfg.projection_dim != want["projection_dim"]:
            diffs.append(f"projection_dim {cfg.projection_dim} (expected {want['projection_dim']})")
        for part in ("vision_config", "text_config"):
            have = getattr(cfg, part)
            for k, v in want[part].items():
                got = getattr(have, k, None)
                if got != v and not (isinstance(v, float) and got is not None and abs(got - v) < 1e-12):
                    diffs.append(f"{part}.{k} {got!r} (expected {v!r})")
        if diffs:
            raise CheckpointMismatchError(
                f"config.json does not describe {spec.name}: {'; '.join(diffs[:6])}"
                f"{' …' if len(diffs) > 6 else ''}; pass a {spec.name} checkpoint or choose the model "
                f"it was exported from")
    cfg._attn_implementation = "sdpa"
    return cfg


class _Visual(nn.Module):
    def __init__(self, vision_model, projection):
        super().__init__()
        self.vision_model, self.projection = vision_model, projection

    def forward(self, pixel_values):
        return self.projection(self.vision_model(pixel_values=pixel_values).pooler_output)


class _Text(nn.Module):
    """transformers' text tower, driven with a constant causal mask and EOT = highest id pooling.

    ``CLIPTextModel.forward`` builds its causal mask from the input at run time and finds the EOT by
    comparing ids with ``eos_token_id``; exported, those ops stay outside XNNPACK. Here the same
    submodules run with the mask as a constant and the EOT found as ``argmax(ids)`` (the CLIP BPE's
    EOT, 49407, is its highest id, and argmax returns its first occurrence, as transformers does), so
    the function is the same (tests compare it with ``get_text_features``).
    """

    def __init__(self, text_model, projection):
        super().__init__()
        self.text_model, self.projection = text_model, projection
        n = text_model.config.max_position_embeddings
        self.register_buffer("causal_mask", torch.full((n, n), float("-inf")).triu(1)[None, None],
                             persistent=False)

    def forward(self, input_ids):
        tm = self.text_model
        n = input_ids.shape[-1]
        # positions and mask for n <= 77 tokens without a no-op cut at 77 (torch.export would guard on
        # n != 77 and specialize a variable-length export): arange positions, the mask padded by one
        pos = torch.arange(n, device=input_ids.device)[None]
        x = tm.embeddings(input_ids=input_ids, position_ids=pos)
        mask = torch.nn.functional.pad(self.causal_mask, (0, 1, 0, 1))[..., :n, :n]
        x = tm.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state
        x = tm.final_layer_norm(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), input_ids.to(torch.int32).argmax(dim=-1)]
        return self.projection(pooled)


def _hf_clip_class():
    from transformers import CLIPModel

    class HFCLIP(CLIPModel):
        """transformers ``CLIPModel`` with clipdeploy's encoder interface; same weights and keys."""

        @property
        def visual(self) -> nn.Module:
            return _Visual(self.vision_model, self.visual_projection)

        @property
        def text(self) -> nn.Module:
            return _Text(self.text_model, self.text_projection)

        def encode_image(self, x, normalize: bool = False):
            f = self.visual(x)
            return F.normalize(f, dim=-1) if normalize else f

        def encode_text(self, ids, normalize: bool = False):
            f = self.text(ids)
            return F.normalize(f, dim=-1) if normalize else f

    return HFCLIP


def build_hf(spec, raw_config: dict = None) -> nn.Module:
    import transformers
    transformers.logging.set_verbosity_error()
    return _hf_clip_class()(config_for(spec, raw_config)).eval()


def is_hf_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def read_hf_dir(path) -> tuple:
    """(state dict, config.json dict) of a HF ``CLIPModel`` directory."""
    from .checkpoint import read_state_dict
    p = Path(path)
    try:
        raw = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{p / 'config.json'} is not readable JSON ({e}); download it again") from None
    if raw.get("model_type") not in (None, "clip"):
        raise CheckpointError(f"{p} holds a '{raw.get('model_type')}' model, not a CLIP model "
                              f"(config.json model_type); pass a CLIPModel directory")
    for name in WEIGHT_FILES:
        if (p / name).is_file():
            return read_state_dict(p / name), raw
    raise CheckpointError(f"{p} has config.json but no weights ({' or '.join(WEIGHT_FILES)}); "
                          f"download the model's weight file into it")


def drop_position_ids(sd: dict) -> dict:
    """Drop old exports' constant ``position_ids`` buffers, after checking they are the ``arange``."""
    out = dict(sd)
    for k in POSITION_IDS:
        if k in out:
            v = out.pop(k)
            if not torch.equal(v.reshape(-1).long(), torch.arange(v.numel())):
                raise CheckpointError(f"checkpoint key {k} is not the position index 0..{v.numel() - 1}; "
                                      f"the file is corrupt")
    return out
