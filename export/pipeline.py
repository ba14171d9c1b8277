"""The export job: load -> reparameterize -> per target: export -> parity gate -> bundle."""
from __future__ import annotations

import datetime
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from . import bundle as bundle_mod
from clipdeploy.latency import integrity
from clipdeploy.models import shapes as S

from . import shapes as shapes_mod
from .backends.base import BackendUnavailable, time_alternately
from .parity import QUANTIZED, THRESHOLDS, VALIDATION_THRESHOLDS, ParityError, check, measure
from .targets import ExportInputError, backend, resolve
from .wrappers import IMAGE_INPUT, OUTPUT, TEXT_INPUT, encoder, example_input

ENCODERS = ("image", "text")
#: precisions the export also gates on the generated validation set: all of them (fp32 at 1e-5 there too, so
#: that whichever artifact is the default has passed on inputs beyond the probe)
VALIDATED = ("fp32", "fp16", "int8")


def _stage(log, msg):
    log(msg)
    return time.perf_counter()


def _gate(b, art_path: Path, result, which: str, precision: str, images, ids, ref_image, ref_text,
          what: str) -> dict:
    """Run the artifact on the probe set and check it against the PyTorch reference.

    Where the real runtime is not on this host (Core ML off macOS) the saved artifact is checked
    structurally and then evaluated by the backend's reference runtime (the Core ML reference
    interpreter), held to the same bars; a backend without one is checked structurally only."""
    inputs = images if which == "image" else ids
    ref, other = (ref_image, ref_text) if which == "image" else (ref_text, ref_image)
    if b.can_run_here:
        got = b.run(art_path, inputs)
        return {"checked": "numeric", "runtime": b.name, **check(measure(ref, got, other), precision, what)}
    structure = b.structural_check(art_path, result.inputs, result.outputs) \
        if _takes_expected(b) else b.structural_check(art_path)
    reason = f"{b.name} artifacts cannot run on this host"
    if b.reference_runtime is None:
        return {"checked": "structural", "reason": reason, "structure": structure}
    out = {"checked": "reference-interpreter", "reason": reason, "runtime": b.reference_runtime,
           "structure": structure}
    out.update(_reference_check(b, art_path, inputs, ref, other, precision, what))
    variant = (result.info or {}).get("image_type_variant")
    if variant:                       # the ImageType package takes 0..255 pixel values
        vpath = art_path.parent / variant["file"]
        out["image_type_variant"] = _reference_check(b, vpath, inputs * np.float32(255.0), ref, other,
                                                     precision, f"{what} ({variant['file']})")
    return out


def _reference_check(b, path: Path, inputs, ref, other, precision: str, what: str) -> dict:
    got, info = b.reference_run(path, inputs)
    origin = info.get("first_nonfinite")
    if origin:
        what += f" (first non-finite value at op {origin['name']!r} ({origin['type']}))"
    return {**check(measure(ref, got, other), precision, what), "interpreter": info}


def _validate(b, art_path: Path, which: str, precision: str, val: dict, what: str) -> dict:
    """The artifact on the validation set (inputs quantization never saw), held to VALIDATION_THRESHOLDS:
    every row at the cosine bar, agreement both ways. Raises :class:`ParityError` like the probe gate."""
    inputs = val["images"] if which == "image" else val["ids"]
    ref, other = (val["ref_image"], val["ref_text"]) if which == "image" else (val["ref_text"], val["ref_image"])
    t = time.perf_counter()
    if b.can_run_here:
        got, how = b.run(art_path, inputs), "numeric"
    elif b.reference_runtime is not None:
        got, how = b.reference_run(art_path, inputs)[0], "reference-interpreter"
    else:
        return {"checked": "structural", "reason": f"{b.name} artifacts cannot run on this host"}
    fig = measure(ref, got, other, cosine_bar=THRESHOLDS[precision]["min_cosine"], both_ways=True)
    fig.update(checked=how, seconds=round(time.perf_counter() - t, 2),
               direction="image->text" if which == "image" else "text->image",
               retrieval_direction="text->image" if which == "image" else "image->text")
    return check(fig, precision, f"{what} on the validation set ({len(inputs)} {which} rows)",
                 VALIDATION_THRESHOLDS)


def _caller(b, path: Path):
    """``call(x) -> float32 [N, D]`` on the saved artifact, loaded once, for the shape checks."""
    call = b.open(path)

    def run(x):
        y = call(np.ascontiguousarray(x))
        y = y.detach().numpy() if isinstance(y, torch.Tensor) else y
        return np.asarray(y, np.float32).reshape(len(x), -1)
    return run


