"""LiteRT ``.tflite`` in ``ai_edge_litert``'s Interpreter: the one way this project runs a ``.tflite``.

Used by the export gate (:mod:`clipdeploy.export.backends.litert_backend`) and by ``clip-latency run
--runtime litert`` (:class:`clipdeploy.latency.runtimes.LiteRTRuntime`), so both run an artifact the same
way: the Interpreter with the XNNPACK delegate LiteRT applies by default on CPU (``num_threads`` is
passed to the delegate it creates; S0 image, idle: 64.8 ms at 1 thread, 44.1 ms at 2, docs/performance.md), the
``serving_default`` signature at batch 1, row by row for a larger batch.

:func:`delegation_figures` says which ops of a loaded model run inside XNNPACK: the ops the execution plan
still runs outside a DELEGATE node, found by walking back from the outputs (a tensor a DELEGATE produces is
computed inside it). ``ops_outside`` is their histogram, ``compute_ops_outside`` those that compute on
floats (the integer index arithmetic of the EOT pooling, the token-embedding lookup and a DEQUANTIZE of a
constant weight, which LiteRT runs once at load, are not compute), ``share_delegated`` = delegated ops /
all ops of the graph.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from typing import Optional

import numpy as np

SIGNATURE = "serving_default"
OUTPUT = "embedding"
#: the ops of a graph that only pick or move data: outside the delegate they cost microseconds
_INDEXING = ("EMBEDDING_LOOKUP", "GATHER", "GATHER_ND", "ARG_MAX", "ARG_MIN", "RESHAPE", "SQUEEZE",
             "EXPAND_DIMS", "SLICE", "STRIDED_SLICE", "CONCATENATION", "TRANSPOSE", "SHAPE")

@contextlib.contextmanager
def quiet_fds():
    """Send everything written to file descriptors 1 and 2 (Python and C++ alike: the converter's
    progress lines, MLIR and TFLite INFO logs) to a temporary file for the duration; the last lines are
    attached to any exception raised inside."""
    import sys

    import io
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        text = io.StringIO()          # Python-level writers that are not fd 1/2 (a test runner's capture)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(text), \
                        contextlib.redirect_stderr(text):
                    warnings.simplefilter("ignore")
                    yield
            except Exception as e:
                sys.stdout.flush()
                sys.stderr.flush()
                sink.seek(0)
                tail = (sink.read().decode("utf-8", "replace") + text.getvalue()).strip().splitlines()[-5:]
                if tail and not getattr(e, "_litert_log", None):
                    e._litert_log = tail
                raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def interpreter(path_or_bytes, threads: Optional[int] = None):
    """An allocated ``ai_edge_litert`` Interpreter (XNNPACK applied by default on CPU); ``threads``
    None: the runtime's default."""
    from ai_edge_litert.interpreter import Interpreter

    kw = {"num_threads": int(threads)} if threads else {}
    if isinstance(path_or_bytes, (bytes, bytearray)):
        kw["model_content"] = bytes(path_or_bytes)
    else:
        kw["model_path"] = str(path_or_bytes)
    with quiet_fds():
        interp = Interpreter(**kw)
        interp.allocate_tensors()
    return interp


def runner(interp):
    """``call(x)`` -> float32 embeddings [N, D] for any batch, row by row (the signature is static at 1)."""
    sig = interp.get_signature_list()
    if SIGNATURE not in sig or len(sig[SIGNATURE]["inputs"]) != 1:
        raise RuntimeError(f"a clipdeploy .tflite has one signature {SIGNATURE!r} with one input; got {sig}")
    name = sig[SIGNATURE]["inputs"][0]
    run = interp.get_signature_runner(SIGNATURE)
    dtype = run.get_input_details()[name]["dtype"]

    def call(x):
        x = np.ascontiguousarray(np.asarray(x), dtype=dtype)
        rows = [np.asarray(_output(run(**{name: x[i:i + 1]})), dtype=np.float32) for i in range(len(x))]
        return np.concatenate(rows)
    return call


def _output(out: dict):
    """The signature's one output: ``embedding`` (an encoder) or ``logits`` (a classifier)."""
    if OUTPUT in out:
        return out[OUTPUT]
    if len(out) != 1:
        raise RuntimeError(f"a clipdeploy .tflite signature has one output; got {sorted(out)}")
    return next(iter(out.values()))


def io_spec(interp) -> tuple:
    run = interp.get_signature_runner(SIGNATURE)
    ins = [{"name": k, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
           for k, d in run.get_input_details().items()]
    outs = [{"name": k, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            for k, d in run.get_output_details().items()]
    return ins, outs


def delegation_figures(interp) -> dict:
    """Which ops of the loaded model run inside an XNNPACK DELEGATE node (module docstring)."""
    ops = interp._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {}
    for o in originals:
        for t in o["outputs"]:
            producer[t] = o
    for o in delegates:                       # a tensor a delegate produces is computed inside it
        for t in o["outputs"]:
            producer[t] = o
    seen, outside, compute, used = set(), Counter(), Counter(), 0
    inputs = {d["index"] for d in interp.get_input_details()}
    stack = [d["index"] for d in interp.get_output_details()]
    while stack:
        o = producer.get(stack.pop())
        if o is None or o["index"] in seen:
            continue
        seen.add(o["index"])
        if o["op_name"] == "DELEGATE":
            used += 1
        else:
            outside[o["op_name"]] += 1
            floats = any("float" in str(t).lower() for t in list(o.get("operand_types") or [])
                         + list(o.get("result_types") or []))
            constant = all(producer.get(t) is None for t in o["inputs"] if t >= 0 and t not in inputs)
            if o["op_name"] not in _INDEXING and floats and not (constant and o["op_name"] == "DEQUANTIZE"):
                compute[o["op_name"]] += 1       # (a DEQUANTIZE of a constant weight runs once, at load)
        stack.extend(t for t in o["inputs"] if t >= 0)
    n_out = sum(outside.values())
    return {"backends": ["XNNPACK"] if used else [], "partitions": used,
            "ops_total": len(originals), "delegated_ops": len(originals) - n_out,
            "ops_outside": dict(outside.most_common()), "compute_ops_outside": dict(compute.most_common()),
            "share_delegated": (len(originals) - n_out) / max(1, len(originals)),
            "how": "ops the Interpreter's execution plan runs outside its DELEGATE nodes (ai_edge_litert)"}
