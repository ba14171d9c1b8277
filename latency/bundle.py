"""Reading an artifact bundle (``out/<model>/``) the way the latency harness needs it.

Only ``manifest.json`` and ``probe/*.npy`` are read (the contract written by ``clip-export``); the
export code itself is never imported.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

SUPPORTED_MANIFEST_VERSIONS = (1,)


class BundleError(ValueError):
    """The bundle is missing, unreadable or not a clipdeploy bundle (one line, for ``error:``)."""


@dataclass(frozen=True)
class Artifact:
    """One thing to benchmark: a file of the bundle, or the PyTorch reference of an encoder."""
    target: str          # onnx, executorch, coreml, executorch-coreml, ... or "pytorch"
    precision: str       # fp32 / fp16
    encoder: str         # image / text
    path: Optional[str]  # relative to the bundle; None for the PyTorch reference

    @property
    def id(self) -> str:
        return self.path if self.path else f"{self.target}-{self.precision}/{self.encoder}_encoder"

    def to_dict(self) -> dict:
        return {"target": self.target, "precision": self.precision, "encoder": self.encoder,
                "path": self.path}


class Bundle:
    def __init__(self, path):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not self.path.exists():
            raise BundleError(f"bundle {self.path} does not exist; write one with clip-export")
        if not self.path.is_dir():
            raise BundleError(f"bundle {self.path} is not a directory (pass the folder holding "
                              f"manifest.json)")
        if not mpath.is_file():
            raise BundleError(f"{self.path} has no manifest.json; is it a clip-export bundle?")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BundleError(f"cannot read {mpath}: {e}") from None
        if not isinstance(self.manifest, dict) or "artifacts" not in self.manifest:
            raise BundleError(f"{mpath} is not a clipdeploy manifest (no 'artifacts')")
        ver = self.manifest.get("schema_version")
        if ver not in SUPPORTED_MANIFEST_VERSIONS:
            raise BundleError(f"{mpath}: manifest schema_version {ver!r} is not supported "
                              f"(this clip-latency reads {SUPPORTED_MANIFEST_VERSIONS})")

    @property
    def model(self) -> str:
        return self.manifest["model"]

    def artifacts(self) -> list:
        return [Artifact(a["target"], a["precision"], a["encoder"], a["path"])
                for a in self.manifest["artifacts"]]

    def manifest_artifact(self, art: Artifact) -> Optional[dict]:
        for a in self.manifest["artifacts"]:
            if a["path"] == art.path:
                return a
        return None

    def encoders(self) -> list:
        seen = []
        for a in self.manifest["artifacts"]:
            if a["encoder"] not in seen:
                seen.append(a["encoder"])
        return seen or ["image", "text"]

    # ------------------------------------------------------------------ probe
    def _npy(self, rel: str) -> np.ndarray:
        p = self.path / rel
        try:
            return np.load(p)
        except (OSError, ValueError) as e:
            raise BundleError(f"cannot read probe file {p}: {e}") from None

    def probe(self) -> dict:
        """``{"image": images [N,3,R,R] f32, "text": ids [M,77] i32, "ref_image", "ref_text"}``."""
        pr = self.manifest.get("probe") or {}
        ref = pr.get("reference") or {}
        try:
            return {"image": self._npy(pr["images"]).astype(np.float32),
                    "text": self._npy(pr["token_ids"]).astype(np.int32),
                    "ref_image": self._npy(ref["image"]).astype(np.float32),
                    "ref_text": self._npy(ref["text"]).astype(np.float32)}
        except KeyError as e:
            raise BundleError(f"{self.path}/manifest.json has no probe entry {e}") from None

    # ------------------------------------------------------------------ weights
    def weights(self) -> dict:
        """How to rebuild the PyTorch model: ``{"random_weights": seed}`` or ``{"checkpoint": path}``."""
        ck = self.manifest.get("checkpoint") or {}
        seed = ck.get("random_weights")
        src = ck.get("source") or ""
        if seed is None:                                   # bundles written before the field existed
            m = re.fullmatch(r"random_weights=(-?\d+)", src)
            seed = int(m.group(1)) if m else None
        if seed is not None:
            return {"random_weights": int(seed)}
        return {"checkpoint": src or None, "sha256": ck.get("sha256")}
