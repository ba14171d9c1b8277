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

# the logits gate: one definition with the harness and `clip-latency verify`
from clipdeploy.latency.parity import (CLASSIFIER_THRESHOLDS, CLASSIFIER_VALIDATION_THRESHOLDS,  # noqa: F401
                                       logit_failures, measure_logits, softmax)
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
from clipdeploy.latency.bundle import CLASS_EMBEDDINGS, LABELS_FILE  # noqa: E402,F401 (one definition)
OUTPUT = "logits"

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


def manifest_block(labels: list, temps: list, source: str, logit_scale: float, dim: int) -> dict:
    """The manifest's ``classifier`` entry (:func:`clipdeploy.latency.bundle.classifier_block`, the reader's
    contract; the golden bundle writes the same)."""
    from clipdeploy.latency.bundle import classifier_block
    return classifier_block(labels, temps, source, logit_scale, dim)


def compose_onnx(image_model: Path, out_path: Path, classes: np.ndarray, logit_scale: float) -> dict:
    """The ONNX classifier as the gated image artifact's own graph with the head appended: one MatMul by the
    constant ``(logit_scale x C).T`` [D, N], output ``logits`` [batch, N]. Whatever the image artifact is
    (fp32, fp16 with float32 I/O, int8 with its chosen quantized nodes), the classifier computes exactly
    that, then the head in float32. Written to a temporary name, checked, renamed. Returns the record."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(image_model))
    g = model.graph
    if len(g.output) != 1 or len(g.input) != 1 or g.output[0].name != "embedding":
        raise RuntimeError(f"{image_model}: expected one input and one 'embedding' output to compose a classifier")
    emb = g.output[0]
    batch = emb.type.tensor_type.shape.dim[0]
    w = np.ascontiguousarray((np.float64(logit_scale) * classes.astype(np.float64)).T.astype(np.float32))
    g.initializer.append(numpy_helper.from_array(w, "classifier_weight"))
    g.node.append(helper.make_node("MatMul", ["embedding", "classifier_weight"], ["logits"],
                                   name="classifier_head"))
    del g.output[:]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, int(w.shape[1])])
    if batch.dim_param:
        out.type.tensor_type.shape.dim[0].dim_param = batch.dim_param
    elif batch.dim_value:
        out.type.tensor_type.shape.dim[0].dim_value = batch.dim_value
    g.output.append(out)
    g.value_info.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                      [d.dim_param or d.dim_value or None
                                                       for d in emb.type.tensor_type.shape.dim]))
    model.doc_string = (model.doc_string or "") + f" + zero-shot head ({w.shape[1]} classes)"
    tmp = out_path.with_name(out_path.name + ".partial")
    onnx.save(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(out_path)
    return {"composed_from": image_model.name, "head": f"MatMul by (logit_scale x class matrix).T, float32 "
                                                       f"[{w.shape[0]}, {w.shape[1]}]",
            "size_bytes": out_path.stat().st_size}
