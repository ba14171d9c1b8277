"""``clip-latency verify BUNDLE``: the bundle's Core ML artifacts through the Core ML reference interpreter.

Runs on any OS. Every Core ML artifact of the bundle -- ``.mlpackage`` files, their ``_imagetype``
variants (fed the probe images as 0..255 pixel values), and the Core ML model inside a Core
ML-delegated ExecuTorch ``.pte`` -- is evaluated on the bundle's probe inputs by
:mod:`clipdeploy.latency.coreml_ref` and held to the export bars (:mod:`clipdeploy.latency.parity`)
against the bundle's reference embeddings. What this checks is the ML Program the converter wrote
(with fp16 rounding emulated per op), not Apple's kernels: it catches conversion and weight errors and
fp16 range problems, not device-specific numerics or speed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .bundle import Bundle
from .parity import CLASSIFIER_THRESHOLDS, THRESHOLDS, failures, logit_failures, measure, measure_logits

WHAT_IT_CHECKS = ("checks the ML Program the converter wrote (fp16 emulated op by op) with clipdeploy's "
                  "reference interpreter, not Apple's Core ML kernels")
COREML_TARGETS = ("coreml", "executorch-coreml")


class VerifyInputError(ValueError):
    """Nothing to verify / bad arguments (exit 2)."""


def _programs(bundle: Bundle, art: dict, tmp: Path) -> list:
    """[(label, package path, input scale)] for one manifest artifact."""
    path = bundle.path / art["path"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is listed in the manifest but missing")
    if art["target"] == "executorch-coreml":
        # the .pte container reader (latency.pte_coreml); only a .pte artifact needs it
        from .pte_coreml import extract_coreml_from_pte
        pkgs = extract_coreml_from_pte(path, tmp / art["path"].replace("/", "_"))
        if len(pkgs) != 1:
            raise ValueError(f"{art['path']}: {len(pkgs)} Core ML delegates; only a program that is one "
                             f"Core ML delegate end to end can be evaluated")
        return [(art["path"] + " (Core ML delegate)", pkgs[0], 1.0)]
    out = [(art["path"], path, 1.0)]
    variant = (art.get("info") or {}).get("image_type_variant")
    if variant and (path.parent / variant["file"]).exists():
        out.append((str(Path(art["path"]).parent / variant["file"]), path.parent / variant["file"], 255.0))
    return out


def verify_bundle(path, encoders: Optional[list] = None, pessimistic: bool = False,
                  log: Callable = lambda *_: None) -> dict:
    """Verify every Core ML artifact of the bundle at ``path``; returns
    ``{"bundle", "model", "checks": WHAT_IT_CHECKS, "pessimistic", "records": [...], "passed"}``.
    Each record: artifact, target, precision, encoder, opset, program precision, max_abs, cosine_min,
    cosine_mean, zero_shot_agreement, n, thresholds, failures, passed, seconds_per_run, ops,
    first_nonfinite, overflow_warnings, export_parity (the manifest's figures, if numeric)."""
    from . import coreml_ref as cr

    bundle = Bundle(path)
    bundle.verify_all()                    # every file against the manifest's digests, before anything runs
    bundle.tokenizer_files()
    arts = [a for a in bundle.manifest["artifacts"] if a["target"] in COREML_TARGETS
            and (not encoders or a["encoder"] in encoders)]
    if not arts:
        raise VerifyInputError(f"{bundle.path} has no Core ML artifacts to verify; export them with "
                               f"clip-export --target coreml")
    probe = bundle.probe()
    records = []
    with tempfile.TemporaryDirectory(prefix="clip-verify-") as d:
        for art in arts:
            which, prec = art["encoder"], art["precision"]
            x, ref, other = bundle.reference_for(which, probe)
            base = {"target": art["target"], "precision": prec, "encoder": which}
            try:
                programs = _programs(bundle, art, Path(d))
            except (OSError, ValueError, cr.CoreMLRefError) as e:
                records.append({**base, "artifact": art["path"], "passed": False, "error": str(e),
                                "failures": [str(e)]})
                log(f"[verify] {art['path']}: ERROR {e}")
                continue
            for label, pkg, scale in programs:
                log(f"[verify] {label} ({prec}) on {len(x)} probe inputs ...")
                rec = {**base, "artifact": label}
                try:
                    got, info = cr.evaluate(pkg, x * np.float32(scale) if scale != 1.0 else x, pessimistic)
                except (cr.CoreMLRefError, ValueError) as e:
                    rec.update(passed=False, error=str(e), failures=[str(e)],
                               op_name=getattr(e, "op_name", None), op_type=getattr(e, "op_type", None))
                    records.append(rec)
                    log(f"[verify] {label}: ERROR {e}")
                    continue
                fig = measure(ref, got, other)
                missed = failures(fig, prec)
                bars = THRESHOLDS[prec]
                if which == "classifier":         # logits: the classifier bars (top-1, logit_scale units)
                    lfig = measure_logits(ref, got, bundle.classifier()["logit_scale"])
                    missed = logit_failures(lfig, prec) if fig.get("finite", True) else ["non-finite outputs"]
                    fig.update({k: lfig[k] for k in ("max_abs_cosine_units", "top1_agreement", "top1_exact")})
                    bars = CLASSIFIER_THRESHOLDS[prec]
                origin = info["first_nonfinite"]
                if origin:
                    missed = [m + (f" (first non-finite value at op {origin['name']!r} ({origin['type']}))"
                                   if m == "non-finite outputs" else "") for m in missed]
                exp = art.get("parity") or {}
                rec.update(fig)
                rec.update({k: info[k] for k in ("opset", "program_precision", "ops", "seconds_per_run",
                                                  "first_nonfinite", "overflow_warnings")})
                rec.update({
                    "thresholds": bars, "failures": missed, "passed": not missed,
                    "export_parity": ({k: exp.get(k) for k in ("checked", "max_abs", "cosine_min",
                                                                 "zero_shot_agreement")}
                                      if "max_abs" in exp and scale == 1.0 else None)})
                records.append(rec)
                log(f"[verify] {label}: max abs {fig['max_abs']:.2e}, min cos {fig['cosine_min']:.7f}, "
                    f"zero-shot {fig['zero_shot_agreement']:.0%}, {rec['seconds_per_run']:.2f}s/run -> "
                    + ("ok" if not missed else "FAILED: " + "; ".join(missed)))
    return {"bundle": str(bundle.path), "model": bundle.model, "checks": WHAT_IT_CHECKS,
            "pessimistic": bool(pessimistic), "records": records,
            "passed": all(r["passed"] for r in records)}


def table(result: dict) -> str:
    rows = ["| artifact | precision | opset | max abs | cos min | zero-shot | s/run | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        if "max_abs" not in r:
            rows.append(f"| {r['artifact']} | {r['precision']} | — | — | — | — | — | ERROR: {r['error']} |")
            continue
        rows.append(f"| {r['artifact']} | {r['precision']} | {r['opset']} | {r['max_abs']:.2e} | "
                    f"{r['cosine_min']:.7f} | {r['zero_shot_agreement']:.0%} | {r['seconds_per_run']:.2f} | "
                    + ("ok" if r["passed"] else "FAILED: " + "; ".join(r["failures"])) + " |")
    return "\n".join(rows)
