"""int8 ONNX encoders: candidates built with ONNX Runtime's quantization tools, measured, one chosen.

Used by :class:`~clipdeploy.export.backends.onnx_backend.OnnxBackend` for ``precision="int8"``
(:func:`quantize`). From the fp32 artifact, after ``quant_pre_process`` (ONNX shape inference and ONNX
Runtime's portable basic optimizations):

* ``dynamic-matmul``: ``quantize_dynamic`` of the MatMuls with a constant weight: weights int8 per
  output channel, activations uint8 quantized at run time (DynamicQuantizeLinear + MatMulInteger,
  which ONNX Runtime fuses). Gemm has no integer kernel in ONNX Runtime's dynamic mode: it stays float;
* ``static-conv``: ``quantize_static`` of the Convs only, QDQ format, weights int8 per output channel,
  activations uint8 with MinMax ranges calibrated on the calibration rows (batch 1 each);
* ``static-conv+dynamic-matmul``: both (only for graphs with Conv and MatMul weights).

Quantizing every op dynamically is no candidate: ConvInteger makes the conv image towers ~10x slower on
x86. A graph that looks up a large embedding table (the text towers' token embedding: Gather over a
[vocab, width] initializer, most of their file) gets the table stored in int8 in every candidate,
weight-only, symmetric per block of ``GATHER_BLOCK`` values of a row (standard ops: Gather the int8
rows and their block scales, Cast, Mul); only the looked-up rows are dequantized.

Each candidate is held to the int8 bars on the calibration rows and timed at batch 1 against the fp32
model (alternately, one process, medians). If none passes, the fastest one is rebuilt with its first
``k`` quantized nodes (graph order) kept in float, ``k`` found by bisection on the measured parity:
the error a quantized node adds is amplified by every layer after it (one MatMul at a time in the
MobileCLIP-S0 text tower: 1 - cosine 2.8e-3 for the first QKV projection, 3e-6 for the last MLP).
:func:`choose` picks the fastest passing candidate when one beats fp32, else the most accurate
passing one, else (nothing passed) the most accurate one, which the export gate then rejects.

Where no candidate passes with the tables in int8, the same candidates are built with the tables left in
float (the int8 table alone costs the S0 text tower 1 - cosine 2.2e-3 on long captions) before any node is
kept in float.

Calibration and the bars here use the calibration rows the pipeline passes (the probe set followed by the
generated calibration set); the export gate then re-measures the written artifact against the PyTorch
reference on the probe and on the validation set, which the calibration never saw.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .base import time_alternately

DYNAMIC, STATIC, BOTH = "dynamic-matmul", "static-conv", "static-conv+dynamic-matmul"
CANDIDATES = (DYNAMIC, STATIC, BOTH)
#: a Gather table bigger than this (float32 bytes) is stored in int8 by every candidate
GATHER_TABLE_MIN_BYTES = 1 << 20
#: values of a table row that share one int8 scale (S0 text, 1 - cosine on the probe captions, table
#: alone: per tensor (ONNX Runtime's GatherQuant, uint8) 3.3e-3, per row 1.4e-3, blocks of 32 4.2e-4)
GATHER_BLOCK = 32
#: op types of a quantized graph (what the artifact computes in integers or dequantizes)
INT8_OP_TYPES = ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "ConvInteger",
                 "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul")


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools log warnings through the root logger and print progress."""
    import io
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


# --------------------------------------------------------------------------- graph facts
def quantizable(model) -> dict:
    """{op_type: [node names, graph order]} of the nodes reading a float initializer as weight:
    MatMul B, Conv W, Gemm B, and Gather data tables of at least ``GATHER_TABLE_MIN_BYTES``."""
    import onnx

    floats = {t.name: int(np.prod(t.dims)) * 4 for t in model.graph.initializer
              if t.data_type == onnx.TensorProto.FLOAT}
    out = {}
    for n in model.graph.node:
        idx = {"MatMul": 1, "Gemm": 1, "Conv": 1, "Gather": 0}.get(n.op_type)
        if idx is None or len(n.input) <= idx or n.input[idx] not in floats:
            continue
        if n.op_type == "Gather" and floats[n.input[0]] < GATHER_TABLE_MIN_BYTES:
            continue
        out.setdefault(n.op_type, []).append(n.name)
    return out


