"""Reading an artifact bundle (``out/<model>/``) the way the latency harness needs it.

Only ``manifest.json``, ``probe/*`` and the tokenizer files are read (the contract written by
``clip-export``); the export code itself is never imported. A bundle is untrusted input: opening it
checks the manifest (size, strict JSON, ``manifest.schema.json``, every path it names inside the bundle
and listed in its ``integrity`` record, every listed file present at its recorded size), and no file
is read or artifact handed to a runtime before its sha256 matched (``integrity.py``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np

from . import integrity, safejson
from .npyfile import NpyError, read_npy

SUPPORTED_MANIFEST_VERSIONS = (2,)
MAX_MANIFEST_BYTES = 32 << 20
MAX_TOKENIZER_BYTES = 64 << 20


class BundleError(ValueError):
    """The bundle is missing, unreadable, not a clipdeploy bundle, or fails its integrity record (one
    line, for ``error:``)."""


def strict_json(data):
    """Strict, bounded JSON (:mod:`safejson`): no NaN / Infinity, depth errors as ValueError."""
    return safejson.loads(data)


_MANIFEST_SCHEMA = None


def manifest_schema() -> dict:
    global _MANIFEST_SCHEMA
    if _MANIFEST_SCHEMA is None:
        _MANIFEST_SCHEMA = json.loads(resources.files("clipdeploy.latency")
                                      .joinpath("manifest.schema.json").read_text())
    return _MANIFEST_SCHEMA


def check_manifest(m, where: str) -> dict:
    """Schema check of a parsed manifest (one-line :class:`BundleError`)."""
    import jsonschema

    if not isinstance(m, dict) or "artifacts" not in m:
        raise BundleError(f"{where} is not a clipdeploy manifest (no 'artifacts')")
    ver = m.get("schema_version")
    if ver not in SUPPORTED_MANIFEST_VERSIONS:
        old = " (it has no integrity record)" if ver == 1 else ""
        raise BundleError(f"{where}: manifest schema_version {ver!r} is not supported{old}; this "
                          f"clip-latency reads {SUPPORTED_MANIFEST_VERSIONS}: re-export the bundle with "
                          f"clip-export")
    errors = list(jsonschema.Draft202012Validator(manifest_schema()).iter_errors(m))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        at = "/".join(str(p) for p in best.absolute_path) or "<top level>"
        msg = best.message if len(best.message) < 200 else best.message[:200] + "..."
        raise BundleError(f"{where}: manifest fails its schema at {at}: {msg}; re-export the bundle")
    return m


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
    """An opened bundle. ``verify=True`` (default) runs the open-time checks; digests are checked by
    :meth:`verify_artifact` / :meth:`verify_all` and before the probe set is read."""

    def __init__(self, path, verify: bool = True):
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
            if mpath.is_symlink():
                raise BundleError(f"{mpath} is a symlink; a bundle's manifest must be a regular file")
            size = mpath.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{mpath} is {size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest "
                                  f"may have; is it a clip-export manifest?")
            if size == 0:
                raise BundleError(f"{mpath} is empty: the bundle is incomplete (copied while it was "
                                  f"written?); copy it again or re-export it")
            self.manifest = safejson.read(mpath, MAX_MANIFEST_BYTES)
        except BundleError:
            raise
        except OSError as e:
            raise BundleError(f"cannot read {mpath}: {e.strerror}") from None
        except ValueError as e:
            raise BundleError(f"cannot read {mpath}: {e}; the bundle is incomplete or damaged: copy it "
                              f"again or re-export it") from None
        check_manifest(self.manifest, str(mpath))
        self._check_classifier(str(mpath))
        try:
            self.integrity = integrity.Verifier(self.path, self.manifest["integrity"])
            for rel in self.named_paths():
                self.integrity.check_path(rel)
            if verify:
                self.integrity.stat_all()
        except integrity.IntegrityError as e:
            raise BundleError(str(e)) from None

    def named_paths(self) -> list:
        """Every path the manifest names (artifacts and their files, probe set, tokenizer files)."""
        m = self.manifest
        out = []
        for a in m["artifacts"]:
            out += [a["path"], *a["files"]]
        pr = m["probe"]
        out += [pr["images"], pr["token_ids"], pr["reference"]["image"], pr["reference"]["text"]]
        if "captions" in pr:
            out.append(pr["captions"])
        out += [m["tokenizer"][k] for k in ("config", "vocab", "merges", "bpe") if k in m["tokenizer"]]
        c = m.get("classifier")
        if c:
            out += [c["class_embeddings"]] + ([c["labels_file"]] if "labels_file" in c else [])
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------ classifier
    def _check_classifier(self, where: str) -> None:
        c = self.manifest.get("classifier")
        has_art = any(a["encoder"] == "classifier" for a in self.manifest["artifacts"])
        if has_art and not c:
            raise BundleError(f"{where}: a classifier artifact but no 'classifier' entry (labels, class "
                              f"embeddings); re-export the bundle with clip-export --classifier")
        if c and len(set(c["labels"])) != len(c["labels"]):
            raise BundleError(f"{where}: classifier labels repeat; re-export the bundle")

    def classifier(self) -> Optional[dict]:
        """``{"labels", "templates", "logit_scale", "class_embeddings" float32 [N, D]}`` from the verified
        files (None: the bundle has no classifier); the matrix must have one row per label, the embedding
        width and finite, unit rows; labels.json, where listed, must hold the manifest's labels."""
        c = self.manifest.get("classifier")
        if not c:
            return None
        where = f"{self.path}: classifier"
        classes = self._npy(c["class_embeddings"])
        n, d = len(c["labels"]), self.manifest.get("embedding_dim", c.get("embedding_dim"))
        if classes.dtype != np.float32 or classes.ndim != 2 or classes.shape[0] != n or (d and classes.shape[1] != d):
            raise BundleError(f"{where} embeddings are {classes.dtype} {list(classes.shape)}, expected float32 "
                              f"[{n}, {d}] (one row per label); re-export the bundle")
        norms = np.linalg.norm(classes.astype(np.float64), axis=1)
        if not np.isfinite(classes).all() or np.abs(norms - 1).max() > 1e-3:
            raise BundleError(f"{where} embeddings are not finite unit rows; re-export the bundle")
        if "labels_file" in c:
            self.verify_files([c["labels_file"]])
            try:
                listed = strict_json(integrity.resolve_inside(self.path, c["labels_file"]).read_bytes())
            except (OSError, ValueError) as e:
                raise BundleError(f"{where} labels file {c['labels_file']}: {e}; re-export the bundle") from None
            if listed != c["labels"]:
                raise BundleError(f"{where} labels file {c['labels_file']} does not hold the manifest's labels; "
                                  f"re-export the bundle")
        return {"labels": list(c["labels"]), "templates": list(c["templates"]),
                "logit_scale": float(c["logit_scale"]), "class_embeddings": classes}

    def reference_for(self, encoder: str, probe: dict) -> tuple:
        """``(inputs, reference, other)`` the parity of an ``encoder`` artifact is measured with: the probe
        rows, their PyTorch reference, and the other tower's reference for zero-shot agreement. A
        classifier's reference is ``logit_scale x`` the probe image embeddings ``@ class_embeddings.T`` and its
        "other tower" the identity, so zero-shot agreement is the logits' top-1 agreement."""
        if encoder == "image":
            return probe["image"], probe["ref_image"], probe["ref_text"]
        if encoder == "text":
            return probe["text"], probe["ref_text"], probe["ref_image"]
        c = self.classifier()
        if c is None:
            raise BundleError(f"{self.path}: a classifier artifact but no classifier entry; re-export the bundle")
        ref = (c["logit_scale"] * probe["ref_image"].astype(np.float64)
               @ c["class_embeddings"].astype(np.float64).T).astype(np.float32)
        return probe["image"], ref, np.eye(len(c["labels"]), dtype=np.float32)

    # ------------------------------------------------------------------ integrity
    def verify_artifact(self, art: "Artifact") -> Path:
        """Digests of every file of ``art`` (a PyTorch reference needs none); its real path."""
        if not art.path:
            return None
        a = self.manifest_artifact(art)
        try:
            for rel in dict.fromkeys([art.path, *(a["files"] if a else [])]):
                self.integrity.verify(rel)
            return integrity.resolve_inside(self.path, art.path)
        except integrity.IntegrityError as e:
            raise BundleError(str(e)) from None

    def verify_files(self, rels) -> None:
        try:
            for rel in rels:
                self.integrity.verify(rel)
        except integrity.IntegrityError as e:
            raise BundleError(str(e)) from None

    def verify_all(self, use_cache: bool = True) -> dict:
        """Every listed file's digest; returns ``{"files", "bytes", "hashed_bytes", "cached_files"}``."""
        try:
            self.integrity.verify_all(use_cache)
            for a in self.manifest["artifacts"]:          # and no unlisted file inside an .mlpackage
                self.integrity.verify(a["path"], use_cache)
        except integrity.IntegrityError as e:
            raise BundleError(str(e)) from None
        return {"files": len(self.integrity.files),
                "bytes": sum(e["size"] for e in self.integrity.files.values()),
                "hashed_bytes": self.integrity.hashed_bytes, "cached_files": self.integrity.cached_files}

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
        """The towers the bundle's artifacts encode (what a PyTorch reference runs): image, text."""
        seen = []
        for a in self.manifest["artifacts"]:
            e = "image" if a["encoder"] == "classifier" else a["encoder"]
            if e not in seen:
                seen.append(e)
        return seen or ["image", "text"]

    # ------------------------------------------------------------------ probe
    def _npy(self, rel: str) -> np.ndarray:
        self.verify_files([rel])
        p = self.path / rel
        try:
            return read_npy(integrity.resolve_inside(self.path, rel))
        except (OSError, NpyError) as e:
            raise BundleError(f"cannot read probe file {p}: {e}") from None

    def tokenizer_files(self) -> dict:
        """``{"vocab": {token: id}, "merges": [(a, b), ...]}`` from the bundle's tokenizer files, verified
        and checked (:func:`parse_tokenizer_files`)."""
        tok = self.manifest["tokenizer"]
        vocab_rel, merges_rel = tok.get("vocab", "tokenizer/vocab.json"), tok.get("merges", "tokenizer/merges.txt")
        self.verify_files([vocab_rel, merges_rel])
        try:
            vb, mb = (integrity.resolve_inside(self.path, r).read_bytes() for r in (vocab_rel, merges_rel))
        except OSError as e:
            raise BundleError(f"{self.path}: cannot read the tokenizer files: {e.strerror}") from None
        try:
            return parse_tokenizer_files(vb, mb, tok.get("vocab_size"), tok.get("merges_count"))
        except ValueError as e:
            raise BundleError(f"{self.path}: tokenizer files: {e}; re-export the bundle") from None

    def probe(self) -> dict:
        """``{"image": images [N,3,R,R] f32, "text": ids [M,77] i32, "ref_image", "ref_text"}``."""
        pr = self.manifest.get("probe") or {}
        ref = pr.get("reference") or {}
        try:
            self.verify_files([r for r in (pr.get("images"), pr.get("token_ids"), ref.get("image"),
                                           ref.get("text")) if r])
            out = {"image": self._npy(pr["images"]).astype(np.float32),
                   "text": self._npy(pr["token_ids"]).astype(np.int32),
                   "ref_image": self._npy(ref["image"]).astype(np.float32),
                   "ref_text": self._npy(ref["text"]).astype(np.float32)}
        except KeyError as e:
            raise BundleError(f"{self.path}/manifest.json has no probe entry {e}") from None
        im, ids, ri, rt = out["image"], out["text"], out["ref_image"], out["ref_text"]
        ok = (im.ndim == 4 and im.shape[1] == 3 and im.shape[2] == im.shape[3] and ids.ndim == 2
              and ri.ndim == 2 and rt.ndim == 2 and len(ri) == len(im) and len(rt) == len(ids)
              and ri.shape[1] == rt.shape[1] and len(im) > 0 and len(ids) > 0)
        if not ok:
            raise BundleError(f"{self.path}: probe arrays do not fit together (images {list(im.shape)}, "
                              f"token ids {list(ids.shape)}, reference {list(ri.shape)} / {list(rt.shape)}; "
                              f"expected [N,3,R,R], [M,L], [N,D], [M,D]); re-export the bundle")
        return out

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


