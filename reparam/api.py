"""``fused, report = reparameterize(m)`` and its report."""
from __future__ import annotations

import collections
import copy
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from clipdeploy.models.api import CLIPModel
from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images

from .core import (MODEL_TOL, FoldError, batchnorm_modules, fold_module_tree, not_folded,
                   train_time_modules)

FUSED_MARKER = "__clipdeploy_fused__"   # key in a fused checkpoint; value: format version tensor
FUSED_FORMAT = 1


@dataclass
class ReparamReport:
    model: str
    folds: list                         # [{module, kind, max_abs, rel}]
    folds_by_kind: dict
    batchnorm: dict                     # {"before": n, "after": n}
    train_time_modules: dict            # {"before": n, "after": n}
    params: dict                        # {"before": n, "after": n}
    flops: Optional[dict]               # {"image": {"before", "after"}, "text": {...}}; None: not counted
    parity: dict                        # whole-model check on the probe set
    not_folded: list                    # [{module, type, reason}]
    latency_ms: Optional[dict] = None   # {"image": {"before", "after", "speedup"}, "text": ..., "runs"}
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"reparameterization of {self.model}"]
        if self.note:
            lines.append(f"  {self.note}")
        lines.append(f"  {'fold':<26}{'count':>6}")
        for k, v in sorted(self.folds_by_kind.items()):
            lines.append(f"  {k:<26}{v:>6}")
        worst = max((f["rel"] for f in self.folds), default=0.0)
        lines.append(f"  worst per-fold relative error: {worst:.2e}")
        lines.append(f"  {'':<26}{'before':>14}{'after':>14}")
        lines.append(f"  {'BatchNorm modules':<26}{self.batchnorm['before']:>14}{self.batchnorm['after']:>14}")
        lines.append(f"  {'train-time modules':<26}{self.train_time_modules['before']:>14}"
                     f"{self.train_time_modules['after']:>14}")
        lines.append(f"  {'parameters':<26}{self.params['before']:>14,}{self.params['after']:>14,}")
        for tower in ("image", "text") if self.flops else ():
            f = self.flops[tower]
            lines.append(f"  {tower + ' GFLOPs (batch 1)':<26}{f['before'] / 1e9:>14.3f}{f['after'] / 1e9:>14.3f}")
        if self.latency_ms:
            for tower in ("image", "text"):
                lat = self.latency_ms[tower]
                lines.append(f"  {tower + ' eager ms (median)':<26}{lat['before']:>14.2f}{lat['after']:>14.2f}"
                             f"   x{lat['speedup']:.2f}")
            lines.append(f"  latency: batch 1, {self.latency_ms['runs']} runs each, before/after interleaved, "
                         f"{self.latency_ms['threads']} threads")
        p = self.parity
        lines.append(f"  parity on probe set: image max abs {p['image_max_abs']:.2e}, text max abs "
                     f"{p['text_max_abs']:.2e}, min cosine {p['min_cosine']:.8f} (tolerance {MODEL_TOL:g})")
        for nf in self.not_folded:
            lines.append(f"  NOT FOLDED {nf['module']} ({nf['type']}): {nf['reason']}")
        return "\n".join(lines)