def quantized_op_counts(model) -> dict:
    """{source op type: how many of its nodes compute from int8 weights} in a quantized graph."""
    import onnx

    int8 = {t.name for t in model.graph.initializer
            if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    produced = {o: n for n in model.graph.node for o in n.output}
    counts = Counter()
    for n in model.graph.node:
        if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul"):
            counts["MatMul"] += 1
        elif n.op_type in ("ConvInteger", "QLinearConv"):
            counts["Conv"] += 1
        elif n.op_type in ("MatMul", "Gemm", "Conv", "Gather"):
            idx = 0 if n.op_type == "Gather" else 1
            src = n.input[idx] if len(n.input) > idx else ""
            p = produced.get(src)
            if src in int8 or (p is not None and p.op_type == "DequantizeLinear" and p.input[0] in int8):
                counts[n.op_type] += 1
    return dict(sorted(counts.items()))


def int8_op_counts(model) -> dict:
    ops = Counter(n.op_type for n in model.graph.node if n.op_type in INT8_OP_TYPES)
    return dict(sorted(ops.items()))


def file_size(path: Path) -> int:
    path = Path(path)
    data = path.parent / (path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


# --------------------------------------------------------------------------- building
class _Rows:
    """CalibrationDataReader over the calibration rows, batch 1 each."""

    def __init__(self, name: str, rows: np.ndarray):
        self.name, self.rows, self.i = name, rows, 0

    def get_next(self):
        if self.i >= len(self.rows):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.rows[self.i - 1:self.i])}

    def rewind(self):
        self.i = 0