#: where a bundle keeps its classifier's class matrix and labels
CLASS_EMBEDDINGS = "classifier/class_embeddings.npy"
LABELS_FILE = "classifier/labels.json"


def classifier_block(labels: list, templates: list, source: str, logit_scale: float, dim: int) -> dict:
    """The manifest's ``classifier`` entry as ``clip-export --classifier`` writes it (what
    :meth:`Bundle.classifier` and the apps read)."""
    return {"labels": list(labels), "templates": list(templates), "template_source": source,
            "logit_scale": float(logit_scale), "embedding_dim": int(dim),
            "class_embeddings": CLASS_EMBEDDINGS, "labels_file": LABELS_FILE,
            "logits": "logit_scale * image_embedding @ class_embeddings.T (rows in label order); "
                      "probs = softmax(logits)"}


def parse_tokenizer_files(vocab_bytes: bytes, merges_bytes: bytes, vocab_size=None, merges_count=None) -> dict:
    """The bundle's ``vocab.json`` (Hugging Face CLIP spelling: {token: id}, ids unique in
    [0, len)) and ``merges.txt`` (``#version`` line, then ``a b`` pairs), checked against the manifest's
    counts; ``ValueError`` with one line otherwise."""
    if len(vocab_bytes) > MAX_TOKENIZER_BYTES or len(merges_bytes) > MAX_TOKENIZER_BYTES:
        raise ValueError(f"a tokenizer file is larger than {MAX_TOKENIZER_BYTES} bytes")
    try:
        vocab = strict_json(vocab_bytes)
    except ValueError as e:
        raise ValueError(f"vocab.json: {e}") from None
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError("vocab.json is not a non-empty {token: id} object")
    ids = set()
    for t, i in vocab.items():
        if type(i) is not int or not 0 <= i < len(vocab) or not t:
            raise ValueError(f"vocab.json entry {t[:40]!r}: {str(i)[:40]} is not an id in [0, {len(vocab)})")
        ids.add(i)
    if len(ids) != len(vocab):
        raise ValueError("vocab.json gives one id to two tokens")
    if vocab_size is not None and len(vocab) != vocab_size:
        raise ValueError(f"vocab.json has {len(vocab)} tokens, the manifest says {vocab_size}")
    try:
        lines = merges_bytes.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise ValueError("merges.txt is not UTF-8") from None
    if not lines or not lines[0].startswith("#version"):
        raise ValueError("merges.txt does not start with a '#version' line")
    merges = []
    for n, line in enumerate(lines[1:], 2):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"merges.txt line {n} is not two tokens separated by one space")
        merges.append((parts[0], parts[1]))
    if merges_count is not None and len(merges) != merges_count:
        raise ValueError(f"merges.txt has {len(merges)} merges, the manifest says {merges_count}")
    return {"vocab": vocab, "merges": merges}
