"""LiteRT backend: ``litert_torch.convert`` -> ``.tflite``, run with ``ai_edge_litert``'s Interpreter
(XNNPACK, the delegate LiteRT applies by default on CPU) for the parity gate.

Each artifact has one signature, ``serving_default``, at a static batch of 1:

* image: float32 ``image`` [1, 3, R, R] (NCHW, RGB in [0, 1], mean/std inside) -> float32 ``embedding`` [1, D]
* text: int32 ``text`` [1, 77] token ids -> float32 ``embedding`` [1, D] (EOT pooling: argmax over the
  int32 ids, a LiteRT ARG_MAX + GATHER_ND)

Precisions (all from the same fp32 flatbuffer):

* ``fp32``: the converter's output.
* ``fp16``: weights stored in float16 (``ai-edge-quantizer``'s float-casting recipe on FULLY_CONNECTED,
  CONV_2D, DEPTHWISE_CONV_2D and EMBEDDING_LOOKUP), dequantized by explicit DEQUANTIZE ops: XNNPACK folds
  them into fp32 weights when it builds its subgraph, so the arithmetic stays fp32 (half the file).
* ``int8``: candidates built with ``ai-edge-quantizer`` (:data:`INT8_CANDIDATES`): ``dynamic``
  (int8 per-channel weights, activations quantized at run time; depthwise convs stay float, as XNNPACK
  has no dynamic-range depthwise kernel and would leave them outside the delegate), ``static`` (int8 weights and activations,
  ranges calibrated on ``options["calibration"]``) and ``weight-only`` (int8 weights, float compute: a
  smaller file, never a faster one). Each is held to the int8 bars on the calibration rows (zero-shot
  agreement against ``options["other_tower"]``) and timed at batch 1 against fp32, alternately, in this
  process; "passing" here is the int8 bars and a cosine of at least :data:`SELECT_COSINE` on every
  calibration row (a margin: the export gate then holds the artifact to the bars on the validation set,
  which the choice never saw). The fastest passing one is written (none faster than fp32: the most
  accurate passing one). If none passes, the fastest is rebuilt with its first ``k`` weight ops (graph order) kept in float,
  ``k`` the smallest that passes, found by bisection on the measured parity (the error a quantized op
  adds is amplified by every layer after it), and named ``<candidate>+float-k`` (the next fastest
  candidate where even all weight ops in float do not pass; never ``static``, whose activations stay
  int8 whatever the weights); if none recovers, the most accurate candidate is written and the export gate rejects it. Recorded in ``info["int8"]``.

Rewrites before conversion (``options["rewrite"]``, default on; :func:`prepare`), each the same function
up to fp32 rounding and checked by the gate like everything else:

* ``banded-depthwise``: a 7×7 depthwise conv as row bands of at most 25 taps (the rewrite the XNNPACK
  ``.pte`` uses, :mod:`.xnnpack_modules`): LiteRT's XNNPACK delegate runs 7×7 depthwise convs ~2× slower
  than three banded ones (MobileCLIP-S0 image, idle, 3 processes each: 136.3 -> 62.8 ms at 1 thread, 63.5 -> 35.6 ms at 2;
  benchmarks/litert_rewrites.py);
* ``l2-normalize``: ``F.normalize`` as ``x / sqrt(max(sum(x*x), eps²))``: the converter lowers the norm to
  POW, which XNNPACK does not take (a second delegate partition and a CPU op on each side of it).

Delegation figures (``info["delegation"]``, the ``.pte``'s keys) come from
:func:`clipdeploy.latency.litert_run.delegation_figures` on the saved file, which is also what runs it for
the gate and for ``clip-latency`` (one interpreter set-up for both).
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from clipdeploy.latency.litert_run import SIGNATURE, delegation_figures, interpreter, io_spec, quiet_fds, runner

from .base import Backend, BackendUnavailable, ExportResult, time_alternately

IMAGE_INPUT, TEXT_INPUT, OUTPUT = "image", "text", "embedding"
INT8_CANDIDATES = ("dynamic", "static", "weight-only")
#: the cosine an int8 candidate must reach on the calibration rows to be chosen: half-way between the int8
#: bar (0.999) and 1. At the bar itself a candidate that passed there missed on the validation set
#: (S0 image, weight-only: 0.99901 on the calibration rows, 0.99674 on the validation images)
SELECT_COSINE = 0.9995
#: op types the float-casting recipe stores in fp16
_FP16_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "EMBEDDING_LOOKUP")
#: ops whose weights the int8 recipes quantize (what the recovery keeps in float, first ones first)
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "EMBEDDING_LOOKUP", "BATCH_MATMUL",
               "TRANSPOSE_CONV")


# --------------------------------------------------------------------------------------------------
# rewrites

class _L2Normalize:
    """``F.normalize(x, dim=-1)`` in ops XNNPACK takes (no POW)."""

    @staticmethod
    def apply(x, eps: float = 1e-12):
        import torch
        return x / torch.sqrt(torch.clamp_min((x * x).sum(-1, keepdim=True), eps * eps))


def _signature_module(wrapper, encoder: str, l2: bool):
    """``wrapper`` with a forward whose argument is named after the input (``image`` / ``text``: the
    signature's input name) and which returns ``{"embedding": ...}`` (its output name)."""
    import torch.nn.functional as F
    from torch import nn

    classifier = encoder == "classifier"       # clipdeploy.export.classifier.Classifier: image -> logits
    image_wrapper = wrapper.image if classifier else wrapper
    inner = image_wrapper.visual if encoder in ("image", "classifier") else wrapper.text
    norm = _L2Normalize.apply if l2 else (lambda x: F.normalize(x, dim=-1))

    class ImageSig(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = wrapper

        def forward(self, image):
            w = self.w.image if classifier else self.w
            if w.mean is not None:
                image = (image - w.mean) * w.inv_std
            if classifier:
                return {"logits": self.w.head(norm(inner(image)))}
            return {OUTPUT: norm(inner(image))}

    class TextSig(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = wrapper

        def forward(self, text):
            return {OUTPUT: norm(inner(text))}

    return (TextSig if encoder == "text" else ImageSig)().eval()


def prepare(wrapper, encoder: str, rewrite: bool = True) -> tuple:
    """(module to convert, record of the rewrites applied). ``wrapper`` itself is never modified."""
    from .xnnpack_modules import split_large_depthwise

    applied = {}
    w = wrapper
    if rewrite and encoder in ("image", "classifier"):
        w, n = split_large_depthwise(wrapper)
        applied["banded-depthwise"] = n
    elif rewrite:
        w = copy.deepcopy(wrapper)
    if rewrite:
        applied["l2-normalize"] = 1
    return _signature_module(w, encoder, l2=rewrite), applied


# --------------------------------------------------------------------------------------------------
# conversion, quantization

def _example(example, encoder: str):
    import torch
    example = example[:1].detach().cpu()
    return example.to(torch.float32 if encoder == "image" else torch.int32).contiguous()


def convert(module, encoder: str, example) -> bytes:
    """The fp32 ``.tflite`` flatbuffer of ``module`` (see :func:`prepare`) traced at ``example``."""
    import litert_torch
    import torch

    name = IMAGE_INPUT if encoder == "image" else TEXT_INPUT
    with quiet_fds(), torch.no_grad():
        try:
            litert_torch.config.show_progress = False
        except Exception:  # noqa: BLE001 - older releases have no such switch; the fds are quiet anyway
            pass
        edge = litert_torch.convert(module, sample_kwargs={name: _example(example, encoder)})
        with tempfile.TemporaryDirectory(prefix="clipdeploy-litert-") as d:
            p = Path(d) / "model.tflite"
            edge.export(str(p))
            return p.read_bytes()


def _recipe(kind: str):
    from ai_edge_quantizer import recipe

    if kind == "fp16":
        return [{"regex": ".*", "operation": op, "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True,
                               "skip_checks": False}} for op in _FP16_OPS]
    return {"dynamic": recipe.dynamic_wi8_afp32, "static": recipe.static_wi8_ai8,
            "weight-only": recipe.weight_only_wi8_afp32}[kind]()


def quantize(float_model: bytes, kind: str, encoder: str, calibration: Optional[np.ndarray] = None,
             keep_float: tuple = ()) -> bytes:
    """``float_model`` through ``ai-edge-quantizer`` with the recipe ``kind`` ("fp16" or one of
    :data:`INT8_CANDIDATES`); ``static`` calibrates on ``calibration`` rows, one at a time. The ops whose
    output tensors are named in ``keep_float`` stay in float (its scope: the output names, then ";") (a ``no_quantize`` scope, the recipe's last
    and so winning entry)."""
    import re

    from ai_edge_quantizer import quantizer

    name = IMAGE_INPUT if encoder == "image" else TEXT_INPUT
    rec = list(_recipe(kind))
    if kind == "dynamic":
        # XNNPACK has no dynamic-range depthwise kernel: a quantized DEPTHWISE_CONV_2D would leave the
        # delegate (splitting it) to run on LiteRT's reference kernels; their weights are tiny anyway
        rec.append({"regex": ".*", "operation": "DEPTHWISE_CONV_2D", "algorithm_key": "no_quantize",
                    "op_config": {}})
    if keep_float:
        rec.append({"regex": "^(?:" + "|".join(re.escape(n) for n in keep_float) + ");$", "operation": "*",
                    "algorithm_key": "no_quantize", "op_config": {}})
    with quiet_fds():
        qt = quantizer.Quantizer(bytearray(float_model))
        qt.load_quantization_recipe(rec)
        result = None
        if qt.need_calibration:
            if calibration is None or len(calibration) == 0:
                raise ValueError("static int8 LiteRT needs calibration rows in options['calibration']")
            rows = [{name: np.ascontiguousarray(r[None])} for r in np.asarray(calibration)]
            result = qt.calibrate({SIGNATURE: rows}, num_threads=1)
        q = qt.quantize(result, enable_progress_bar=False, enable_progress_report=False)
        return bytes(q.quantized_model)


def weight_ops(model: bytes) -> list:
    """Output tensor names of the ops that carry weights a recipe quantizes, in graph order."""
    interp = interpreter(model)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return [names[o["outputs"][0]] for o in interp._get_ops_details()
            if o["op_name"] in _WEIGHT_OPS and o["outputs"]]


def _threads() -> Optional[int]:
    v = os.environ.get("CLIPDEPLOY_LITERT_THREADS")
    return int(v) if v else None


# --------------------------------------------------------------------------------------------------

class LiteRTBackend(Backend):
    name = "litert"
    extension = ".tflite"
    precisions = ("fp32", "fp16", "int8")
    can_run_here = True

    def check_available(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BackendUnavailable(f"litert backend writes {', '.join(self.precisions)}, not '{precision}'")
        try:
            with quiet_fds():
                import ai_edge_litert.interpreter  # noqa: F401
                import litert_torch  # noqa: F401
                if precision != "fp32":
                    import ai_edge_quantizer  # noqa: F401
        except ImportError as e:
            raise BackendUnavailable(f"litert backend needs litert-torch, ai-edge-litert and ai-edge-quantizer: "
                                     f"{e} (pip install -e . installs them)") from e

    def export(self, wrapper, example, encoder: str, precision: str, out_path: Path, spec,
               options: Optional[dict] = None) -> ExportResult:
        import torch
        with quiet_fds():              # their imports log (oneDNN, absl, pytree deprecations)
            import ai_edge_litert
            import litert_torch

        from clipdeploy.latency.parity import failures, measure

        self.check_available(precision)
        if encoder not in ("image", "text", "classifier"):
            raise ValueError(f"encoder must be 'image', 'text' or 'classifier', not {encoder!r}")
        options = dict(options or {})
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        module, rewrites = prepare(wrapper, encoder, bool(options.get("rewrite", True)))
        # past the signature module a classifier is an image model whose one output is "logits"
        out_name = "logits" if encoder == "classifier" else OUTPUT
        encoder = "image" if encoder == "classifier" else encoder
        fp32 = convert(module, encoder, example)
        t_convert = time.perf_counter() - t0
        extra = {}
        if precision == "fp32":
            data = fp32
        elif precision == "fp16":
            data = quantize(fp32, "fp16", encoder)
            extra["fp16"] = {"recipe": "ai_edge_quantizer float_casting (weights fp16, explicit DEQUANTIZE)",
                             "ops": list(_FP16_OPS)}
        else:
            calibration = options.get("calibration")
            if calibration is None or len(calibration) == 0:
                raise ValueError("int8 LiteRT export needs calibration rows in options['calibration'] "
                                 "(the pipeline passes the probe and calibration sets)")
            rows = np.ascontiguousarray(np.asarray(calibration))
            with torch.no_grad():
                ref = wrapper(torch.from_numpy(rows)).numpy()
            other = options.get("other_tower")
            cands = tuple(options.get("int8_candidates", INT8_CANDIDATES))
            built, records = {}, []
            for kind in cands:
                t = time.perf_counter()
                try:
                    built[kind] = quantize(fp32, kind, encoder, rows)
                except Exception as e:  # noqa: BLE001 - a recipe the quantizer rejects is a recorded miss
                    records.append({"candidate": kind, "built": False, "error": f"{type(e).__name__}: {e}"[:300]})
                    continue
                figs = measure(ref, runner(interpreter(built[kind]))(rows), ref if other is None else other)
                missed = failures(figs, "int8")
                records.append({"candidate": kind, "built": True, "seconds": round(time.perf_counter() - t, 2),
                                "size_bytes": len(built[kind]), "cosine_min": figs["cosine_min"],
                                "max_abs": figs["max_abs"], "zero_shot_agreement": figs["zero_shot_agreement"],
                                "passed": not missed, "failures": missed})
            if not built:
                raise RuntimeError(f"no int8 LiteRT candidate could be built: {records}")
            kinds = list(built)
            calls = [runner(interpreter(fp32, _threads()))] + [runner(interpreter(built[k], _threads())) for k in kinds]
            ms = time_alternately(calls, rows[:1], int(options.get("timing_runs", 15)))
            del calls
            rec_by = {r["candidate"]: r for r in records}
            for k, m in zip(kinds, ms[1:]):
                rec_by[k].update(median_ms=m, speedup=ms[0] / m)
            def selectable(figs_or_rec, missed):
                return not missed and figs_or_rec["cosine_min"] >= SELECT_COSINE

            for k in kinds:
                rec_by[k]["selectable"] = selectable(rec_by[k], rec_by[k]["failures"])
            passing = [k for k in kinds if rec_by[k]["selectable"]]
            recovery = None
            if not passing:
                # the error a quantized op adds is amplified by every layer after it: keep the first k
                # weight ops in float, k the smallest that passes (bisection on the measured parity);
                # the candidates fastest first, until one recovers
                names = weight_ops(fp32)
                recovery = {"weight_ops": len(names), "attempts": []}
                # (not "static": its activations stay int8 whatever the weights, so keeping weight ops in
                # float cannot recover it; S0 image: cosine 0.56 with 145 of 146 kept)
                for base in sorted((k for k in kinds if k != "static"), key=lambda k: rec_by[k]["median_ms"]):
                    lo, hi, tried, best = 0, len(names), [], None
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        cand = quantize(fp32, base, encoder, rows, keep_float=tuple(names[:mid]))
                        figs = measure(ref, runner(interpreter(cand))(rows), ref if other is None else other)
                        ok = selectable(figs, failures(figs, "int8"))
                        tried.append({"keep_float": mid, "cosine_min": figs["cosine_min"], "passed": ok})
                        if ok:
                            hi, best = mid, (cand, figs)
                        else:
                            lo = mid
                    recovery["attempts"].append({"from": base, "kept_float": hi if best else None,
                                                 "bisection": tried})
                    if best is None:
                        continue
                    kind = f"{base}+float-{hi}"
                    cand, figs = best
                    call = [runner(interpreter(fp32, _threads())), runner(interpreter(cand, _threads()))]
                    m2 = time_alternately(call, rows[:1], int(options.get("timing_runs", 15)))
                    del call
                    built[kind] = cand
                    rec_by[kind] = {"candidate": kind, "built": True, "size_bytes": len(cand),
                                    "cosine_min": figs["cosine_min"], "max_abs": figs["max_abs"],
                                    "zero_shot_agreement": figs["zero_shot_agreement"], "passed": True,
                                    "selectable": True, "failures": [], "median_ms": m2[1],
                                    "speedup": m2[0] / m2[1]}
                    records.append(rec_by[kind])
                    kinds.append(kind)
                    passing = [kind]
                    break
            faster = [k for k in passing if rec_by[k]["speedup"] > 1.0]
            if faster:
                chosen = min(faster, key=lambda k: rec_by[k]["median_ms"])
                why = f"fastest passing candidate (x{rec_by[chosen]['speedup']:.2f} against fp32 here)"
            elif passing:
                chosen = max(passing, key=lambda k: rec_by[k]["cosine_min"])
                why = "no passing candidate is faster than fp32 here: the most accurate passing one"
            else:
                chosen = max(kinds, key=lambda k: rec_by[k]["cosine_min"])
                why = "no candidate reached the selection bar, even with weight ops in float: the most accurate one (the export gate decides)"
            data = built[chosen]
            extra["int8"] = {"chosen": chosen, "why": why, "candidates": records, "fp32_median_ms": ms[0],
                             "fp32_size_bytes": len(fp32), "calibration_rows": int(len(rows)),
                             "timing": {"batch": 1, "runs": int(options.get("timing_runs", 15)),
                                        "threads": _threads() or "LiteRT default"},
                             "quantizer": "ai-edge-quantizer", "selection_cosine": SELECT_COSINE,
                             "recovery": recovery}
        tmp = out_path.with_name(out_path.name + ".partial")
        tmp.write_bytes(data)
        interp = interpreter(tmp)
        ins, outs = io_spec(interp)
        want_in = IMAGE_INPUT if encoder == "image" else TEXT_INPUT
        if [i["name"] for i in ins] != [want_in] or [o["name"] for o in outs] != [out_name]:
            tmp.unlink()
            raise RuntimeError(f"the converted {encoder} encoder has inputs {ins} / outputs {outs}; expected "
                               f"one {want_in!r} and one {out_name!r}")
        delegation = delegation_figures(interp)
        del interp
        os.replace(tmp, out_path)
        from .executorch_backend import NotDelegated
        if not delegation["partitions"]:
            out_path.unlink()
            raise NotDelegated(f"the LiteRT {encoder} encoder has no op inside XNNPACK "
                               f"(outside: {delegation['ops_outside']}); nothing was written")
        info = {"converter": "litert_torch.convert", "litert_torch": litert_torch.__version__,
                "ai_edge_litert": getattr(ai_edge_litert, "__version__", None), "torch": torch.__version__,
                "precision": precision, "signature": SIGNATURE, "rewrites": rewrites, "delegation": delegation,
                "file_size": out_path.stat().st_size, **extra,
                "convert_seconds": round(t_convert, 2), "total_seconds": round(time.perf_counter() - t0, 2)}
        return ExportResult(path=out_path, files=[out_path.name], inputs=ins, outputs=outs, info=info)

    def open(self, path: Path):
        return runner(interpreter(path, _threads()))

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        return runner(interpreter(path, _threads()))(inputs)
