"""Zero-shot classifier artifacts: a label list and a prompt ensemble baked into one image -> logits model.

CLIP's zero-shot classifier is a fixed class matrix: each label is written into every prompt template, each
prompt is encoded by the (verified, reparameterized) PyTorch text tower, the L2-normalized prompt embeddings
of a label are averaged and re-normalized, and an image's logits are ``logit_scale * image_embedding @ C.T``.
open_clip's :func:`open_clip.zero_shot_classifier.build_zero_shot_classifier` computes the ensemble; this
module feeds it the bundle's own text wrapper and tokenizer, reads the labels and templates, defines the
:class:`Classifier` wrapper every target exports (``image`` [1,3,R,R] -> ``logits`` [1,N]) and the logits
gate (:func:`measure_logits`, :data:`CLASSIFIER_THRESHOLDS`).

Template sources (``--templates``):

* ``openai``: the 80 ImageNet prompt templates of the CLIP paper (open_clip's ``OPENAI_IMAGENET_TEMPLATES``);
* ``cifar10``: the CLIP paper's 18 CIFAR-10 templates;
* ``simple``: ``a photo of a {}.``;
* a file: one template per line, each with exactly one ``{}`` (blank lines and lines starting ``#`` skipped).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipdeploy.latency.parity import VALIDATION_AGREEMENT, ZERO_SHOT_TIE
from clipdeploy.models.errors import ClipDeployError

#: the CLIP paper's CIFAR-10 prompt ensemble (openai/CLIP, data/prompts.md)
CIFAR10_TEMPLATES = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
    "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
    "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
    "a photo of the small {}.", "a photo of the big {}.",
)
TEMPLATE_SOURCES = ("openai", "cifar10", "simple")
#: limits on the two text files (untrusted input: a label file from a user, a template file)
MAX_FILE_BYTES = 4 << 20
MAX_LABELS = 100_000
MAX_TEMPLATES = 1_000
#: where the class matrix goes in the bundle, for apps that keep the image encoder
CLASS_EMBEDDINGS = "classifier/class_embeddings.npy"
LABELS_FILE = "classifier/labels.json"
OUTPUT = "logits"

#: the logits gate. Logits are ``logit_scale x cosine``, so the max-abs bars are in cosine units and scale
#: with the model's logit_scale (x100 for the released models): fp32 2e-5 (the image embedding's 1e-5 max abs
#: over a 512-d dot product is at most 2.3e-4, in practice ~1e-6), fp16 1e-2 (an embedding at the fp16 bars,
#: cosine >= 0.99995, is at most 0.01 away from the reference in L2, hence at most 0.01 from any unit class
#: vector's dot product). Top-1 agreement is the image's predicted class: 100 % for the float precisions,
#: >= 99 % for int8 on the probe images; on the validation images >= 95 % (VALIDATION_AGREEMENT). A top-1 that
#: differs only where the reference's two logits are within ZERO_SHOT_TIE x logit_scale is a tie, not a miss.
CLASSIFIER_THRESHOLDS = {
    "fp32": {"max_abs_cosine_units": 2e-5, "top1_agreement": 1.0},
    "fp16": {"max_abs_cosine_units": 1e-2, "top1_agreement": 1.0},
    "int8": {"max_abs_cosine_units": None, "top1_agreement": 0.99},
}
CLASSIFIER_VALIDATION_THRESHOLDS = {p: {**t, "top1_agreement": VALIDATION_AGREEMENT}
                                    for p, t in CLASSIFIER_THRESHOLDS.items()}


class ClassifierInputError(ClipDeployError):
    """A label or template file that cannot make a classifier."""


def _read_lines(path, what: str) -> list:
    p = Path(path)
    if not p.is_file():
        raise ClassifierInputError(f"{what} file {path} not found: give a text file with one entry per line")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ClassifierInputError(f"{what} file {path} is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ClassifierInputError(f"{what} file {path} is not UTF-8 text (byte {e.start}): save it as UTF-8")
    if "\x00" in text:
        raise ClassifierInputError(f"{what} file {path} contains a NUL byte: it is not a text file")
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]


def read_labels(path) -> list:
    """One label per line (surrounding blanks stripped, blank lines skipped); refuses duplicates, braces, a
    file without labels and more than MAX_LABELS."""
    labels, seen = [], {}
    for n, line in _read_lines(path, "label"):
        if not line:
            continue
        if "{" in line or "}" in line:
            raise ClassifierInputError(f"label file {path} line {n}: {line!r} has a brace; labels are plain text "
                                       f"(templates hold the {{}})")
        if line in seen:
            raise ClassifierInputError(f"label file {path} line {n}: {line!r} repeats line {seen[line]}: "
                                       f"each label once")
        seen[line] = n
        labels.append(line)
    if not labels:
        raise ClassifierInputError(f"label file {path} has no labels: write one label per line")
    if len(labels) > MAX_LABELS:
        raise ClassifierInputError(f"label file {path} has {len(labels)} labels, over the {MAX_LABELS} limit")
    return labels


def _check_template(t: str, where: str) -> None:
    if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
        raise ClassifierInputError(f"{where}: {t!r} must contain exactly one {{}} (where the label goes) "
                                   f"and no other brace")


def templates(source: str) -> tuple:
    """``(name, [template, ...])`` for ``openai`` | ``cifar10`` | ``simple`` | a file path."""
    if source == "openai":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
        out = [f("{}") for f in OPENAI_IMAGENET_TEMPLATES]
    elif source == "cifar10":
        out = list(CIFAR10_TEMPLATES)
    elif source == "simple":
        out = ["a photo of a {}."]
    else:
        if not Path(source).exists():
            raise ClassifierInputError(f"--templates {source!r}: not one of {', '.join(TEMPLATE_SOURCES)} and "
                                       f"no such file (a file has one template per line, each with {{}})")
        out = []
        for n, line in _read_lines(source, "template"):
            if not line or line.startswith("#"):
                continue
            _check_template(line, f"template file {source} line {n}")
            out.append(line)
        if not out:
            raise ClassifierInputError(f"template file {source} has no templates: one per line, each with {{}}")
        if len(out) > MAX_TEMPLATES:
            raise ClassifierInputError(f"template file {source} has {len(out)} templates, over {MAX_TEMPLATES}")
        if len(set(out)) != len(out):
            dup = next(t for t in out if out.count(t) > 1)
            raise ClassifierInputError(f"template file {source}: {dup!r} appears twice: each template once")
        return "file", out
    for t in out:
        _check_template(t, f"templates {source}")
    return source, out


def prompts(labels: list, temps: list) -> list:
    return [t.replace("{}", lab) for lab in labels for t in temps]


def check_prompt_lengths(labels: list, temps: list, tokenize: Callable, context: int) -> None:
    """Refuse a label whose longest prompt does not fit the context (the tokenizer would cut its end token)."""
    longest = max(temps, key=len)
    ids = tokenize([longest.replace("{}", lab) for lab in labels])
    ids = ids.numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    full = np.flatnonzero(ids[:, -1] != 0)
    if len(full):
        lab = labels[int(full[0])]
        raise ClassifierInputError(f"label {lab!r}: the prompt {longest.replace('{}', lab)!r} does not fit "
                                   f"{context} tokens; shorten the label")


class _Tower:
    """What build_zero_shot_classifier calls: ``encode_text(ids, normalize=True)`` on the text wrapper."""

    def __init__(self, text_wrapper: nn.Module):
        self.text = text_wrapper

    def encode_text(self, ids, normalize=True):
        return F.normalize(self.text(ids.to(torch.int32)), dim=-1)


def class_embeddings(text_wrapper: nn.Module, tokenize: Callable, labels: list, temps: list,
                     log: Optional[Callable] = None) -> np.ndarray:
    """float32 [N, D]: per label, the normalized mean of its normalized prompt embeddings (the verified text
    tower, in batches of about 256 prompts; a progress line per batch when ``log``)."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    per_batch = max(1, 256 // len(temps))
    total = -(-len(labels) // per_batch)
    done = [0]

    def tok(texts):
        done[0] += 1
        if log and total > 1:
            log(f"        class embeddings: batch {done[0]}/{total} ({len(texts)} prompts)")
        return tokenize(list(texts))

    with torch.no_grad():
        w = build_zero_shot_classifier(_Tower(text_wrapper.eval()), tok, labels, temps,
                                       num_classes_per_batch=per_batch)
    return np.ascontiguousarray(w.T.numpy().astype(np.float32))


class Classifier(nn.Module):
    """The image wrapper followed by the fixed class matrix: ``logits = logit_scale * embedding @ C.T``."""

    def __init__(self, image_wrapper: nn.Module, classes: np.ndarray, logit_scale: float):
        super().__init__()
        self.image = image_wrapper
        self.register_buffer("classes_t", torch.from_numpy(np.ascontiguousarray(classes.T, np.float32)))
        self.register_buffer("scale", torch.tensor(float(logit_scale), dtype=torch.float32))

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        return (embedding @ self.classes_t) * self.scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.image(image))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def measure_logits(reference: np.ndarray, got: np.ndarray, logit_scale: float) -> dict:
    """Figures of classifier logits [M, N] against the reference: max abs (logits and probabilities), the
    max abs in cosine units (/ logit_scale) and the top-1 agreement (ties within ZERO_SHOT_TIE cosine)."""
    reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    if reference.shape != got.shape:
        raise ValueError(f"classifier output shape {got.shape} != reference {reference.shape}")
    if not np.isfinite(got).all():
        return {"max_abs": float("inf"), "max_abs_cosine_units": float("inf"), "max_abs_probs": float("inf"),
                "top1_agreement": 0.0, "n": int(len(got)), "classes": int(got.shape[1]), "finite": False}
    rows = np.arange(len(got))
    top_ref, top_got = reference.argmax(-1), got.argmax(-1)
    tie = reference[rows, top_ref] - reference[rows, top_got] <= ZERO_SHOT_TIE * logit_scale
    err = float(np.abs(reference - got).max())
    return {"max_abs": err, "max_abs_cosine_units": err / logit_scale,
            "max_abs_probs": float(np.abs(softmax(reference) - softmax(got)).max()),
            "top1_agreement": float(np.mean((top_ref == top_got) | tie)),
            "top1_exact": float(np.mean(top_ref == top_got)), "n": int(len(got)),
            # how many labels the reference predicts over these images (1 would make agreement vacuous)
            "reference_top1_labels": int(len(set(top_ref.tolist()))),
            "classes": int(got.shape[1]), "finite": True}