def _shape_gate(b, path: Path, which: str, precision: str, shp: dict, sets: dict, what: str) -> dict:
    """Every non-fixed shape an artifact accepts, checked on the saved file in its runtime.

    * text length: each caption of the probe set and :data:`shapes.SHORT_CAPTIONS` at its own token
      count (a dynamic length) and at every checked length class that holds it, against the PyTorch
      77-token embedding, at the precision's bars;
    * image batch: the first N probe + validation images in one call against the same artifact run
      row by row (batch 1): fp32 at the fp32 bars (max abs <= 1e-5); fp16/int8 rows at their precision's
      bars against the PyTorch reference (a per-tensor int8 activation scale depends on the batch), with
      the max abs against batch 1 recorded.

    Returns the record (``parity["shapes"]``); raises :class:`ParityError` on a miss. Artifacts that cannot
    run here, or take only fixed shapes, are not checked here (their record says so)."""
    from clipdeploy.models import shapes as S
    dims = {k: v for k, v in shp.items() if v["kind"] != "fixed"}
    if not dims:
        return {"checked": False, "why": "fixed shapes only"}
    if not b.can_run_here:
        return {"checked": False, "why": f"{b.name} artifacts cannot run on this host"}
    run = _caller(b, path)
    out = {"checked": True}
    if which == "text" and "length" in dims:
        ids, ref, other = sets["text_ids"], sets["text_ref"], sets["image_ref"]
        counts = np.array([S.token_count(r) for r in ids])
        desc = dims["length"]
        classes = shapes_mod.length_classes(desc)
        rows = []
        # each caption at its own (shortest accepted) length, one at a time as an app runs it
        own = np.stack([run(S.trim(ids[i:i + 1], desc))[0] for i in range(len(ids))])
        fig = check(measure(ref, own, other), precision, f"{what} at each caption's shortest accepted length")
        rows.append({"length": "shortest", "rows": len(ids), "max_abs": fig["max_abs"],
                     "cosine_min": fig["cosine_min"], "zero_shot_agreement": fig["zero_shot_agreement"]})
        for L in classes:
            sel = np.flatnonzero(counts <= L)
            if not len(sel):
                continue
            got = np.stack([run(ids[i:i + 1, :L])[0] for i in sel])
            fig = check(measure(ref[sel], got, other), precision, f"{what} at length {L}")
            rows.append({"length": int(L), "rows": int(len(sel)), "max_abs": fig["max_abs"],
                         "cosine_min": fig["cosine_min"], "zero_shot_agreement": fig["zero_shot_agreement"]})
        out["length"] = {"against": "PyTorch at 77 tokens", "classes": rows,
                         "max_abs": max(r["max_abs"] for r in rows)}
    if "batch" in dims:
        x_all, ref_all, other = (sets["images"], sets["image_ref"], sets["text_ref"]) if which == "image" \
            else (sets["text_ids"], sets["text_ref"], sets["image_ref"])
        rows = []
        for n in shapes_mod.batch_sizes(dims["batch"]):
            if n > len(x_all):
                continue
            x, ref = x_all[:n], ref_all[:n]
            one = np.concatenate([run(x[i:i + 1]) for i in range(n)])
            got = run(x)
            vs_one = float(np.abs(got - one).max())
            if precision == "fp32":
                fig = check(measure(one, got, other), "fp32", f"{what} at batch {n} against batch 1 row by row")
            else:
                fig = check(measure(ref, got, other), precision, f"{what} at batch {n}")
            rows.append({"batch": int(n), "max_abs_vs_batch1": vs_one, "max_abs": fig["max_abs"],
                         "cosine_min": fig["cosine_min"], "zero_shot_agreement": fig["zero_shot_agreement"],
                         "against": "batch 1" if precision == "fp32" else "PyTorch"})
        out["batch"] = rows
    return out


def _shapes_line(rec: dict) -> str:
    if not rec.get("checked"):
        return ""
    parts = []
    if "length" in rec:
        parts.append("lengths " + ", ".join(str(r["length"]) for r in rec["length"]["classes"])
                     + f" vs 77 tokens: max abs {rec['length']['max_abs']:.1e}")
    for r in rec.get("batch", []):
        parts.append(f"batch {r['batch']} vs batch 1: max abs {r['max_abs_vs_batch1']:.1e}")
    return "shapes: " + "; ".join(parts)


def _validation_line(v: dict) -> str:
    if "cosine_min" not in v:
        return "validation: structural only (cannot run here)"
    below = f"{v['rows_below_cosine']} below the bar" if "rows_below_cosine" in v else f"max abs {v['max_abs']:.1e}"
    return (f"validation ({v['n']} rows, {v['seconds']:.1f}s): min cos {v['cosine_min']:.6f}, mean "
            f"{v['cosine_mean']:.6f}, {below}, agreement {v['direction']} "
            f"{v['zero_shot_agreement']:.1%}, {v['retrieval_direction']} {v['retrieval_agreement']:.1%}"
            + ("" if v.get("passed", True) else " -- MISSED: " + "; ".join(v["failures"])))


