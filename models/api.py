"""``load_model`` and the :class:`CLIPModel` every later stage works with."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .build import arch_of, build_module, default_arch
from .checkpoint import checkpoint_layout, load_state_dict_checked, read_state_dict
from .download import cache_dir, download, hf_download, parse_hf_url, sha256_file
from .errors import ClipDeployError, DownloadError
from .layouts import apple_to_native, native_to_apple, to_layout
from .preprocess import normalize_image, preprocess_image
from .registry import ModelSpec, get_spec, list_models
from .test_weights import VIT_QKV_GAIN, seeded_state_dict
from .tokenizer import tokenize

__all__ = ["CLIPModel", "load_model", "list_models", "build_module"]


class CLIPModel:
    """A loaded model: spec, torch module, and the encoders with the toolkit's input conventions.

    * ``encode_image(x)``: float32 [B, 3, R, R] RGB in [0, 1] -> L2-normalized [B, D]. Any mean/std the
      model needs is applied here (as the exported artifacts do), not by the caller.
    * ``encode_text(ids)``: int [B, 77] -> L2-normalized [B, D].
    """

    def __init__(self, spec: ModelSpec, module: nn.Module, source: str,
                 checkpoint_sha256: Optional[str] = None, layout: Optional[str] = None,
                 fused: bool = False):
        self.spec = spec
        self.fused = fused          # True: inference form (see clipdeploy.reparam)
        self.module = module
        self.source = source
        self.checkpoint_sha256 = checkpoint_sha256
        self.layout = layout

    def __repr__(self):
        form = "fused" if self.fused else "train-time"
        return f"CLIPModel({self.spec.name}, {form}, source={self.source!r})"

    @property
    def logit_scale(self) -> float:
        return float(self.module.logit_scale.detach().float().exp().clamp(max=100.0))

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        r = self.spec.image_size
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (r, r):
            raise ValueError(f"{self.spec.name} takes images as float [B, 3, {r}, {r}] RGB in [0, 1], "
                             f"got {list(x.shape)}; use m.preprocess(pil_image)")
        x = normalize_image(x.to(self.device, torch.float32), self.spec)
        return self.module.encode_image(x, normalize=True)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        n = self.spec.context_length
        if tokens.dim() != 2 or tokens.shape[1] != n:
            raise ValueError(f"{self.spec.name} takes token ids as int [B, {n}] (padded with 0), got "
                             f"{list(tokens.shape)}; use m.tokenize([...])")
        if tokens.is_floating_point():
            raise ValueError("token ids must be an integer tensor; use m.tokenize([...])")
        return self.module.encode_text(tokens.to(self.device, torch.long), normalize=True)

    def tokenize(self, texts) -> torch.Tensor:
        return tokenize(texts, self.spec.context_length)

    def preprocess(self, image, normalize: bool = False) -> torch.Tensor:
        return preprocess_image(image, self.spec, normalize=normalize)

    @torch.no_grad()
    def zero_shot(self, images: torch.Tensor, labels, template: str = "a photo of a {}.") -> torch.Tensor:
        """Class probabilities [B, len(labels)] for [0, 1] images."""
        text = self.encode_text(self.tokenize([template.format(label) for label in labels]))
        return (self.logit_scale * self.encode_image(images) @ text.T).softmax(dim=-1)

    @property
    def arch(self) -> str:
        """'hf' (transformers CLIPModel) or 'open_clip' (every other layout loads into open_clip)."""
        return "hf" if hasattr(self.module, "vision_model") else "open_clip"

    def state_dict(self, layout: str = "native") -> dict:
        """The weights in ``native`` layout (the module's own keys) or in one of the spec's checkpoint
        layouts the module's architecture can be written in (``apple``, ``openai``, ``tinyclip``; a
        Hugging Face module's native layout *is* ``hf``)."""
        sd = self.module.state_dict()
        if layout == "native" or (layout == "hf" and self.arch == "hf"):
            return sd
        if layout not in self.spec.layouts:
            raise ValueError(f"{self.spec.name} has no '{layout}' layout: use one of "
                             f"{', '.join(self.spec.layouts)}")
        if self.arch == "hf" or layout == "hf":
            raise ValueError(f"this {self.spec.name} module was loaded as {self.arch}; the '{layout}' "
                             f"layout needs a checkpoint loaded in that architecture")
        if self.fused:
            raise ValueError(f"a fused model has no {layout} layout (released files are unfused); "
                             f"save it with clip-reparam or state_dict('native')")
        return to_layout(sd, self.module, self.spec, layout)


def checkpoint_sha(path) -> str:
    """sha256 of a checkpoint file; of a HF directory, of its weight file."""
    from .hf import WEIGHT_FILES, is_hf_dir
    p = Path(path)
    if is_hf_dir(p):
        p = next(p / n for n in WEIGHT_FILES if (p / n).is_file())
    return sha256_file(p)


def _is_url(s: str) -> bool:
    return s.startswith("http://") or s.startswith("https://")


def resolve_checkpoint(spec: ModelSpec, checkpoint: Union[str, os.PathLike, None],
                       progress: bool = True, sha256: Optional[str] = None) -> Path:
    """A local file for ``checkpoint``: the file itself, a downloaded URL, or the official weights.

    Hugging Face URLs (the official MobileCLIP2/TinyCLIP/HF CLIP weights, or a user's
    ``https://huggingface.co/<repo>/resolve/<rev>/<file>``) go through huggingface_hub and its cache;
    other URLs (Apple's CDN, OpenAI's azureedge) through the toolkit's own downloader."""
    if checkpoint is None and spec.checkpoint.layout == "hf":
        return download_hf(spec.checkpoint, progress=progress)
    if checkpoint is None:
        ck = spec.checkpoint
        if ck.sha256 is None:
            print(f"warning: no published sha256 is known for {spec.name}'s official weights; the "
                  f"download is not checksum-verified", file=sys.stderr)
        return _download_url(ck.url, sha256=ck.sha256, filename=ck.filename, progress=progress)
    if isinstance(checkpoint, str) and _is_url(checkpoint):
        official = spec.checkpoint
        expected = sha256 or (official.sha256 if checkpoint == official.url else None)
        return _download_url(checkpoint, sha256=expected, progress=progress)
    return Path(checkpoint)


def _download_url(url: str, sha256: Optional[str] = None, filename: Optional[str] = None,
                  progress: bool = True) -> Path:
    """A Hugging Face file URL through huggingface_hub (its cache, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE);
    any other URL through the toolkit's own downloader (resume, sha256, rename into place)."""
    hub = parse_hf_url(url)
    if hub is not None:
        repo_id, revision, name = hub
        return hf_download(repo_id, name, revision=revision, sha256=sha256, progress=progress)
    return download(url, sha256=sha256, filename=filename, progress=progress)


def download_hf(ck, progress: bool = True, dest_dir=None) -> Path:
    """A Hugging Face CLIPModel directory: the weights and ``config.json`` (``ck.extra``) of ``ck``, in one
    folder. Hub files land in one snapshot of the Hugging Face cache (the extras are fetched at the commit
    the weights resolved to) and that snapshot folder is returned; ``dest_dir``, or a ``ck.url`` that is
    not a Hub URL, uses the toolkit's own downloader into ``dest_dir`` or ``$CLIPDEPLOY_CACHE/hf/<repo>``."""
    if ck.sha256 is None:
        print(f"warning: no published sha256 is known for {ck.repo}; the download is not "
              f"checksum-verified", file=sys.stderr)
    hub = parse_hf_url(ck.url) if dest_dir is None else None
    if hub is not None:
        repo_id, revision, name = hub
        weights = hf_download(repo_id, name, revision=revision, sha256=ck.sha256, progress=progress)
        snapshot = weights.parent
        # the snapshot folder is named by the commit the weights came from: fetch the extras at that commit
        commit = snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else revision
        for filename, url in ck.extra:
            extra = parse_hf_url(url)
            extra_repo, extra_name = (extra[0], extra[2]) if extra else (repo_id, filename)
            got = hf_download(extra_repo, extra_name, revision=commit, progress=progress)
            if got.parent != snapshot:
                raise DownloadError(f"{extra_repo}/{extra_name} did not land next to {repo_id}/{name} in "
                                    f"{snapshot}; the extra must come from the same repo")
        return snapshot
    dest = Path(dest_dir) if dest_dir else cache_dir() / "hf" / ck.repo.replace("/", "--")
    download(ck.url, sha256=ck.sha256, filename=ck.filename, dest_dir=dest, progress=progress)
    for filename, url in ck.extra:
        download(url, filename=filename, dest_dir=dest, progress=progress)
    return dest


def read_checkpoint(path) -> tuple:
    """(state dict, HF config.json dict or None) of a checkpoint file or HF directory."""
    from .hf import is_hf_dir, read_hf_dir
    if is_hf_dir(path):
        return read_hf_dir(path)
    return read_state_dict(path), None


def load_model(name: str, checkpoint: Union[str, os.PathLike, None] = None,
               random_weights: Optional[int] = None, device: Union[str, torch.device] = "cpu",
               progress: bool = True, sha256: Optional[str] = None, arch: Optional[str] = None) -> CLIPModel:
    """Build registry model ``name`` and load its weights.

    ``checkpoint``: a local ``.pt``/``.bin``/``.safetensors`` (Apple or open_clip/native layout), or an
    http(s) URL (downloaded to the cache, checked against ``sha256`` when given). Neither it nor
    ``random_weights``: the official weights are downloaded. ``random_weights=SEED``: seeded test weights
    (outputs depend on inputs), offline; ``arch`` ("open_clip" | "hf") picks the architecture they are
    drawn for (default: that of the model's first layout; a checkpoint's layout picks its own).
    """
    spec = get_spec(name)
    if checkpoint is not None and random_weights is not None:
        raise ClipDeployError("pass either a checkpoint or random_weights, not both")
    if arch is not None and "hf" not in spec.layouts and arch == "hf":
        raise ClipDeployError(f"{spec.name} has no Hugging Face CLIPModel form (layouts: "
                              f"{', '.join(spec.layouts)})")
    if random_weights is not None:
        module = build_module(spec, arch)
        sd = seeded_state_dict(module, int(random_weights),
                               image_qkv_gain=VIT_QKV_GAIN if spec.family in ("openai", "tinyclip") else None)
        if spec.family == "mobileclip":
            # written in Apple's released layout, as the real checkpoints are
            sd = apple_to_native(native_to_apple(sd, module, spec), module, spec)
        module.load_state_dict(sd, strict=True)
        model = CLIPModel(spec, module, source=f"random_weights={int(random_weights)}", layout="random")
    else:
        path = resolve_checkpoint(spec, checkpoint, progress=progress, sha256=sha256)
        sd, hf_config = read_checkpoint(path)
        found = checkpoint_layout(sd)
        arch = (("hf" if any(k.startswith("vision_model.") for k in sd) else "open_clip")
                if found == "fused" else arch_of(found) if found != "unknown" else default_arch(spec))
        widths = None
        if spec.pruned and found not in ("unknown", "hf"):
            from .pruned import infer_widths
            widths = infer_widths(sd, spec)
        module = build_module(spec, arch, widths=widths, hf_config=hf_config)
        layout = load_state_dict_checked(module, spec, sd, source=str(checkpoint or path))
        model = CLIPModel(spec, module, source=str(checkpoint or spec.checkpoint.url),
                          checkpoint_sha256=checkpoint_sha(path), layout=layout, fused=layout == "fused")
    module.to(device).eval()
    return model