def logit_failures(fig: dict, precision: str, thresholds: dict = None) -> list:
    t = (thresholds or CLASSIFIER_THRESHOLDS)[precision]
    out = []
    if not fig.get("finite", True):
        out.append("non-finite logits")
    bar = t["max_abs_cosine_units"]
    if bar is not None and not fig["max_abs_cosine_units"] <= bar:
        out.append(f"logits max abs {fig['max_abs']:.3g} ({fig['max_abs_cosine_units']:.3g} x logit_scale) > "
                   f"{bar:g} x logit_scale")
    if fig["top1_agreement"] < t["top1_agreement"]:
        out.append(f"top-1 agreement {fig['top1_agreement']:.1%} < {t['top1_agreement']:.0%} "
                   f"({round((1 - fig['top1_agreement']) * fig['n'])} of {fig['n']} images)")
    return out


def manifest_block(labels: list, temps: list, source: str, logit_scale: float, dim: int) -> dict:
    """The manifest's ``classifier`` entry (the export and the golden bundle write the same keys)."""
    return {"labels": list(labels), "templates": list(temps), "template_source": source,
            "logit_scale": float(logit_scale), "embedding_dim": int(dim),
            "class_embeddings": CLASS_EMBEDDINGS, "labels_file": LABELS_FILE,
            "logits": "logit_scale * image_embedding @ class_embeddings.T (rows in label order); "
                      "probs = softmax(logits)"}