def _via(parity: dict) -> str:
    if parity["checked"] != "reference-interpreter" or "interpreter" not in parity:
        return ""
    v = parity.get("image_type_variant")
    return (" (Core ML reference interpreter, "
            f"{parity['interpreter']['seconds_per_run']:.2f}s/run"
            + (f"; ImageType variant max abs {v['max_abs']:.2e}" if v else "") + ")")


def _takes_expected(b) -> bool:
    import inspect
    return len(inspect.signature(b.structural_check).parameters) >= 3


def export_bundle(model: str, targets: list, precision: Optional[str] = None, checkpoint=None,
                  random_weights: Optional[int] = None, out=None, force: bool = False,
                  ios: int = 17, log: Callable = print, accept_degraded: bool = False,
                  backend_options: Optional[dict] = None, validation: Optional[tuple] = None,
                  classifier: Optional[dict] = None) -> dict:
    """Write the bundle for ``model``; returns the manifest. Raises on any failed gate, leaving
    ``out`` untouched; ``accept_degraded`` writes a quantized artifact that missed its bars anyway
    (flagged in the manifest, never the default); ``backend_options`` go to every backend's export
    (e.g. ``{"ort_offline": "auto"}``); ``validation``: ``(images, captions)`` of the generated
    validation set every artifact is gated on (default 32 and 64).

    Quantization calibrates and tunes on the probe set followed by the generated calibration set
    (:func:`clipdeploy.models.validation.calibration_set`); the gate holds every artifact to the
    validation set as well, which neither contains.

    ``classifier``: ``{"labels": LABELS.txt, "templates": "openai" | "cifar10" | "simple" | FILE}`` also writes,
    per target and precision, a zero-shot classifier artifact (``encoder: "classifier"``, ``image`` ->
    ``logits`` [1, N]) and the class matrix as data (:mod:`clipdeploy.export.classifier`), each artifact
    gated on its logits."""
    from clipdeploy.models import load_model
    from clipdeploy.models import validation as vset
    from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images, write_probe_files
    from clipdeploy.models.tokenizer import write_tokenizer_files
    from clipdeploy.reparam import reparameterize

    plan = resolve(targets, precision)                       # bad target/precision: fail before work
    for t, p in plan:
        backend(t).check_available(p)
    cls_req = None
    if classifier is not None:                               # bad label / template files: before work too
        from . import classifier as cls_mod
        src, temps = cls_mod.templates(classifier.get("templates") or "openai")
        cls_req = {"labels": cls_mod.read_labels(classifier["labels"]), "source": src, "templates": temps}
    out = Path(out or Path("out") / model)
    tmp = bundle_mod.prepare_output(out, force)
    t_job = time.perf_counter()
    try:
        t = _stage(log, f"[load] {model} from "
                        f"{'random weights (seed %d)' % random_weights if random_weights is not None else checkpoint or 'official weights'}")
        m = load_model(model, checkpoint=checkpoint, random_weights=random_weights)
        log(f"        {time.perf_counter() - t:.1f}s")
        t = _stage(log, "[reparam] fold train-time branches, verify fold by fold")
        fused, report = reparameterize(m, flops=False) if not m.fused else (m, None)
        log(f"        {len(report.folds) if report else 0} folds, BatchNorm "
            f"{report.batchnorm['before'] if report else 0} -> 0, {time.perf_counter() - t:.1f}s")
        spec = fused.spec
        wrappers = {w: encoder(fused.module, spec, w) for w in ENCODERS}
        images = probe_images(spec.image_size, 6)
        ids = fused.tokenize(PROBE_CAPTIONS)
        with torch.no_grad():
            ref_image = wrappers["image"](images).numpy()
            ref_text = wrappers["text"](ids).numpy()
        images_np, ids_np = images.numpy(), ids.numpy()
        causal = shapes_mod.text_causality(wrappers["text"], ids_np)
        log(f"[shapes] text tower {'causal' if causal['causal'] else 'not causal'}: {causal['reason']}")
        short_ids = fused.tokenize(list(shapes_mod.SHORT_CAPTIONS)).numpy()
        with torch.no_grad():
            short_ref = wrappers["text"](torch.from_numpy(short_ids)).numpy()
        shape_sets = {"text_ids": np.concatenate([ids_np, short_ids]),
                      "text_ref": np.concatenate([ref_text, short_ref]), "image_ref": ref_image,
                      "images": images_np, "text_ref_probe": ref_text}
        n_val_images, n_val_captions = validation or (vset.VALIDATION_IMAGES, vset.VALIDATION_CAPTIONS)
        needs_sets = any(p in VALIDATED for _, p in plan)
        cal = val = None
        if needs_sets:
            t = _stage(log, f"[sets] calibration ({vset.CALIBRATION_IMAGES} images, {vset.CALIBRATION_CAPTIONS} "
                            f"captions, seed {vset.CALIBRATION_SEED}, after the probe set) and validation "
                            f"({n_val_images} images, {n_val_captions} captions, seed {vset.VALIDATION_SEED})")
            cal_images, cal_caps = vset.calibration_set(spec.image_size)
            val_images, val_caps = vset.validation_set(spec.image_size, n_val_images, n_val_captions)
            cal_ids, val_ids = (fused.tokenize(cal_caps) if cal_caps else None), fused.tokenize(val_caps)
            with torch.no_grad():
                cal = {"images": images_np, "ids": ids_np, "ref_image": ref_image, "ref_text": ref_text}
                if len(cal_images):
                    cal["images"] = np.concatenate([images_np, cal_images])
                    cal["ref_image"] = np.concatenate([ref_image, wrappers["image"](torch.from_numpy(cal_images)).numpy()])
                if len(cal_caps):
                    cal["ids"] = np.concatenate([ids_np, cal_ids.numpy()])
                    cal["ref_text"] = np.concatenate([ref_text, wrappers["text"](cal_ids).numpy()])
                val = {"images": val_images, "ids": val_ids.numpy(),
                       "ref_image": wrappers["image"](torch.from_numpy(val_images)).numpy(),
                       "ref_text": wrappers["text"](val_ids).numpy()}
            # the batch checks take probe images then validation images (8 distinct rows)
            shape_sets["images"] = np.concatenate([images_np, val_images[:8]])
            shape_sets["image_ref"] = np.concatenate([ref_image, val["ref_image"][:8]])
            log(f"        {time.perf_counter() - t:.1f}s")
        manifest = {
            "schema_version": bundle_mod.MANIFEST_SCHEMA_VERSION,
            "model": spec.name,
            "clipdeploy_version": bundle_mod.versions()["clipdeploy"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint_sha256": m.checkpoint_sha256,
            "checkpoint": {"source": m.source, "sha256": m.checkpoint_sha256, "layout": m.layout,
                           # the seed of random_weights (None for a checkpoint): what a reference
                           # runtime (clip-latency's torch) needs to rebuild the same weights
                           "random_weights": None if random_weights is None else int(random_weights)},
            "spec": spec.to_dict(),
            "text_causality": {k: causal[k] for k in ("causal", "reason", "max_abs")},
            "preprocessing": {"image_size": spec.image_size, "resize_shorter_side_to": spec.resize_size,
                              "interpolation": spec.interpolation, "center_crop": spec.image_size,
                              "input_range": [0.0, 1.0], "channel_order": "RGB", "layout": "NCHW",
                              "mean": list(spec.mean) if spec.mean else None,
                              "std": list(spec.std) if spec.std else None,
                              "mean_std_inside_model": spec.mean is not None},
            "logit_scale": fused.logit_scale,
            "embedding_dim": spec.embed_dim,
            "reparam": None if report is None else {
                "folds_by_kind": report.folds_by_kind, "batchnorm": report.batchnorm,
                "train_time_modules": report.train_time_modules, "parity": report.parity},
            "versions": bundle_mod.versions(),
            "tokenizer": write_tokenizer_files(tmp / "tokenizer", spec.context_length),
            "probe": write_probe_files(tmp / "probe", images_np, PROBE_CAPTIONS, ids_np,
                                            ref_image, ref_text),
            "artifacts": [],
        }
        cls = None
        if cls_req is not None:
            cls = _classifier_setup(cls_req, fused, wrappers, spec, tmp, images_np, val, log)
            manifest["classifier"] = cls["manifest"]
        if needs_sets:
            manifest["calibration"] = {**vset.describe(len(cal_images), len(cal_caps), vset.CALIBRATION_SEED,
                                                       "quantization calibration"),
                                       "after_probe": True, "rows": {"image": len(cal["images"]),
                                                                     "text": len(cal["ids"])}}
            manifest["validation"] = {**vset.describe(n_val_images, n_val_captions, vset.VALIDATION_SEED,
                                                      "export gate of every artifact"),
                                      "thresholds": VALIDATION_THRESHOLDS}
        for target, prec in plan:
            b = backend(target)
            sub = f"{target}-{prec}"
            (tmp / sub).mkdir()
            for which in ENCODERS:
                name = f"{which}_encoder"
                t = _stage(log, f"[{sub}] export {name}")
                path = tmp / sub / f"{name}{b.extension}"
                if cal is not None:
                    calibration = cal["images"] if which == "image" else cal["ids"]
                    other_cal = cal["ref_text"] if which == "image" else cal["ref_image"]
                else:
                    calibration = images_np if which == "image" else ids_np
                    other_cal = ref_text if which == "image" else ref_image
                shp = shapes_mod.plan(target, which, causal)
                if prec in QUANTIZED:           # int8 variants keep the static contract (not gated yet)
                    shp = {k: (v if v["kind"] == "fixed" else
                               S.fixed(1 if k == "batch" else shapes_mod.CONTEXT,
                                       "int8 artifacts are exported and gated at batch 1, 77 tokens here"))
                           for k, v in shp.items()}
                result = b.export(wrappers[which], example_input(spec, which), which, prec, path, spec,
                                  {**(backend_options or {}), "ios": ios, "calibration": calibration,
                                   "other_tower": other_cal, "shapes": shp})
                t_export = time.perf_counter() - t
                t = time.perf_counter()
                try:
                    parity = _gate(b, result.path, result, which, prec, images_np, ids_np, ref_image,
                                   ref_text, f"{sub}/{name}{b.extension}")
                except ParityError as e:
                    if not (accept_degraded and prec in QUANTIZED):
                        raise
                    log(f"        warning: {e}; written anyway (--accept-degraded), never the default")
                    checked = "numeric" if b.can_run_here else "reference-interpreter"
                    parity = {"checked": checked, **e.figures, "thresholds": THRESHOLDS[prec],
                              "passed": False, "failures": e.failures, "accepted_degraded": True}
                if prec in VALIDATED and val is not None:
                    what = f"{sub}/{name}{b.extension}"
                    try:
                        parity["validation"] = _validate(b, result.path, which, prec, val, what)
                    except ParityError as e:
                        if not (accept_degraded and prec in QUANTIZED):
                            raise
                        log(f"        warning: {e}; written anyway (--accept-degraded), never the default")
                        parity["validation"] = {**e.figures, "thresholds": VALIDATION_THRESHOLDS[prec],
                                                "passed": False, "failures": e.failures}
                        parity.update(passed=False, accepted_degraded=True,
                                      failures=parity.get("failures", []) + [f"validation: {f}" for f in e.failures])
                try:
                    parity["shapes"] = _shape_gate(b, result.path, which, prec, shp, shape_sets,
                                                   f"{sub}/{name}{b.extension}")
                except ParityError as e:
                    if not (accept_degraded and prec in QUANTIZED):
                        raise
                    log(f"        warning: {e}; written anyway (--accept-degraded), never the default")
                    parity["shapes"] = {"checked": True, "passed": False, "failures": e.failures}
                    parity.update(passed=False, accepted_degraded=True,
                                  failures=parity.get("failures", []) + [f"shapes: {f}" for f in e.failures])
                size = _size(result.path.parent, result.files)
                log(f"        {t_export:.1f}s export, {time.perf_counter() - t:.1f}s gate: "
                    + (f"max abs {parity['max_abs']:.2e}, min cos {parity['cosine_min']:.6f}, zero-shot "
                       f"{parity['zero_shot_agreement']:.0%}" + _via(parity) if "max_abs" in parity
                       else "structural check passed (cannot run here)"))
                if "validation" in parity:
                    log("        " + _validation_line(parity["validation"]))
                if _shapes_line(parity["shapes"]):
                    log("        " + _shapes_line(parity["shapes"]))
                d = (result.info or {}).get("delegation")
                if d:
                    log(f"        delegated {d['share_delegated']:.1%} of ops in {d['partitions']} partition(s) "
                        f"({', '.join(d['backends'])}); outside: "
                        + (", ".join(f"{k} x{v}" for k, v in d["ops_outside"].items()) or "nothing"))
                manifest["artifacts"].append({
                    "target": target, "precision": prec, "encoder": which,
                    "path": f"{sub}/{result.path.name}",
                    "files": [f"{sub}/{f}" for f in result.files],
                    "inputs": result.inputs, "outputs": result.outputs, "shapes": shp, "parity": parity,
                    "size_bytes": size, "export_seconds": round(t_export, 2), "info": result.info})
            if cls is not None:
                image_art = next(a for a in manifest["artifacts"] if (a["target"], a["precision"], a["encoder"])
                                 == (target, prec, "image"))
                manifest["artifacts"].append(_classifier_artifact(b, target, prec, sub, tmp, spec, cls, cal,
                                                                  ios, backend_options, accept_degraded, log,
                                                                  image_art))
        encoders = [a for a in manifest["artifacts"] if a["encoder"] != "classifier"]
        manifest["precision_tradeoffs"] = _tradeoffs(encoders, tmp, images_np[:1], ids_np[:1], log)
        if cls is not None:
            _classifier_defaults(manifest, tmp, cls, log)
        (tmp / "README.md").write_text(bundle_mod.model_card(manifest))
        # every file written, digested; the manifest last (a copy without it is no bundle)
        manifest["integrity"] = integrity.record(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_json_default))
        bundle_mod.commit(tmp, out)
        log(f"[done] {out} in {time.perf_counter() - t_job:.1f}s")
        manifest["bundle"] = str(out)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tradeoffs(artifacts: list, root: Path, image, ids, log, runs: int = 20) -> list:
    """Mark one ``default`` artifact per (target, encoder) and compare quantized variants with their
    float one: size, median latency on this host (``runs`` calls after 3 warm-up calls, one process,
    the variants timed alternately), parity. The parity columns are the validation set's figures where
    the artifact has them, else the probe's (an artifact that cannot run here). A quantized artifact is the default only
    where it passed its gate on the probe and on the validation set and ran at least 5 % faster than the
    float one here; where it cannot run here it is not."""
    groups = {}
    for a in artifacts:
        groups.setdefault((a["target"], a["encoder"]), []).append(a)
    rows = []
    for (target, which), arts in groups.items():
        for a in arts:
            a["default"] = len(arts) == 1
        if len(arts) == 1:
            continue
        floats = [a for a in arts if a["precision"] not in QUANTIZED]
        base = floats[0] if floats else arts[0]
        b = backend(target)
        times = time_alternately([b.open(root / a["path"]) for a in arts],
                                 image if which == "image" else ids, runs) if b.can_run_here else None
        best, decisions = base, []
        for i, a in enumerate(arts):
            v = a["parity"].get("validation") or {}
            src = v if "cosine_min" in v else a["parity"]
            row = {"target": target, "encoder": which, "precision": a["precision"], "path": a["path"],
                   "size_bytes": a["size_bytes"], "size_ratio": a["size_bytes"] / base["size_bytes"],
                   "median_ms": times[i] if times else None,
                   "speedup": (times[arts.index(base)] / times[i]) if times else None,
                   "figures_from": "validation" if src is v else "probe", "rows": src.get("n"),
                   "cosine_min": src.get("cosine_min"), "cosine_mean": src.get("cosine_mean"),
                   "rows_below_cosine": src.get("rows_below_cosine"),
                   "zero_shot_agreement": src.get("zero_shot_agreement"),
                   "retrieval_agreement": src.get("retrieval_agreement"),
                   "max_abs": src.get("max_abs"),
                   "passed": a["parity"].get("passed", True) and v.get("passed", True)}
            rows.append(row)
            if a is base or a["precision"] not in QUANTIZED:
                continue
            if not row["passed"]:
                why = "missed its parity bars (--accept-degraded)"
            elif row["figures_from"] != "validation":
                why = "not checked on the validation set here"
            elif times is None:
                why = f"cannot be timed on this host ({b.name} artifacts do not run here)"
            elif row["speedup"] < 1.05:
                why = f"not faster than {base['precision']} here (x{row['speedup']:.2f})"
            else:
                best, why = a, f"x{row['speedup']:.2f} faster than {base['precision']} at parity"
            row["default_decision"] = why
            decisions.append(f"{a['precision']}: {why}")
        best["default"] = True
        for row in rows:
            if row["target"] == target and row["encoder"] == which:
                row["default"] = row["path"] == best["path"]
        log(f"[{target}] {which}: default {best['path']} ({'; '.join(decisions) or 'float'}); "
            + ", ".join(f"{r['precision']} {r['size_bytes'] / 2 ** 20:.1f} MB"
                        + (f" {r['median_ms']:.1f} ms" if r["median_ms"] else "")
                        + f" cos {r['cosine_min']:.5f}" for r in rows
                        if r["target"] == target and r["encoder"] == which and r["cosine_min"] is not None))
    return rows


