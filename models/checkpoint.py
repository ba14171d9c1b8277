"""Reading checkpoint files safely and loading them strictly, with errors a user can act on.

Files: ``.safetensors`` (safetensors), anything else through ``torch.load(..., weights_only=True)``
(``.pt``, ``.pth``, ``.bin``). Arbitrary pickles are refused, never executed.
"""
from __future__ import annotations

import argparse
import functools
import pickle
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError, CheckpointMismatchError
from .torchscript import is_torchscript_archive, read_torchscript_weights
from .layouts import check_openai_constants, detect_layout, from_layout, tinyclip_canonical, to_layout

SHOW = 5  # keys listed per category in an error message
FUSED_MARKER = "__clipdeploy_fused__"  # written by clip-reparam (clipdeploy.reparam.fused_state_dict)


def read_state_dict(path) -> dict:
    """Read a flat ``{name: tensor}`` from a checkpoint file, safely."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}; pass an existing file, an http(s) URL, "
                              f"or --random-weights SEED")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory without config.json; pass the "
                              f".pt/.bin/.safetensors file, or a Hugging Face CLIPModel directory")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); download it again")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file "
                                  f"({str(e).splitlines()[0][:120]}); it is corrupt or truncated: "
                                  f"download it again") from None
    elif is_torchscript_archive(path):  # OpenAI's released .pt files
        try:
            sd = read_torchscript_weights(path)
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError, RuntimeError, OSError) as e:
            raise CheckpointError(f"checkpoint {path} is a TorchScript archive whose weights cannot be "
                                  f"read ({str(e)[:160]}); download it again") from None
    else:
        try:
            # training checkpoints (the TinyCLIP fork's) keep their argparse.Namespace next to the weights
            with torch.serialization.safe_globals([argparse.Namespace]):
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            if "weights_only" in str(e) or "Unsupported" in str(e) or "global" in str(e).lower():
                raise CheckpointError(
                    f"checkpoint {path} contains pickled Python objects that a weights-only load "
                    f"refuses ({first.rstrip('.')}); clipdeploy never unpickles code: save a plain "
                    f"state_dict (torch.save(model.state_dict(), ...)) or a .safetensors file") from None
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first}); "
                                  f"download it again") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first}); "
                                  f"download it again") from None
    return flatten_state_dict(sd, path)


def flatten_state_dict(obj, source="checkpoint") -> dict:
    """Unwrap ``{'state_dict': ...}``-style containers and DataParallel ``module.`` prefixes."""
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source} does not hold a state dict (found {type(obj).__name__}); "
                              f"save model.state_dict()")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # metadata entries (epoch, args, ...) are not weights
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if not sd:
        raise CheckpointError(f"{source} holds no tensors; save model.state_dict()")
    return sd


def _shapes(sd: dict) -> dict:
    return {k: (v.dtype, tuple(v.shape)) for k, v in sd.items()}


@functools.lru_cache(maxsize=None)
def _reference_keys(name: str, layout: str):
    """Expected {key: shape} of registry model ``name`` in ``layout`` (built on the meta device)."""
    from .build import arch_of, build_module
    from .registry import get_spec
    spec = get_spec(name)
    if layout not in ("native", "fused") and layout not in spec.layouts:
        return None
    with torch.device("meta"):
        module = build_module(spec, arch_of(layout))
    if layout not in ("native", "fused", "hf"):
        return {k: tuple(v.shape) for k, v in to_layout(module.state_dict(), module, spec, layout).items()}
    if layout == "fused":
        try:
            from clipdeploy.reparam import to_inference_form
            to_inference_form(module)
        except Exception:  # a fold that cannot run on meta tensors: no guess for this model
            return None
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def guess_model(sd: dict, layout: str, exclude: str = None):
    """The registry model whose expected keys and shapes best match ``sd`` (name, score) or None."""
    from .registry import list_models
    have = {k: tuple(v.shape) for k, v in sd.items()}
    best = (None, 0.0)
    for name in list_models():
        ref = _reference_keys(name, layout)
        if not ref:
            continue
        hits = sum(1 for k, s in have.items() if ref.get(k) == s)
        score = hits / max(len(ref), len(have))
        if score > best[1]:
            best = (name, score)
    if best[0] is None or best[0] == exclude or best[1] < 0.5:
        return None
    return best


def _mismatch_error(spec, layout, expected: dict, got: dict, sd: dict, source: str):
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(got) if expected[k][1] != got[k][1])
    if not (missing or unexpected or mismatched):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:SHOW])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:SHOW])})")
    if mismatched:
        ex = ", ".join(f"{k} {list(got[k][1])} vs {list(expected[k][1])}" for k in mismatched[:SHOW])
        parts.append(f"{len(mismatched)} shape mismatches (checkpoint vs model: {ex})")
    guess = guess_model(sd, layout, exclude=spec.name)
    hint = (f"these keys look like '{guess[0]}' ({guess[1]:.0%} match): use --model {guess[0]}"
            if guess else f"pass a {spec.name} checkpoint in one of its layouts ({', '.join(spec.layouts)})")
    msg = (f"checkpoint {source} does not fit model '{spec.name}' ({layout} layout): "
           f"{'; '.join(parts)}; {hint}")
    return CheckpointMismatchError(msg, missing, unexpected, mismatched,
                                   looks_like=guess[0] if guess else None)


def _load_fused(module, spec, sd: dict, source: str) -> str:
    """A fused (inference-form) checkpoint: turn ``module`` into its inference form, then load."""
    try:
        from clipdeploy.reparam import to_inference_form
    except ImportError:  # pragma: no cover - reparam is part of the same distribution
        raise CheckpointError(f"checkpoint {source} is a fused checkpoint; loading it needs "
                              f"clipdeploy.reparam") from None
    sd = {k: v for k, v in sd.items() if k != FUSED_MARKER}
    to_inference_form(module)
    err = _mismatch_error(spec, "fused", _shapes(module.state_dict()), _shapes(sd), sd, source)
    if err:
        raise err
    module.load_state_dict(sd, strict=True)
    return "fused"


LAYOUT_NAMES = {"apple": "Apple's .pt layout", "openai": "OpenAI's CLIP .pt layout",
                "tinyclip": "the TinyCLIP fork's .pt layout", "hf": "the Hugging Face CLIPModel layout",
                "native": "the open_clip layout"}


def accepts(spec, layout: str) -> bool:
    """Whether registry model ``spec`` loads checkpoints in ``layout``."""
    return layout in spec.layouts or (layout == "native" and "open_clip" in spec.layouts)


def checkpoint_layout(sd: dict) -> str:
    """The layout of a checkpoint's state dict ('fused' for a clip-reparam checkpoint)."""
    return "fused" if FUSED_MARKER in sd else detect_layout(sd)


