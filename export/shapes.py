"""Which input shapes each exported artifact takes, and the export gate's checks of them.

* **Text length.** A causal text tower (each position attends only to earlier ones, EOT pooling) gives the
  same embedding when the 0-padding after EOT is cut off; a tower that attends to every position does
  not. :func:`text_causality` decides this *per model, in code*: it runs the PyTorch wrapper on captions
  cut to their token count and to 8/16/32 positions and compares with the 77-token embedding (≤ 1e-5);
  the spec's ``causal_text`` is only cross-checked (tests). Causal towers get a dynamic length (ONNX,
  ExecuTorch) or enumerated lengths (Core ML); the others keep 77 and the manifest says why.
* **Image batch.** ONNX: any batch; ExecuTorch: a dynamic batch up to :data:`IMAGE_BATCH_MAX`; Core ML:
  enumerated batches :data:`IMAGE_BATCHES`.
* Targets that are converted at static shapes here (LiteRT, ExecuTorch's Core ML delegate) keep batch 1 /
  77 tokens, with the reason.

The descriptors are :mod:`clipdeploy.models.shapes`'s; :func:`plan` gives an artifact's ``shapes`` entry.
"""
from __future__ import annotations

import numpy as np
import torch

from clipdeploy.models import shapes as S

CONTEXT = 77
#: Core ML's enumerated text lengths (a fully flexible length crashed Core ML at load before)
TEXT_LENGTHS = (8, 16, 32, 77)
#: the ExecuTorch image encoder's batch bound (its memory plan is sized for it)
IMAGE_BATCH_MAX = 8
#: Core ML's enumerated image batches
IMAGE_BATCHES = (1, 4, 8)
#: lengths the causality check cuts each caption to (those that hold its tokens)
CHECK_LENGTHS = (8, 16, 32)
#: tolerance of the causality check (fp32 PyTorch, the same function at two sizes)
CAUSAL_TOL = 1e-5
#: short captions the length gate adds to the probe set, so that the 8-token class is exercised
SHORT_CAPTIONS = ("dog", "a photo of a cat", "a red car", "two birds on a wire")

STATIC_REASON = {
    "coreml": ("Core ML artifacts are converted at static shapes here: coremltools' enumerated shapes leave "
               "symbolic shape arithmetic (shape/gather/concat feeding reshape) in the ML Program, which "
               "clipdeploy's Core ML reference interpreter cannot evaluate yet, so they could not pass the "
               "export gate on this host"),
    "litert": "LiteRT artifacts are converted at static shapes here (litert-torch, batch 1, 77 tokens)",
    "executorch-coreml": "ExecuTorch's Core ML delegate is lowered at static shapes here (batch 1, 77 tokens)",
}


def text_causality(text_wrapper, ids) -> dict:
    """``{"causal": bool, "reason": str, "max_abs": float, "checked": [...]}`` for the text wrapper, from
    ``ids`` (int [N, 77], the probe captions): each row cut to its token count and to each of
    :data:`CHECK_LENGTHS` that holds it, against the row at 77."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.int32)
    worst, checked = 0.0, []
    with torch.no_grad():
        ref = text_wrapper(ids)
        for i in range(len(ids)):
            n = S.token_count(ids[i].numpy())
            for L in sorted({n, *[c for c in CHECK_LENGTHS if c >= n]}):
                if L >= ids.shape[1]:
                    continue
                try:
                    got = text_wrapper(ids[i:i + 1, :L].contiguous())
                except Exception as e:  # noqa: BLE001 - the tower refuses other lengths
                    msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                    return {"causal": False, "checked": checked, "max_abs": None,
                            "reason": f"the text tower takes only {ids.shape[1]} positions ({msg})"}
                d = float((got - ref[i:i + 1]).abs().max())
                checked.append({"tokens": n, "length": L, "max_abs": d})
                worst = max(worst, d)
    if worst > CAUSAL_TOL:
        return {"causal": False, "checked": checked, "max_abs": worst,
                "reason": (f"the text tower attends to every position: cutting the padding after EOT "
                           f"changes the embedding (max abs {worst:.3g} against 77 tokens)")}
    return {"causal": True, "checked": checked, "max_abs": worst,
            "reason": f"causal: cutting the padding after EOT keeps the 77-token embedding (max abs {worst:.1e})"}


def plan(target: str, which: str, causal: dict) -> dict:
    """The ``shapes`` entry an artifact of ``target`` is exported with."""
    static = STATIC_REASON.get(target)
    if which == "image":
        if static:
            return {"batch": S.fixed(1, static)}
        if target == "onnx":
            return {"batch": S.dynamic(1, None)}
        if target == "executorch":
            return {"batch": S.dynamic(1, IMAGE_BATCH_MAX)}
        if target == "coreml":
            return {"batch": S.enumerated(IMAGE_BATCHES)}
        return {"batch": S.fixed(1, f"{target}: batch 1 only")}
    batch = S.dynamic(1, None) if target == "onnx" else S.fixed(1)
    if static:
        return {"batch": batch, "length": S.fixed(CONTEXT, static)}
    if not causal["causal"]:
        return {"batch": batch, "length": S.fixed(CONTEXT, causal["reason"])}
    if target in ("onnx", "executorch"):
        return {"batch": batch, "length": S.dynamic(1, CONTEXT)}
    if target == "coreml":
        return {"batch": batch, "length": S.enumerated(TEXT_LENGTHS)}
    return {"batch": batch, "length": S.fixed(CONTEXT, f"{target}: 77 tokens only")}


def batch_sizes(desc: dict) -> list:
    """The batch sizes (> 1) the gate checks against batch 1: 4 and 8 where accepted, else the
    descriptor's largest."""
    sizes = [n for n in (4, IMAGE_BATCH_MAX) if S.accepts(desc, n)]
    top = S.largest(desc)
    if not sizes and top and top > 1:
        sizes = [top]
    return sizes


def length_classes(desc: dict) -> list:
    """The lengths (< 77) the gate checks: every enumerated one; for a dynamic length 2 (SOT + EOT),
    8, 16, 32 and each caption's own token count."""
    return [L for L in S.classes(desc, probe=(2, 8, 16, 32)) if 2 <= L < CONTEXT]