def _size(base: Path, files) -> int:
    total = 0
    for f in files:
        p = base / f
        total += sum(x.stat().st_size for x in p.rglob("*") if x.is_file()) if p.is_dir() else p.stat().st_size
    return total


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Size):
        return list(o)
    return str(o)


# ---------------------------------------------------------------------------------------------------
# zero-shot classifier artifacts (clipdeploy.export.classifier)

def _classifier_setup(req: dict, fused, wrappers: dict, spec, tmp: Path, images_np, val, log) -> dict:
    """The class matrix through the verified PyTorch text tower, written as data; the Classifier wrapper
    every target exports; the gate's images (probe, then validation) and their PyTorch logits."""
    from . import classifier as C
    labels, temps = req["labels"], req["templates"]
    C.check_prompt_lengths(labels, temps, fused.tokenize, spec.context_length)
    t = _stage(log, f"[classifier] {len(labels)} labels x {len(temps)} templates ({req['source']}): class "
                    f"embeddings through the PyTorch text tower")
    classes = C.class_embeddings(wrappers["text"], fused.tokenize, labels, temps, log)
    (tmp / "classifier").mkdir()
    np.save(tmp / C.CLASS_EMBEDDINGS, classes)
    (tmp / C.LABELS_FILE).write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    scale = float(fused.logit_scale)
    module = C.Classifier(wrappers["image"], classes, scale).eval()
    images = images_np if val is None else np.concatenate([images_np, val["images"]])
    with torch.no_grad():
        ref = module(torch.from_numpy(images)).numpy()
        emb = wrappers["image"](torch.from_numpy(images)).numpy()
    # the wrapper is the formula: logit_scale x image embedding . class embedding
    formula = scale * emb.astype(np.float64) @ classes.astype(np.float64).T
    if not np.abs(formula - ref).max() <= 1e-4 * max(scale, 1.0):
        raise RuntimeError(f"classifier wrapper disagrees with its formula by {np.abs(formula - ref).max():.3g}")
    log(f"        {classes.shape[0]} x {classes.shape[1]} class matrix, logit_scale {scale:.4g}, "
        f"{time.perf_counter() - t:.1f}s")
    block = C.manifest_block(labels, temps, req["source"], scale, classes.shape[1])
    block.update(prompts_per_label=len(temps), thresholds=C.CLASSIFIER_THRESHOLDS,
                 validation_thresholds=C.CLASSIFIER_VALIDATION_THRESHOLDS)
    return {"manifest": block, "module": module, "classes": classes, "scale": scale, "images": images,
            "ref": ref, "n_probe": len(images_np), "labels": labels}