def _flops(module, fn, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:  # (no_grad trips its module tracker)
        fn(x)
    return int(counter.get_total_flops())


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure_latency(before, after, image, tokens, runs: int = 30, warmup: int = 3) -> dict:
    """Eager medians of both modules, interleaved run by run so machine noise hits both alike."""
    out = {"runs": runs, "threads": torch.get_num_threads()}
    for tower, x in (("image", image), ("text", tokens)):
        fns = [getattr(before, f"encode_{tower}"), getattr(after, f"encode_{tower}")]
        samples = ([], [])
        with torch.inference_mode():
            for _ in range(warmup):
                for fn in fns:
                    fn(x)
            for _ in range(runs):
                for i, fn in enumerate(fns):
                    t = time.perf_counter()
                    fn(x)
                    samples[i].append((time.perf_counter() - t) * 1e3)
        b, a = statistics.median(samples[0]), statistics.median(samples[1])
        out[tower] = {"before": round(b, 3), "after": round(a, 3), "speedup": round(b / a, 3)}
    return out


def _parity(before, after, images, tokens) -> dict:
    with torch.no_grad():
        ib, ia = (F.normalize(m.encode_image(images), dim=-1) for m in (before, after))
        tb, ta = (F.normalize(m.encode_text(tokens), dim=-1) for m in (before, after))
    cos = torch.cat([(ib * ia).sum(-1), (tb * ta).sum(-1)])
    return {"image_max_abs": float((ib - ia).abs().max()), "text_max_abs": float((tb - ta).abs().max()),
            "min_cosine": float(cos.min()), "n_images": len(images), "n_captions": len(tokens)}


def reparameterize(m: CLIPModel, measure: bool = False, runs: int = 30, flops: bool = True):
    """Fold ``m``'s train-time branches on a deep copy. Returns ``(fused CLIPModel, ReparamReport)``.

    Raises :class:`FoldError` naming the module if any fold, or the whole model, is off by more than
    fp32 rounding. ``measure=True`` adds eager latency before/after (median of ``runs``);
    ``flops=False`` skips the FLOP count (4 extra forward passes).
    """
    before = m.module
    after = copy.deepcopy(before).eval()
    r = m.spec.image_size
    images = probe_images(r, 6)
    tokens = m.tokenize(PROBE_CAPTIONS).long()
    bn_before, tt_before = len(batchnorm_modules(before)), len(train_time_modules(before))
    records = fold_module_tree(after, m.spec, verify=True, images=images[:1], tokens=tokens[:2])
    parity = _parity(before, after, images, tokens)
    if max(parity["image_max_abs"], parity["text_max_abs"]) > MODEL_TOL:
        raise FoldError("<whole model>", "all folds", max(parity["image_max_abs"], parity["text_max_abs"]),
                        float("nan"), MODEL_TOL)
    one_img, one_txt = images[:1], tokens[:1]
    counted = {"image": {"before": _flops(before, before.encode_image, one_img),
                         "after": _flops(after, after.encode_image, one_img)},
               "text": {"before": _flops(before, before.encode_text, one_txt),
                        "after": _flops(after, after.encode_text, one_txt)}} if flops else None
    by_kind = collections.Counter(rec.kind for rec in records)
    left = not_folded(after)
    if not records:
        note = "nothing to fold: no train-time branches and no BatchNorm (already in inference form)"
    elif set(by_kind) == {"conv-BN"}:
        note = "no train-time branches to fold; only conv-BN pairs were folded"
    else:
        note = ""
    report = ReparamReport(
        model=m.spec.name,
        folds=[{"module": rec.module, "kind": rec.kind, "max_abs": rec.max_abs, "rel": rec.rel}
               for rec in records],
        folds_by_kind=dict(by_kind),
        batchnorm={"before": bn_before, "after": len(batchnorm_modules(after))},
        train_time_modules={"before": tt_before, "after": len(train_time_modules(after))},
        params={"before": _params(before), "after": _params(after)},
        flops=counted, parity=parity, not_folded=left, note=note)
    if measure:
        report.latency_ms = measure_latency(before, after, one_img, one_txt, runs=runs)
    fused = CLIPModel(m.spec, after, source=m.source, checkpoint_sha256=m.checkpoint_sha256,
                      layout=m.layout, fused=True)
    return fused, report


def fused_state_dict(fused: CLIPModel) -> dict:
    """The fused module's weights plus the marker ``load_model`` recognizes."""
    sd = dict(fused.module.state_dict())
    sd[FUSED_MARKER] = torch.tensor([FUSED_FORMAT])
    return sd
