"""Localizing a wrong result: :func:`verify_mlpackage` (a package against reference outputs, held to
the export bars of :mod:`clipdeploy.latency.parity`), :func:`localize` / :func:`diff_programs` (the
first op whose output departs from another program or from reference activations) and
:func:`torch_activations` (those activations from the converted ``torch.export`` program)."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from ..parity import THRESHOLDS, failures as missed_bars, measure
from .inputs import split_rows
from .program import Program, load_program, run_rows
from .types import VerificationError


def localize(prog: Program, feed: dict, baseline, activations, pessimistic: bool, rtol: float):
    """First op (program order) whose output departs from the baseline program's or from the given
    reference activations (``{name: array}``; fp16 names match with their ``_cast_fp16`` suffix dropped)."""
    if baseline is not None:
        base = baseline if isinstance(baseline, Program) else load_program(baseline)
        d = diff_programs(base, prog, feed, pessimistic=pessimistic, rtol=rtol)
        return d.get("first_divergent_op")
    acts = prog.activations(feed, pessimistic)
    owners = prog.op_outputs()
    for name, val in acts.items():
        ref = activations.get(name)
        if ref is None and name.endswith("_cast_fp16"):
            ref = activations.get(name[:-len("_cast_fp16")])
        if ref is None:
            continue
        ref = np.asarray(ref)
        if ref.size != val.size or val.dtype.kind != "f":
            continue
        ref = ref.reshape(val.shape).astype(np.float64)
        diff = float(np.max(np.abs(val.astype(np.float64) - ref))) if val.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        if not np.isfinite(diff) or diff > rtol * max(scale, 1e-6):
            op_name, op_type = owners[name]
            return {"name": op_name, "type": op_type, "var": name, "max_abs_diff": diff,
                    "max_abs_reference": scale}
    return None


def verify_mlpackage(path, inputs, reference, precision: Optional[str] = None, *, other_tower=None,
                     output: Optional[str] = None, pessimistic: bool = False, baseline=None,
                     activations: Optional[dict] = None, localize_rtol: Optional[float] = None,
                     check: bool = True) -> dict:
    """Run a saved package through the interpreter and compare with a reference.

    ``inputs``: ``{name: array}`` or one array (single-input programs), batched along dim 0; a
    static-batch-1 program runs row by row. ``reference``: ``[N, D]`` expected outputs (e.g. the
    PyTorch embeddings). ``precision``: "fp32" | "fp16" thresholds (default: the program's own);
    the thresholds are :data:`clipdeploy.latency.parity.THRESHOLDS` (fp32: max abs <= 1e-5; fp16:
    max abs <= 1.5e-3 and cosine >= 0.99995). ``other_tower`` ([M, D]) adds zero-shot top-1 agreement
    (:func:`clipdeploy.latency.parity.measure`: a near-tie in the reference counts as agreeing).
    On failure the first op that departs (on the first input row) is named when ``baseline`` (another
    package / Program, e.g. the unmodified export: any difference counts) or ``activations``
    (reference activations by var name, e.g. from :func:`torch_activations`: a difference above
    ``localize_rtol`` x the activation's max magnitude, default 1e-4 for fp32 programs, 1e-2 for fp16)
    is given; a non-finite output names the op where the first non-finite value arose.

    Returns the figures (``max_abs``, ``cosine_min``, ``cosine_mean``, ``finite``, ``n``, ``passed``,
    ``failures``, ``thresholds``, ``diagnostics``, ``seconds_per_run``, ...). Raises
    :class:`VerificationError` on failure unless ``check=False``; interpreter errors (unknown op, bad
    attribute value, shape mismatch) propagate as :class:`CoreMLRefError` naming the op."""
    prog = path if isinstance(path, Program) else load_program(path)
    precision = precision or prog.precision
    if precision not in THRESHOLDS:
        raise ValueError(f"precision must be one of {sorted(THRESHOLDS)}, not {precision!r}")
    t0 = time.perf_counter()
    got, nonfinite = run_rows(prog, inputs, output, pessimistic)
    elapsed = time.perf_counter() - t0
    ref = np.asarray(reference, np.float64)
    if ref.ndim == 1:
        ref = ref[None]
    got64 = got.astype(np.float64).reshape(ref.shape) if got.size == ref.size else got.astype(np.float64)
    if got64.shape != ref.shape:
        raise ValueError(f"interpreter output shape {got64.shape} != reference {ref.shape}")
    figures = {"path": str(prog.path), "precision": precision, "program_precision": prog.precision,
               "opset": prog.opset, "pessimistic": bool(pessimistic),
               "seconds_per_run": elapsed / max(1, got64.shape[0])}
    # the parity figures of every artifact (zero-shot agreement with its tie rule; none without other_tower)
    fig = measure(ref, got64, other_tower)
    figures.update(fig)
    if fig["finite"]:
        failures = missed_bars(figures, precision)
    else:
        failures = ["non-finite outputs" + (f" (first non-finite value at op {nonfinite['name']!r} "
                                            f"({nonfinite['type']}))" if nonfinite else "")]
    figures["thresholds"] = THRESHOLDS[precision]
    figures["diagnostics"] = {k: v for k, v in prog.diagnostics.items()}
    op = None
    if failures and (baseline is not None or activations is not None):
        _, feeds = split_rows(prog, inputs)
        rtol = localize_rtol if localize_rtol is not None else (1e-4 if prog.precision == "fp32" else 1e-2)
        op = localize(prog, feeds[0], baseline, activations, pessimistic,
                      0.0 if baseline is not None and localize_rtol is None else rtol)
        figures["first_divergent_op"] = op
    if failures and op is None and nonfinite is not None:
        op = nonfinite
    figures["failures"] = failures
    figures["passed"] = not failures
    if failures and check:
        where = f"; first departing op {op['name']!r} ({op['type']})" if op else ""
        raise VerificationError(f"{prog.path.name} ({prog.precision} program, {precision} thresholds) failed "
                                f"verification: {'; '.join(failures)}{where}", figures,
                                op["name"] if op else None, op["type"] if op else None)
    return figures


def diff_programs(a, b, inputs: dict, pessimistic: bool = False, rtol: float = 0.0) -> dict:
    """Run two programs (paths or Programs) on the same single-run inputs and compare them op by op.

    Returns ``{"first_divergent_op": {name, type, var, max_abs_diff, max_abs_reference} | None,
    "differing_constants": [names], "changed_ops": [(output name, type in a, type in b)],
    "only_in_a": [...], "only_in_b": [...]}``. Vars are matched by name; ``rtol`` is relative to the
    largest magnitude of ``a``'s value (0: any difference counts)."""
    pa = a if isinstance(a, Program) else load_program(a)
    pb = b if isinstance(b, Program) else load_program(b)
    ca, cb = pa.constants(), pb.constants()
    differing = []
    for k in ca:
        if k in cb:
            va, vb = ca[k], cb[k]
            if isinstance(va, str) or isinstance(vb, str):
                same = va == vb
            else:
                same = np.shape(va) == np.shape(vb) and np.array_equal(np.asarray(va), np.asarray(vb))
            if not same:
                differing.append(k)
    ta, tb = dict(pa.ops), dict(pb.ops)
    changed = [(n, ta[n], tb[n]) for n in ta if n in tb and ta[n] != tb[n]]
    acts_a = pa.activations(inputs, pessimistic)
    acts_b = pb.activations(inputs, pessimistic)
    owners = pb.op_outputs()
    first = None
    for name, vb in acts_b.items():
        va = acts_a.get(name)
        if va is None or va.shape != vb.shape:
            if va is not None:
                first = {"name": owners[name][0], "type": owners[name][1], "var": name,
                         "max_abs_diff": float("inf"), "max_abs_reference": None}
                break
            continue
        if va.dtype.kind in "fc":
            x, y = va.astype(np.float64), vb.astype(np.float64)
            both_nan = np.isnan(x) & np.isnan(y)
            d = np.where(both_nan, 0.0, np.abs(x - y))
            diff = float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0
            scale = float(np.nanmax(np.abs(x))) if x.size else 0.0
        else:
            diff = float(np.count_nonzero(va != vb))
            scale = 0.0
        if diff > rtol * scale:
            first = {"name": owners[name][0], "type": owners[name][1], "var": name,
                     "max_abs_diff": diff, "max_abs_reference": scale}
            break
    return {"first_divergent_op": first, "differing_constants": differing, "changed_ops": changed,
            "only_in_a": [n for n in ta if n not in tb], "only_in_b": [n for n in tb if n not in ta]}


def torch_activations(exported_program, *args) -> dict:
    """Reference activations of a ``torch.export`` program by node name (``{name: numpy array}``): the
    names coremltools gives the MIL vars it converts them to, so they can localize a divergence in
    :func:`verify_mlpackage` (``activations=``). Pass the program that was converted (after
    ``run_decompositions``)."""
    gm = exported_program.module()
    acts: dict = {}

    class _Rec(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n.op == "call_function" and isinstance(r, torch.Tensor):
                acts[n.name] = r.detach().cpu().numpy().copy()
            return r

    with torch.no_grad():
        _Rec(gm).run(*args)
    return acts