def _classifier_run(b, path: Path, x):
    if b.can_run_here:
        return b.run(path, x), "numeric"
    if b.reference_runtime is not None:
        return b.reference_run(path, x)[0], "reference-interpreter"
    return None, "structural"


def _classifier_gate(b, result, prec: str, cls: dict, what: str) -> dict:
    """The artifact's logits on the probe images (CLASSIFIER_THRESHOLDS) and on the validation images
    (CLASSIFIER_VALIDATION_THRESHOLDS) against the PyTorch classifier; raises ParityError on a miss."""
    from . import classifier as C
    t = time.perf_counter()
    n = cls["n_probe"]
    got, how = _classifier_run(b, result.path, cls["images"])
    out = {"checked": how, "against": "PyTorch classifier (image tower, class matrix, logit_scale)"}
    if not b.can_run_here:
        out["reason"] = f"{b.name} artifacts cannot run on this host"
        out["structure"] = b.structural_check(result.path, result.inputs, result.outputs) \
            if _takes_expected(b) else b.structural_check(result.path)
    if got is None:
        return out
    got = np.asarray(got, np.float32).reshape(len(cls["images"]), -1)
    for key, sl, bars, label in (("probe", slice(0, n), C.CLASSIFIER_THRESHOLDS, "probe images"),
                                 ("validation", slice(n, None), C.CLASSIFIER_VALIDATION_THRESHOLDS,
                                  "validation images")):
        if key == "validation" and len(cls["images"]) == n:
            continue
        fig = C.measure_logits(cls["ref"][sl], got[sl], cls["scale"])
        missed = C.logit_failures(fig, prec, bars)
        if missed:
            raise ParityError(f"{what} on the {label} ({fig['n']})", fig, missed)
        rec = {**fig, "thresholds": bars[prec], "passed": True}
        if key == "probe":
            out.update(rec)
        else:
            out["validation"] = rec
    variant = (result.info or {}).get("image_type_variant")
    if variant and b.reference_runtime is not None and not b.can_run_here:
        vgot = b.reference_run(result.path.parent / variant["file"], cls["images"][:n] * np.float32(255.0))[0]
        fig = C.measure_logits(cls["ref"][:n], np.asarray(vgot, np.float32).reshape(n, -1), cls["scale"])
        missed = C.logit_failures(fig, prec)
        if missed:
            raise ParityError(f"{what} ({variant['file']})", fig, missed)
        out["image_type_variant"] = {**fig, "passed": True}
    out["seconds"] = round(time.perf_counter() - t, 2)
    return out