def load_state_dict_checked(module, spec, sd: dict, source: str = "checkpoint") -> str:
    """Strictly load ``sd`` (any accepted layout) into ``module``; returns the layout it was in.

    ``module`` must be of the architecture that layout loads into (:func:`.build.arch_of`). Keys and
    shapes are compared in the checkpoint's own layout first, so the error names the keys the user's
    file has or lacks.
    """
    if FUSED_MARKER in sd:
        return _load_fused(module, spec, sd, source)
    layout = detect_layout(sd)
    if layout == "unknown":
        guess = guess_model(sd, "native")
        raise CheckpointError(
            f"checkpoint {source} is not a CLIP checkpoint clipdeploy knows (keys like "
            f"{', '.join(list(sd)[:3])}); expected Apple's mobileclip_*.pt, OpenAI's CLIP .pt, the "
            f"TinyCLIP fork's .pt, a Hugging Face CLIPModel or an open_clip state dict"
            + (f" (it looks like '{guess[0]}')" if guess else ""))
    if not accepts(spec, layout):
        guess = guess_model(sd, layout)
        raise CheckpointMismatchError(
            f"checkpoint {source} is in {LAYOUT_NAMES.get(layout, layout)}, but '{spec.name}' loads "
            f"{'/'.join(spec.layouts)} checkpoints"
            + (f"; the keys look like '{guess[0]}': use --model {guess[0]}" if guess else ""),
            looks_like=guess[0] if guess else None)
    if layout == "hf":
        from .hf import drop_position_ids
        sd = drop_position_ids(sd)
        expected = _shapes(module.state_dict())
    elif layout == "openai":  # OpenAI's input_resolution/context_length/vocab_size: checked, not loaded
        sd = check_openai_constants(sd, spec, source)
        expected = _shapes(to_layout(module.state_dict(), module, spec, layout))
    elif layout == "tinyclip":  # compared with the fork's key variants folded together
        sd = tinyclip_canonical(sd)
        expected = _shapes(tinyclip_canonical(to_layout(module.state_dict(), module, spec, layout)))
    else:
        expected = _shapes(to_layout(module.state_dict(), module, spec, layout))
    err = _mismatch_error(spec, layout, expected, _shapes(sd), sd, source)
    if err:
        raise err
    if layout != "hf":
        sd = from_layout(sd, module, spec, layout)
    own = module.state_dict()
    sd = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in sd.items()}
    module.load_state_dict(sd, strict=True)
    return layout


def save_state_dict(sd: dict, path) -> Path:
    """Write ``sd`` to ``path`` (.safetensors or torch .pt), atomically (temp file + rename)."""
    import os
    import tempfile
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror}; choose a writable location") from None
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(tensors, tmp)
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
