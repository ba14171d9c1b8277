"""ONNX backend: ``torch.onnx.export(..., dynamo=True)`` -> ``.onnx`` (+ ``.onnx.data`` when large), run
with ONNX Runtime (CPUExecutionProvider) for the parity gate.

The artifact computes exactly the wrapper's function (:mod:`clipdeploy.export.wrappers`):

* image: float32 ``image`` [batch, 3, R, R] -> float32 ``embedding`` [batch, D]
* text: int32 ``text`` [batch, 77] -> float32 ``embedding`` [batch, D]; for a causal text tower
  (``options["shapes"]["length"]`` dynamic, see :mod:`clipdeploy.export.shapes`) [batch, length] with
  1 <= length <= 77

with a dynamic batch axis named ``batch`` (and ``length``). fp16 artifacts keep float32/int32 inputs and a float32
output (``keep_io_types``) and compute everything in between in fp16, except the converter's default
block list (Range, Resize, ...) and, in text towers, LayerNormalization (``DEFAULT_FP16_KEEP_FP32_OPS``;
``options["fp16_keep_fp32_ops"]`` overrides it, ``()`` for all-fp16). Every fp16 artifact is loaded once
in a default ONNX Runtime session in a child process before it is accepted (see ``_ort_loads``).

Note for the parity gate: ONNX Runtime's CPU provider has no fp16 kernel for most ops on x86 and runs
them in float32 behind inserted Casts, so fp16 figures measured here are optimistic for providers that
really compute in fp16 (GPU, NPU, ARM CPU).

int8 artifacts (same interface as fp32) are built from the fp32 graph with ONNX Runtime's quantization
tools by :mod:`.onnx_quant`: candidates ``dynamic-matmul`` (MatMul weights int8, activations quantized at
run time), ``static-conv`` (QDQ Conv, per-channel weights, activation ranges calibrated on
``options["calibration"]``) and both together, the text towers' token-embedding table stored in int8 in
each; each is measured on the calibration rows against the PyTorch reference (int8 bars; zero-shot
agreement against ``options["other_tower"]`` when given, else top-1 self-retrieval) and timed at batch 1
against fp32. The fastest passing one is written (if none beats fp32: the most accurate passing one; if
none passes, the fastest is rebuilt with its first quantized nodes kept in float, bisected until it
passes). Everything is recorded in ``info["int8"]``.

fp32 artifacts get an offline-optimization evaluation (``info["ort_offline_optimization"]``,
``options["ort_offline"]``: "auto", "never" (evaluate, never keep) or "off" (the default: no evaluation;
``clip-export --ort-offline``)): the graph saved
after ONNX Runtime's EXTENDED optimizations (portable; the default ALL level adds x86-only NCHWc layouts)
replaces the exporter's only where, loaded with ORT_DISABLE_ALL, it is at least 5 % faster to create a
session for and at most 3 % slower to run at batch 1 on this host, at the fp32 bars. On the x86 build
host it usually is not (the NCHWc layouts of the default level win at run time); the record says why
and gives the figures against the EXTENDED original too (about what a phone's default level does).

Graph passes applied after the exporter (each is a no-op when not needed):

* the graph output is renamed to ``embedding`` only after any internal value of that name (the
  exporter names the token-embedding lookup ``embedding``) has been renamed out of the way;
* an int64 ``Cast`` feeding an ``ArgMax`` over the int32 token ids is bypassed (ONNX Runtime has no
  int64 ArgMax kernel on some providers; the argmax of int32 ids is the same index);
* dim 0 of the input and the output is named ``batch`` (dim 1 of a variable-length text input ``length``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from .base import Backend, BackendUnavailable, ExportResult

IMAGE_INPUT, TEXT_INPUT, OUTPUT = "image", "text", "embedding"
BATCH = "batch"
LENGTH = "length"
DEFAULT_OPSET = 18
# The protobuf limit is 2 GiB for the whole serialized model; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = int(1.8 * 2 ** 30)
# op types an fp16 artifact keeps in float32, per encoder (options["fp16_keep_fp32_ops"] overrides)
DEFAULT_FP16_KEEP_FP32_OPS = {"image": (), "text": ("LayerNormalization",)}


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's prints, warnings and chatty loggers (restored afterwards)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir",
             "torch._export", "torch.utils._sympy")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _rename_value(graph, value, new_name: str) -> None:
    """Rename ``value`` to ``new_name``, first moving any other value of that name out of the way."""
    if value.name == new_name:
        return
    taken = {v.name for v in _all_values(graph)}
    for other in _all_values(graph):
        if other is not value and other.name == new_name:
            i, alt = 0, f"{new_name}_internal"
            while alt in taken:
                i += 1
                alt = f"{new_name}_internal_{i}"
            other.name = alt
            taken.add(alt)
    value.name = new_name


def _all_values(graph):
    seen = set()
    for v in list(graph.inputs) + list(graph.initializers.values()):
        if id(v) not in seen:
            seen.add(id(v))
            yield v
    for node in graph:
        for v in node.outputs:
            if id(v) not in seen:
                seen.add(id(v))
                yield v


def _bypass_int64_argmax_casts(graph) -> int:
    """ArgMax(Cast(ids_int32, to=INT64)) -> ArgMax(ids_int32). Returns how many were rewired."""
    import onnx_ir as ir

    fixed = 0
    for node in list(graph):
        if node.op_type != "ArgMax" or node.domain not in ("", "ai.onnx"):
            continue
        src = node.inputs[0]
        prod = src.producer() if src is not None else None
        if prod is None or prod.op_type != "Cast":
            continue
        to = prod.attributes.get("to")
        inner = prod.inputs[0]
        if (to is not None and to.value == ir.DataType.INT64 and inner is not None and inner.dtype in
                (ir.DataType.INT32, ir.DataType.INT16, ir.DataType.INT8, ir.DataType.UINT8)):
            node.replace_input_with(0, inner)
            fixed += 1
    return fixed


def _name_batch_dim(value) -> None:
    _name_dim(value, 0, BATCH)


def _name_dim(value, i: int, name: str) -> None:
    import onnx_ir as ir

    if value.shape is not None and len(value.shape) > i:
        dims = list(value.shape)
        dims[i] = ir.SymbolicDim(name)
        value.shape = ir.Shape(dims)


def _proto_stats(model_proto) -> dict:
    ops = Counter(n.op_type for n in model_proto.graph.node)
    opset = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "node_count": int(sum(ops.values())),
            "op_types": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))}


def _io_spec(values) -> list:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param if d.HasField("dim_param") else (int(d.dim_value) if d.HasField("dim_value")
                                                              else None) for d in t.shape.dim]
        out.append({"name": v.name, "shape": shape,
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
    return out


def _to_fp16(model_proto, large: bool, keep_fp32_nodes=(), keep_fp32_ops=()):
    """fp32 -> fp16 inside, float32/int32 at the boundary. Returns (model, converter name).

    ``keep_fp32_nodes`` / ``keep_fp32_ops`` stay in float32 (added to the converter's default block
    list, which keeps e.g. Range/Resize in float32)."""
    try:
        from onnxruntime.transformers import float16 as f16
        converter = "onnxruntime.transformers.float16"
    except Exception as e:  # pragma: no cover - depends on the installed onnxruntime
        try:
            from onnxconverter_common import float16 as f16
            converter = "onnxconverter_common.float16"
        except Exception:
            raise BackendUnavailable(f"fp16 ONNX needs onnxruntime.transformers.float16 "
                                     f"(or onnxconverter-common): {e}") from e
    op_block = sorted(set(f16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    # shape inference serializes the model: impossible above 2 GiB; the exporter's value_info suffices.
    model = f16.convert_float_to_float16(model_proto, keep_io_types=True, disable_shape_infer=large,
                                         op_block_list=op_block, node_block_list=list(keep_fp32_nodes))
    return model, converter


_LOAD_CHECK = (
    "import sys, onnxruntime as ort\n"
    "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
)


def _ort_loads(path: Path, timeout: float = 900) -> tuple:
    """Create a default ONNX Runtime CPU session in a child process (an optimizer crash there must not
    take the exporter down). Returns (ok, why)."""
    import subprocess
    import sys

    try:
        r = subprocess.run([sys.executable, "-c", _LOAD_CHECK, str(path)], capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"ONNX Runtime session creation took more than {timeout:.0f}s"
    if r.returncode == 0:
        return True, ""
    tail = (r.stderr or "").strip().splitlines()[-1:] or [""]
    why = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
    return False, f"ONNX Runtime session creation failed ({why}) {tail[0][:300]}".strip()


def _reference_rows(wrapper, calibration, example) -> tuple:
    """(input rows as numpy, the wrapper's float32 embeddings of them): the calibration rows when given,
    else the export example."""
    import torch

    rows = np.ascontiguousarray(np.asarray(calibration if calibration is not None else example.numpy()))
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(rows)).numpy()
    return rows, ref


#: ONNX Runtime levels of the offline-optimization evaluation (names as recorded in the manifest)
_OFFLINE_VARIANTS = (
    # (key, file, level): "original" is what an app gets today (default level, ORT_ENABLE_ALL)
    ("original", "original", "all"),
    ("optimized", "optimized", "disable_all"),       # the saved graph, not re-optimized at load
    ("optimized_default_level", "optimized", "all"),
    # ORT_ENABLE_ALL adds x86-only NCHWc layouts; on ARM phones the default level does about what
    # EXTENDED does, so this is the closest figure to a phone's original session here
    ("original_extended", "original", "extended"),
)


def _offline_optimization(path: Path, input_name: str, reference: tuple, mode: str = "auto",
                          external: bool = False, runs: int = 10, loads: int = 3,
                          other_tower: Optional[np.ndarray] = None) -> dict:
    """Save ``path`` after ONNX Runtime's EXTENDED (portable) offline optimizations, compare session
    creation and batch-1 run time with the original file, and replace the artifact with the optimized
    graph only where ``mode == "auto"``, it loads at least 5 % faster (loaded with ORT_DISABLE_ALL, as
    an app that skips re-optimization would) and runs at most 3 % slower, at the fp32 bars, with the
    same interface. ``mode == "never"`` evaluates without keeping. Returns the record (``kept`` says
    whether it replaced the artifact)."""
    import onnx
    import onnxruntime as ort

    from clipdeploy.latency.parity import failures, measure

    from .base import time_alternately
    from .onnx_quant import session

    rec = {"level": "extended", "mode": mode, "kept": False, "onnxruntime": ort.__version__}
    if external:
        return {**rec, "evaluated": False,
                "why": "not evaluated: the model keeps its weights in external data"}
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    rows, ref = reference
    with tempfile.TemporaryDirectory(prefix="clipdeploy-ortopt-") as tmpd:
        opt = Path(tmpd) / path.name
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = levels["extended"]
        so.optimized_model_filepath = str(opt)
        t = time.perf_counter()
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        rec["write_seconds"] = round(time.perf_counter() - t, 2)
        files = {"original": path, "optimized": opt}
        a, b = (onnx.load(str(p), load_external_data=False) for p in (path, opt))
        same_io = (_io_spec(a.graph.input), _io_spec(a.graph.output)) == \
            (_io_spec(b.graph.input), _io_spec(b.graph.output))
        ops_a, ops_b = Counter(n.op_type for n in a.graph.node), Counter(n.op_type for n in b.graph.node)
        rec["node_count"] = {"original": len(a.graph.node), "optimized": len(b.graph.node)}
        rec["contrib_ops"] = dict(sorted(Counter(f"{n.domain}.{n.op_type}" for n in b.graph.node
                                                 if n.domain not in ("", "ai.onnx")).items()))
        rec["removed_ops"] = dict(sorted((ops_a - ops_b).items()))
        rec["file_size"] = {"original": path.stat().st_size, "optimized": opt.stat().st_size}
        del a, b
        # what the default level (ORT_ENABLE_ALL) adds on this host: x86 NCHWc layout nodes (counted in
        # a graph written only for this, never shipped)
        so.graph_optimization_level = levels["all"]
        so.optimized_model_filepath = str(Path(tmpd) / "all_level.onnx")
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        nchwc = sum(n.domain == "com.microsoft.nchwc" for n in onnx.load(
            so.optimized_model_filepath, load_external_data=False).graph.node)
        rec["default_level_nchwc_nodes"] = int(nchwc)
        # session creation: the variants alternately, median of `loads`
        load_ms = {k: [] for k, _, _ in _OFFLINE_VARIANTS}
        for _ in range(loads):
            for key, f, lv in _OFFLINE_VARIANTS:
                t = time.perf_counter()
                session(files[f], levels[lv])
                load_ms[key].append((time.perf_counter() - t) * 1e3)
        rec["load_ms"] = {k: float(np.median(v)) for k, v in load_ms.items()}
        sessions = [session(files[f], levels[lv]) for _, f, lv in _OFFLINE_VARIANTS]
        ms = time_alternately([lambda v, s=s: s.run(None, {input_name: v}) for s in sessions],
                              np.ascontiguousarray(rows[:1]), runs)
        rec["run_ms"] = {k: m for (k, _, _), m in zip(_OFFLINE_VARIANTS, ms)}
        rec["timing"] = {"batch": 1, "runs": runs, "warmup": 3, "loads": loads,
                         "threads": "ONNX Runtime default",
                         "levels": {k: lv for k, _, lv in _OFFLINE_VARIANTS}}
        got = sessions[1].run(None, {input_name: rows})[0]
        # zero-shot agreement against the other tower's reference when given, else self-retrieval
        figs = measure(ref, got, ref if other_tower is None else other_tower)
        missed = failures(figs, "fp32")
        rec["parity"] = {"max_abs": figs["max_abs"], "cosine_min": figs["cosine_min"],
                         "zero_shot_agreement": figs["zero_shot_agreement"], "passed": not missed,
                         "rows": int(len(rows))}
        del sessions
        load_gain = rec["load_ms"]["original"] / rec["load_ms"]["optimized"]
        run_ratio = rec["run_ms"]["optimized"] / rec["run_ms"]["original"]
        rec["load_speedup"], rec["run_time_ratio"] = load_gain, run_ratio
        # "faster to load" with a 5 % margin: session creation times here vary by several % run to run
        helps = load_gain >= 1.05 and run_ratio <= 1.03
        figures = (f"session creation {rec['load_ms']['original']:.0f} -> {rec['load_ms']['optimized']:.0f} "
                   f"ms, batch-1 run {rec['run_ms']['original']:.1f} -> {rec['run_ms']['optimized']:.1f} ms "
                   f"(optimized graph loaded with ORT_DISABLE_ALL vs the original at the default level)")
        if not same_io:
            why = "the optimized graph changed the interface"
        elif missed:
            why = f"the optimized graph misses the fp32 bars: {'; '.join(missed)}"
        elif not helps:
            ext = rec["run_ms"]["original_extended"] / rec["run_ms"]["original"]
            why = (f"not faster here: {figures}"
                   + (f"; the original at EXTENDED runs x{ext:.2f} the default-level time too: the default "
                      f"level adds {nchwc} x86-only NCHWc layout nodes on this host, which a portable "
                      f"graph must not carry" if ext > 1.03 and run_ratio > 1.03 and nchwc else ""))
        elif mode != "auto":
            why = f"helps ({figures}) but ort_offline={mode!r}"
        else:
            why = f"faster to load at (nearly) the same run time: {figures}"
            rec["kept"] = True
            shutil.copyfile(opt, path)
        rec["why"] = why
        # against the original at EXTENDED, about what the default level does on an ARM phone (no NCHWc)
        rec["vs_original_extended"] = {
            "load_speedup": rec["load_ms"]["original_extended"] / rec["load_ms"]["optimized"],
            "run_time_ratio": rec["run_ms"]["optimized"] / rec["run_ms"]["original_extended"]}
    return {**rec, "evaluated": True}


class OnnxBackend(Backend):
    name = "onnx"
    extension = ".onnx"
    precisions = ("fp32", "fp16", "int8")
    can_run_here = True

    def check_available(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BackendUnavailable(f"onnx backend writes {', '.join(self.precisions)}, not "
                                     f"'{precision}'")
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise BackendUnavailable(f"onnx backend needs onnx, onnxscript and onnxruntime: {e} "
                                     f"(pip install onnx onnxscript onnxruntime)") from e

    # ------------------------------------------------------------------ export
    def export(self, wrapper, example, encoder: str, precision: str, out_path: Path, spec,
               options: Optional[dict] = None) -> ExportResult:
        import onnx
        import onnx_ir as ir
        import onnxruntime
        import torch

        self.check_available(precision)
        if encoder not in ("image", "text", "classifier"):
            raise ValueError(f"encoder must be 'image', 'text' or 'classifier', not {encoder!r}")
        # a classifier (clipdeploy.export.classifier) takes the image input and writes "logits"
        out_name = "logits" if encoder == "classifier" else OUTPUT
        encoder = "image" if encoder == "classifier" else encoder
        options = dict(options or {})
        opset = int(options.get("opset", DEFAULT_OPSET))
        if opset < 18:
            raise ValueError(f"onnx backend needs opset >= 18, got {opset}")
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        in_name = IMAGE_INPUT if encoder == "image" else TEXT_INPUT

        example = example.detach().cpu()
        example = example.to(torch.float32) if encoder == "image" else example.to(torch.int32)
        if example.shape[0] < 2:  # batch 1 would be specialized by torch.export
            example = example.expand(2, *example.shape[1:]).contiguous()
        dims = {0: torch.export.Dim(BATCH, min=1, max=4096)}
        length = (options.get("shapes") or {}).get("length") if encoder == "text" else None
        if length and length["kind"] == "dynamic":
            # traced inside the range: an example at 77 would specialize (cutting the positional rows
            # at their full 77 is a no-op view)
            dims[1] = torch.export.Dim(LENGTH, min=int(length["min"]), max=int(length["max"]))
            example = example[:, :max(int(length["min"]), min(32, int(length["max"]) - 1))].contiguous()

        t0 = time.perf_counter()
        wrapper = wrapper.eval()
        with _quiet(), torch.no_grad():
            prog = torch.onnx.export(
                wrapper, (example,), None, dynamo=True, opset_version=opset, input_names=[in_name],
                dynamic_shapes=(dims,), optimize=True,
                verbose=False, report=False)
        t_export = time.perf_counter() - t0

        model = prog.model
        g = model.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise RuntimeError(f"exported graph has {len(g.inputs)} inputs / {len(g.outputs)} outputs; "
                               f"expected 1 / 1")
        _rename_value(g, g.inputs[0], in_name)
        _rename_value(g, g.outputs[0], out_name)
        argmax_fixed = _bypass_int64_argmax_casts(g)
        _name_batch_dim(g.inputs[0])
        _name_batch_dim(g.outputs[0])
        if 1 in dims:
            _name_dim(g.inputs[0], 1, LENGTH)
        model.producer_name = "clipdeploy"
        model.doc_string = f"clipdeploy {getattr(spec, 'name', '')} {encoder} encoder ({precision})"
        init_bytes = sum(v.const_value.nbytes for v in g.initializers.values()
                         if v.const_value is not None)
        if precision == "fp16":
            init_bytes //= 2
        ext = options.get("external_data")
        use_ext = bool(ext) if ext is not None else init_bytes > EXTERNAL_DATA_THRESHOLD
        data_name = out_path.name + ".data"
        data_path = out_path.parent / data_name
        for p in (out_path, data_path):
            if p.exists():
                p.unlink()

        if options.get("ort_offline", "off") not in ("auto", "never", "off"):
            raise ValueError(f"options['ort_offline'] must be 'auto', 'never' or 'off', not "
                             f"{options['ort_offline']!r}")
        converter, fp16_info, extra = None, {}, {}
        if precision == "fp32":
            ir.save(model, out_path, external_data=data_name if use_ext else None)
            if options.get("ort_offline", "off") == "off":
                extra["ort_offline_optimization"] = {"evaluated": False, "kept": False,
                                                     "why": "not evaluated: ort_offline='off'"}
            else:
                extra["ort_offline_optimization"] = _offline_optimization(
                    out_path, in_name, _reference_rows(wrapper, options.get("calibration"), example),
                    mode=options.get("ort_offline", "off"), external=use_ext,
                    runs=int(options.get("ort_offline_runs", 10)), other_tower=options.get("other_tower"))
        elif precision == "int8":
            calibration = options.get("calibration")
            if calibration is None or len(calibration) == 0:
                raise ValueError("int8 ONNX export needs calibration rows in options['calibration'] "
                                 "(the pipeline passes the probe images / token ids)")
            del prog
            rows, reference = _reference_rows(wrapper, calibration, example)
            from . import onnx_quant
            with tempfile.TemporaryDirectory(prefix="clipdeploy-int8-") as tmpd:
                fp32_path = Path(tmpd) / "fp32.onnx"
                ir.save(model, fp32_path, external_data="fp32.onnx.data" if use_ext else None)
                h = onnx.load(str(fp32_path), load_external_data=False)
                fp32_io = (_io_spec(h.graph.input), _io_spec(h.graph.output))
                del h
                extra["int8"] = onnx_quant.quantize(
                    fp32_path, out_path, in_name, rows, reference, Path(tmpd),
                    runs=int(options.get("timing_runs", 15)),
                    candidates=tuple(options.get("int8_candidates", onnx_quant.CANDIDATES)),
                    external_data=use_ext, log=options.get("log"),
                    other_tower=options.get("other_tower"))
                extra["int8"]["fp32_size_bytes"] = onnx_quant.file_size(fp32_path)
            q = onnx.load(str(out_path), load_external_data=False)
            q_io = (_io_spec(q.graph.input), _io_spec(q.graph.output))
            if q_io != fp32_io:
                raise RuntimeError(f"the int8 graph changed the interface: {q_io}; fp32 {fp32_io}")
            if not data_path.exists():     # name it as the exporter's graphs are named
                q = onnx.load(str(out_path))
                q.producer_name = "clipdeploy"
                q.doc_string = (f"clipdeploy {getattr(spec, 'name', '')} {encoder} encoder (int8: "
                                f"{extra['int8']['chosen']}, onnxruntime.quantization)")
                onnx.save(q, str(out_path))
            del q
        else:
            del prog
            large = init_bytes * 2 > EXTERNAL_DATA_THRESHOLD
            last_ln = [n.name for n in g if n.op_type == "LayerNormalization"][-1:]
            # Mixed precision: LayerNormalization stays float32 in text towers by default (its
            # statistics are float32 anyway, stash_type=1). An all-fp16 MobileCLIP-B text tower misses
            # the fp16 gate (max abs 3.3e-3, cos 0.99980 in ORT); with fp32 LayerNorms 1.8e-3, 0.99992.
            keep_ops = tuple(options.get("fp16_keep_fp32_ops",
                                         DEFAULT_FP16_KEEP_FP32_OPS.get(encoder, ())))
            # ONNX Runtime (1.32, x86 CPU, default ORT_ENABLE_ALL) segfaults while optimizing some fp16
            # graphs (all-fp16 MobileCLIP-B text: the final LayerNorm before EOT pooling in fp16;
            # disabling its FuseFp16InitializerToFp32NodeTransformer or NchwcTransformer avoids it).
            # The artifact must load in a default session, so each attempt is loaded in a child
            # process and the next one keeps a little more in float32.
            ladder = [((), keep_ops)]
            if last_ln and "LayerNormalization" not in keep_ops:
                ladder += [(tuple(last_ln), keep_ops), ((), keep_ops + ("LayerNormalization",))]
            check_load = bool(options.get("ort_load_check", True))
            attempts = []
            for keep_nodes, keep_ops in ladder:
                proto = ir.to_proto(model)
                with _quiet():
                    proto, converter = _to_fp16(proto, large, keep_nodes, keep_ops)
                # the converter appends its boundary Casts at the end of the node list: re-sort
                model16 = ir.from_proto(proto)
                del proto
                model16.graph.sort()
                for p in (out_path, data_path):
                    if p.exists():
                        p.unlink()
                ir.save(model16, out_path, external_data=data_name if use_ext else None)
                del model16
                ok, why = _ort_loads(out_path) if check_load else (True, "not checked")
                attempts.append({"keep_fp32_nodes": list(keep_nodes), "keep_fp32_ops": list(keep_ops),
                                 "ort_loads": ok, **({"error": why} if not ok else {})})
                if ok:
                    break
            else:
                raise RuntimeError(f"fp16 ONNX {encoder} encoder does not load in ONNX Runtime "
                                   f"{onnxruntime.__version__}: {attempts[-1].get('error')}")
            fp16_info = {"fp16_attempts": attempts, "fp16_kept_fp32": {
                "nodes": attempts[-1]["keep_fp32_nodes"], "ops": attempts[-1]["keep_fp32_ops"]}}
        onnx.checker.check_model(str(out_path))
        t_total = time.perf_counter() - t0

        header = onnx.load(str(out_path), load_external_data=False)
        files = [out_path.name] + ([data_name] if data_path.exists() else [])
        size = sum((out_path.parent / f).stat().st_size for f in files)
        stats = _proto_stats(header)
        info = {
            **stats,
            "exporter": "torch.onnx.export(dynamo=True)",
            "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "precision": precision, "fp16_converter": converter, **fp16_info, **extra,
            "file_size": int(size), "external_data": data_path.exists(),
            "int64_argmax_casts_removed": argmax_fixed,
            "export_seconds": round(t_export, 2), "total_seconds": round(t_total, 2),
        }
        return ExportResult(path=out_path, files=files, inputs=_io_spec(header.graph.input),
                            outputs=_io_spec(header.graph.output), info=info)

    # ------------------------------------------------------------------ run
    @staticmethod
    def session(path: Path, threads: Optional[int] = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def open(self, path: Path):
        sess = self.session(path, threads=os.environ.get("CLIPDEPLOY_ORT_THREADS"))
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        sess = self.session(path, threads=os.environ.get("CLIPDEPLOY_ORT_THREADS"))
        inp = sess.get_inputs()[0]
        dtype = {"tensor(float)": np.float32, "tensor(int32)": np.int32,
                 "tensor(int64)": np.int64, "tensor(float16)": np.float16}.get(inp.type)
        x = np.ascontiguousarray(np.asarray(inputs), dtype=dtype)
        out = sess.run(None, {inp.name: x})[0]
        return np.asarray(out, dtype=np.float32)