def _classifier_artifact(b, target: str, prec: str, sub: str, tmp: Path, spec, cls: dict, cal, ios: int,
                         backend_options, accept_degraded: bool, log, image_artifact: Optional[dict] = None) -> dict:
    from clipdeploy.models import shapes as S
    name = "classifier"
    t = _stage(log, f"[{sub}] export {name} ({len(cls['labels'])} labels)")
    path = tmp / sub / f"{name}{b.extension}"
    n = len(cls["labels"])
    shp = {"batch": S.fixed(1, "classifier artifacts are exported and gated at batch 1")}
    calibration = cal["images"] if cal is not None else cls["images"][:cls["n_probe"]]
    image = image_artifact
    if target == "onnx" and image is not None and image["path"].endswith(".onnx") and \
            not (tmp / (image["path"] + ".data")).exists():
        # ONNX: the gated image graph itself with the head appended (the same quantized nodes at int8)
        from . import classifier as C
        from .backends.base import ExportResult
        info = C.compose_onnx(tmp / image["path"], path, cls["classes"], cls["scale"])
        import onnx
        hdr = onnx.load(str(path), load_external_data=False)
        dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
        result = ExportResult(path=path, files=[path.name],
                              inputs=[{"name": "image", "shape": dims(hdr.graph.input[0]), "dtype": "float32"}],
                              outputs=[{"name": "logits", "shape": dims(hdr.graph.output[0]), "dtype": "float32"}],
                              info={**info, "image_encoder_info": {k: v for k, v in (image.get("info") or {}).items()
                                                                   if k in ("int8", "fp16", "opset")}})
    else:
        result = b.export(cls["module"], example_input(spec, "image"), "classifier", prec, path, spec,
                          {**(backend_options or {}), "ios": ios, "calibration": calibration,
                           # quantization tuning: "zero-shot" against the identity = top-1 of the logits
                           "other_tower": np.eye(n, dtype=np.float32), "shapes": shp})
    t_export = time.perf_counter() - t
    t = time.perf_counter()
    what = f"{sub}/{result.path.name}"
    try:
        parity = _classifier_gate(b, result, prec, cls, what)
    except ParityError as e:
        if not (accept_degraded and prec in QUANTIZED):
            raise
        log(f"        warning: {e}; written anyway (--accept-degraded), never the default")
        parity = {"checked": "numeric" if b.can_run_here else "reference-interpreter", **e.figures,
                  "passed": False, "failures": e.failures, "accepted_degraded": True}
    size = _size(result.path.parent, result.files)
    if "max_abs" in parity:
        v = parity.get("validation")
        log(f"        {t_export:.1f}s export, {time.perf_counter() - t:.1f}s gate: logits max abs "
            f"{parity['max_abs']:.2e} ({parity['max_abs_cosine_units']:.1e} x logit_scale), top-1 "
            f"{parity['top1_agreement']:.0%} of {parity['n']} probe images"
            + (f", {v['top1_agreement']:.1%} of {v['n']} validation images" if v else "")
            + (f" (Core ML reference interpreter)" if parity["checked"] == "reference-interpreter" else ""))
    else:
        log(f"        {t_export:.1f}s export: structural check passed (cannot run here)")
    return {"target": target, "precision": prec, "encoder": name, "path": f"{sub}/{result.path.name}",
            "files": [f"{sub}/{f}" for f in result.files], "inputs": result.inputs, "outputs": result.outputs,
            "shapes": shp, "parity": parity, "size_bytes": size, "export_seconds": round(t_export, 2),
            "info": result.info, "classes": n}