def preprocess(fp32_path: Path, out_path: Path, external_data: bool = False) -> dict:
    """``quant_pre_process`` without symbolic shape inference: ONNX Runtime's symbolic inference fails
    on these exporter graphs (TypeError at an Expand whose target shape is computed at run time, after
    1-3 s), and ONNX shape inference gives quantization the shapes it needs."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True,
                          save_as_external_data=external_data, all_tensors_to_one_file=True,
                          external_data_location=Path(out_path).name + ".data")
    return {"tool": "onnxruntime.quantization.quant_pre_process", "symbolic_shape_inference": False,
            "onnx_shape_inference": True, "ort_optimization": "basic"}


def quantize_gather_tables(src: Path, dst: Path, nodes: list, block: int = GATHER_BLOCK,
                           external_data: bool = False) -> dict:
    """Store the data table of each Gather in ``nodes`` ([V, D] float32, axis 0) as int8, symmetric per
    block of ``block`` values of a row; the looked-up rows are dequantized with standard ops:
    ``Reshape(Cast(Gather(q, ids)), [*ids.shape, D/block, block]) * Unsqueeze(Gather(scales, ids), -1)``
    reshaped back to ``[*ids.shape, D]``. Returns what was done."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    consumers = Counter(i for n in model.graph.node for i in n.input)
    done, before, after = [], 0, 0
    new_nodes = []
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        table = inits.get(node.input[0]) if node.name in nodes else None
        if table is None or len(table.dims) != 2 or axis != 0 or consumers[table.name] != 1:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        v, d = w.shape
        b = block if d % block == 0 else d
        blocks = w.reshape(v, d // b, b)
        scale = np.abs(blocks).max(-1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(blocks / scale[..., None]), -127, 127).astype(np.int8).reshape(v, d)
        p, ids, out = f"{table.name}_q8", node.input[1], node.output[0]
        model.graph.initializer.remove(table)
        model.graph.initializer.extend([
            numpy_helper.from_array(q, p), numpy_helper.from_array(scale.astype(np.float32), p + "_scale"),
            numpy_helper.from_array(np.array([d // b, b], np.int64), p + "_blocks"),
            numpy_helper.from_array(np.array([d], np.int64), p + "_width"),
            numpy_helper.from_array(np.array([-1], np.int64), p + "_last")])
        new_nodes += [
            helper.make_node("Gather", [p, ids], [p + "_rows"], name=f"{node.name}_q8", axis=0),
            helper.make_node("Cast", [p + "_rows"], [p + "_rowsf"], name=f"{p}_cast", to=TensorProto.FLOAT),
            helper.make_node("Shape", [ids], [p + "_ids_shape"], name=f"{p}_shape"),
            helper.make_node("Concat", [p + "_ids_shape", p + "_blocks"], [p + "_bshape"],
                             name=f"{p}_bshape", axis=0),
            helper.make_node("Concat", [p + "_ids_shape", p + "_width"], [p + "_oshape"],
                             name=f"{p}_oshape", axis=0),
            helper.make_node("Reshape", [p + "_rowsf", p + "_bshape"], [p + "_rowsb"], name=f"{p}_split"),
            helper.make_node("Gather", [p + "_scale", ids], [p + "_s"], name=f"{p}_scales", axis=0),
            helper.make_node("Unsqueeze", [p + "_s", p + "_last"], [p + "_s1"], name=f"{p}_unsqueeze"),
            helper.make_node("Mul", [p + "_rowsb", p + "_s1"], [p + "_deq"], name=f"{p}_dequantize"),
            helper.make_node("Reshape", [p + "_deq", p + "_oshape"], [out], name=f"{p}_merge")]
        done.append(node.name)
        before += w.nbytes
        after += q.nbytes + scale.size * 4
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    onnx.save_model(model, str(dst), save_as_external_data=external_data, all_tensors_to_one_file=True,
                    location=Path(dst).name + ".data")
    return {"nodes": done, "block": block, "scheme": "int8 symmetric per block of a row, weight-only",
            "bytes_float32": int(before), "bytes_int8": int(after)}


class Builder:
    """Writes candidates of one preprocessed graph (``base``: the embedding tables already int8)."""

    def __init__(self, base: Path, workdir: Path, input_name: str, calibration: np.ndarray,
                 nodes: dict, external_data: bool = False):
        self.base, self.workdir, self.input_name = Path(base), Path(workdir), input_name
        self.calibration, self.nodes, self.ext = calibration, nodes, external_data
        self.cache = self.workdir / "calibration_ranges.json"
        self.count = 0

    def targets(self, kind: str) -> list:
        """The nodes ``kind`` quantizes, in graph order."""
        want = set()
        if kind in (STATIC, BOTH):
            want |= set(self.nodes.get("Conv", []))
        if kind in (DYNAMIC, BOTH):
            want |= set(self.nodes.get("MatMul", []))
        return [n for n in self.nodes["order"] if n in want]

    def applies(self, kind: str) -> bool:
        conv, mm = bool(self.nodes.get("Conv")), bool(self.nodes.get("MatMul"))
        return {DYNAMIC: mm, STATIC: conv, BOTH: conv and mm}[kind]

    def build(self, kind: str, keep_float: int = 0) -> Path:
        """Write ``kind`` with its first ``keep_float`` target nodes left in float -> path."""
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                              quantize_static)

        quantized = set(self.targets(kind)[keep_float:])
        convs = [n for n in self.nodes.get("Conv", []) if n in quantized]
        mms = [n for n in self.nodes.get("MatMul", []) if n in quantized]
        self.count += 1
        src = self.base
        out = self.workdir / f"{kind.replace('+', '_')}_{keep_float}_{self.count}.onnx"
        if not convs and not mms:          # everything kept float: the base graph (tables int8)
            import onnx

            onnx.save_model(onnx.load(str(src)), str(out), save_as_external_data=self.ext,
                            all_tensors_to_one_file=True, location=out.name + ".data")
            return out
        with _quiet():
            if convs:
                dst = out.with_suffix(".static.onnx") if mms else out
                # QDQ is what ONNX Runtime's CPU kernels are optimized for; uint8 activations, int8
                # weights per output channel, no reduce_range (VNNI/AMX x86 and ARM dot-product kernels
                # do not saturate). The ranges are calibrated once and cached for rebuilds.
                quantize_static(str(src), str(dst), _Rows(self.input_name, self.calibration),
                                quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                                nodes_to_quantize=convs, per_channel=True, reduce_range=False,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                use_external_data_format=self.ext, calibration_cache_path=self.cache)
                src = dst
            if mms:
                # dynamic activations are uint8 (the only type quantize_dynamic supports); per-channel
                # int8 weights
                quantize_dynamic(str(src), str(out), op_types_to_quantize=["MatMul"], nodes_to_quantize=mms,
                                 per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
                                 use_external_data_format=self.ext)
        return out


# --------------------------------------------------------------------------- measuring
def session(path: Path, level=None, threads: Optional[int] = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def parity(path: Path, input_name: str, calibration: np.ndarray, reference: np.ndarray,
           other_tower: Optional[np.ndarray] = None) -> dict:
    """The int8 figures of ``path`` on the calibration rows (one batch, as the export gate runs it)."""
    from clipdeploy.latency.parity import failures, measure

    got = session(path).run(None, {input_name: calibration})[0]
    # Without the other tower's reference embeddings (options["other_tower"]) the reference embeddings
    # stand in for it, so "zero_shot_agreement" is top-1 self-retrieval agreement (does each row still
    # find its own reference row first?): much weaker than the gate's zero-shot agreement, which flips
    # wherever the reference's top-1 is a near tie. The export gate measures the real one.
    figs = measure(reference, got, reference if other_tower is None else other_tower)
    missed = failures(figs, "int8")
    return {"cosine_min": figs["cosine_min"], "cosine_mean": figs["cosine_mean"],
            "max_abs": figs["max_abs"], "zero_shot_agreement": figs["zero_shot_agreement"],
            "passed": not missed, **({"failures": missed} if missed else {})}


def _row(name: str, path: Path, figs: dict, keep_float: int = 0, kept: Optional[list] = None) -> dict:
    import onnx

    header = onnx.load(str(path), load_external_data=False)
    return {"name": name, "quantized_op_types": quantized_op_counts(header),
            "int8_op_types": int8_op_counts(header), "size_bytes": file_size(path), **figs,
            "kept_float_nodes": keep_float, **({"kept_float": kept} if kept else {}), "_path": path}


def choose(rows: list, fp32_ms: float) -> dict:
    """The fastest passing candidate if one beats fp32; else the most accurate passing one (fp32 stays
    the default, but the int8 artifact is still the best int8 there is); else the most accurate."""
    passed = [r for r in rows if r["passed"]]
    faster = [r for r in passed if r["median_ms"] < fp32_ms]
    if faster:
        return min(faster, key=lambda r: r["median_ms"])
    pool = passed or rows
    return max(pool, key=lambda r: (r["zero_shot_agreement"], r["cosine_min"]))


# --------------------------------------------------------------------------- the whole job
def quantize(fp32_path: Path, out_path: Path, input_name: str, calibration: np.ndarray,
             reference: np.ndarray, workdir: Path, runs: int = 15, candidates=CANDIDATES,
             external_data: bool = False, log: Optional[Callable] = None,
             other_tower: Optional[np.ndarray] = None) -> dict:
    """Build, measure and choose; write the chosen graph at ``out_path``. Returns ``info["int8"]``."""
    import onnx

    log = log or (lambda *a: None)
    workdir = Path(workdir)
    t0 = time.perf_counter()
    calibration = np.ascontiguousarray(calibration)
    pre = workdir / "preprocessed.onnx"
    pre_info = preprocess(fp32_path, pre, external_data)
    header = onnx.load(str(pre), load_external_data=False)
    nodes = quantizable(header)
    nodes["order"] = [n.name for n in header.graph.node]
    del header
    base, gather = pre, None
    if nodes.get("Gather"):
        base = workdir / "tables_int8.onnx"
        gather = quantize_gather_tables(pre, base, nodes["Gather"], external_data=external_data)
    builder = Builder(base, workdir, input_name, calibration, nodes, external_data)
    kinds = [k for k in candidates if builder.applies(k)]
    if not kinds:
        raise RuntimeError(f"no int8 candidate applies: the graph has no Conv or MatMul weights "
                           f"({sorted(k for k in nodes if k != 'order')})")
    rows, builders = [], {}
    for kind in kinds:
        path = builder.build(kind)
        rows.append(_row(kind, path, parity(path, input_name, calibration, reference, other_tower)))
        builders[kind] = (builder, kind)
    if gather is not None and not any(r["passed"] for r in rows):
        # the int8 tables alone can cost more than the bar allows (S0 text, long captions: 1 - cosine
        # 2.2e-3 with every other node float): the same candidates with the tables left float
        (workdir / "float-tables").mkdir(exist_ok=True)
        fb = Builder(pre, workdir / "float-tables", input_name, calibration, nodes, external_data)
        for kind in kinds:
            path = fb.build(kind)
            name = f"{kind}+float-tables"
            rows.append(_row(name, path, parity(path, input_name, calibration, reference, other_tower)))
            builders[name] = (fb, kind)
    t_build = time.perf_counter() - t0

    x = np.ascontiguousarray(calibration[:1])

    def timed(rs):
        sessions = [session(fp32_path)] + [session(r["_path"]) for r in rs]
        ms = time_alternately([lambda v, s=s: s.run(None, {input_name: v}) for s in sessions], x, runs)
        for r, m in zip(rs, ms[1:]):
            r["median_ms"], r["speedup_vs_fp32"] = m, ms[0] / m
        return ms[0]

    fp32_ms = timed(rows)
    fp32_samples = [fp32_ms]
    recovery = None
    if not any(r["passed"] for r in rows):
        # the fastest candidate, with its most sensitive (first) quantized nodes kept in float; where no
        # prefix of it passes (its int8 tables alone miss the bar), the next fastest, and so on
        recovery = None
        tried = []
        for first in sorted(rows, key=lambda r: r["median_ms"]):
            b, kind = builders[first["name"]]
            attempt = _recover(b, kind, input_name, calibration, reference, other_tower, log,
                               label=first["name"])
            tried.append({k: v for k, v in attempt.items() if k != "row"})
            if attempt.get("row") is not None:
                recovery = attempt
                break
        recovery = recovery or {"passed": False, "row": None}
        recovery["tried"] = tried
        if recovery.get("row") is not None:
            row = recovery.pop("row")
            fp32_samples.append(timed([row]))
            rows.append(row)
    chosen = choose(rows, fp32_ms)
    if external_data:   # the graph names its data file: save it again under the artifact's name
        onnx.save_model(onnx.load(str(chosen["_path"])), str(out_path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=Path(out_path).name + ".data")
    else:
        shutil.copyfile(chosen["_path"], out_path)
    for r in rows:
        r.pop("_path")
    log(f"        int8: {chosen['name']} ({'passed' if chosen['passed'] else 'missed the int8 bars'}) of "
        + ", ".join(f"{r['name']} {r['median_ms']:.1f} ms cos {r['cosine_min']:.5f}" for r in rows)
        + f"; fp32 {fp32_ms:.1f} ms")
    return {"chosen": chosen["name"], "chosen_passed": chosen["passed"], "fp32_median_ms": fp32_ms,
            "fp32_median_ms_each_timing": fp32_samples, "timing": {
                "batch": 1, "runs": runs, "warmup": 3, "threads": "ONNX Runtime default",
                "order": "fp32 and candidates alternately, one process"},
            "candidates": rows, "calibration_rows": int(len(calibration)),
            "calibration": "MinMax ranges on the calibration rows, batch 1 each (static-conv)",
            "agreement_against": "self-retrieval (top-1 among the reference embeddings of these rows; "
                                 "no other tower given)" if other_tower is None else
                                 "the other tower's reference embeddings (as the export gate)",
            "preprocess": pre_info, "embedding_tables": gather,
            "embedding_tables_int8": gather is not None and "+float-tables" not in chosen["name"],
            "recovery": recovery,
            "seconds": round(time.perf_counter() - t0, 1), "build_seconds": round(t_build, 1)}


def _recover(builder: Builder, kind: str, input_name: str, calibration, reference, other_tower,
             log, label: Optional[str] = None) -> dict:
    """Smallest ``k`` (bisection, one build + parity run per step) such that ``kind`` with its first ``k``
    quantized nodes kept in float passes the int8 bars; assumes more float nodes -> more accurate,
    and records every step measured."""
    targets = builder.targets(kind)
    n = len(targets)
    steps = {}

    def passes(k):
        if k not in steps:
            path = builder.build(kind, k)
            steps[k] = (path, parity(path, input_name, calibration, reference, other_tower))
        return steps[k][1]["passed"]

    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    if n == 0 or not passes(lo):
        return {"candidate": label or kind, "nodes": n, "passed": False, "row": None,
                "why": f"no prefix of its {n} quantized nodes kept in float passes"
                       + (" (all of them in float fails too: the embedding tables?)" if lo == n else ""),
                "steps": _steps(steps)}
    path, figs = steps[lo]
    name = f"{label or kind}/float-first-{lo}"
    log(f"        int8: no candidate passed; {name} of {n} quantized nodes passes")
    return {"candidate": label or kind, "nodes": n, "keep_float": lo, "passed": True,
            "steps": _steps(steps),
            "row": _row(name, path, figs, lo, targets[:lo])}


def _steps(steps: dict) -> list:
    return [{"keep_float": k, **{f: v[1][f] for f in ("cosine_min", "zero_shot_agreement", "passed")}}
            for k, v in sorted(steps.items())]