def _classifier_defaults(manifest: dict, root: Path, cls: dict, log, runs: int = 20) -> None:
    """Per target: the default classifier (the precision of the default image encoder), and the comparison
    an app weighs: the classifier artifact against the image encoder + the class matrix as data (size;
    median latency here, the two timed alternately in this process; top-1 agreement and logits max abs
    between them on the gate's images)."""
    from . import classifier as C
    arts = manifest["artifacts"]
    matrix_bytes = (root / C.CLASS_EMBEDDINGS).stat().st_size
    rows = []
    for target in dict.fromkeys(a["target"] for a in arts if a["encoder"] == "classifier"):
        mine = [a for a in arts if a["target"] == target and a["encoder"] == "classifier"]
        image = next((a for a in arts if a["target"] == target and a["encoder"] == "image" and a.get("default")),
                     None)
        for a in mine:
            a["default"] = image is not None and a["precision"] == image["precision"]
        if not any(a["default"] for a in mine):
            mine[0]["default"] = True
        a = next(x for x in mine if x["default"])
        b = backend(target)
        row = {"target": target, "precision": a["precision"], "classifier": a["path"],
               "classifier_bytes": a["size_bytes"], "image_encoder": image and image["path"],
               "image_encoder_plus_matrix_bytes": image and image["size_bytes"] + matrix_bytes,
               "class_matrix_bytes": matrix_bytes}
        if image is not None and b.can_run_here:
            x = cls["images"]
            got_c = np.asarray(b.run(root / a["path"], x), np.float64)
            emb = np.asarray(b.run(root / image["path"], x), np.float64)
            via = cls["scale"] * emb @ cls["classes"].astype(np.float64).T
            fig = C.measure_logits(via, got_c, cls["scale"])
            call_c = b.open(root / a["path"])
            call_i = b.open(root / image["path"])
            ct = cls["classes"].T.copy()

            def two_step(xx, call_i=call_i):
                e = call_i(xx)
                e = e.detach().numpy() if isinstance(e, torch.Tensor) else np.asarray(e)
                return (e.reshape(1, -1) @ ct) * np.float32(cls["scale"])
            ms = time_alternately([call_c, two_step], x[:1], runs)
            row.update(classifier_median_ms=ms[0], image_encoder_plus_matrix_median_ms=ms[1],
                       top1_agreement=fig["top1_agreement"], top1_exact=fig["top1_exact"],
                       logits_max_abs=fig["max_abs"], images=fig["n"],
                       timing=f"at export on this host, one process, the two timed alternately, {runs} runs "
                              f"after 3 warm-up calls, batch 1")
            log(f"[{target}] classifier {a['precision']}: {a['size_bytes'] / 2 ** 20:.1f} MB, "
                f"{ms[0]:.1f} ms vs image encoder + matrix {row['image_encoder_plus_matrix_bytes'] / 2 ** 20:.1f} "
                f"MB, {ms[1]:.1f} ms; top-1 agreement {fig['top1_agreement']:.0%} of {fig['n']} images")
        rows.append(row)
    manifest["classifier"]["comparison"] = rows
