"""ExecuTorch backends: XNNPACK-delegated ``.pte`` (runs here through ``executorch.runtime``) and
Core ML-delegated ``.pte`` (lowers on Linux, runs only on Apple platforms).

Both export with ``torch.export.export(wrapper, (example,))`` at a static batch of 1 (image float32
[1, 3, R, R] named ``image``; text int32 [1, 77] named ``text``) and lower with
``executorch.exir.to_edge_transform_and_lower``.

Before XNNPACK lowering the exported ATen graph is rewritten (``options["rewrite"]``, default on) so
that more of it reaches the delegate; every rewrite computes the same function (up to fp32 rounding):

* ``scaled_dot_product_attention`` (no dropout, no causal flag) -> ``bmm(q·scale, kᵀ)`` (+ mask) ->
  ``softmax`` -> ``bmm(·, v)``. The stock decomposition emits a "safe" softmax (eq/any/where/
  logical_not) and ``expand`` ops that XNNPACK does not take; a plain softmax equals the safe one
  whenever no row is fully masked, which holds for every CLIP tower (no mask, or a causal mask).
* ``layer_norm`` over the last dim -> mean / sub / mul / mean / add / rsqrt / mul / add on a 4-D view
  (XNNPACK has no LayerNorm; its mean takes 4-D tensors over dims (2, 3)).
* ``select`` -> ``slice`` + ``view`` (XNNPACK has slice but no select), ``unbind`` -> such slices (q/k/v);
  ``squeeze`` / ``unsqueeze`` -> ``view`` (static shapes; XNNPACK takes views, not squeezes);
  a batched ``matmul`` with equal batch dims -> ``bmm`` on 3-D views (the stock decomposition adds
  ``expand`` ops, which XNNPACK lacks).
* ``linalg_vector_norm`` (L2 over the last dim, the ``F.normalize`` tail) -> sqrt(mean(x²)·D) on a
  4-D view; an ``expand``/``expand_as`` that is a no-op or whose users are all broadcasting binary
  ops is dropped.

Delegation figures (``ExportResult.info["delegation"]``): ``partitions`` = number of delegate calls
in the lowered program; ops are the edge-dialect operator nodes of the program after the rewrite
and decomposition and before partitioning (``getitem`` excluded): ``delegated_ops`` are those that
ended up inside a delegate (counted in each lowered module's original sub-graph), ``ops_outside``
the histogram of those left to ExecuTorch's portable kernels. ``share_delegated`` = delegated /
(delegated + outside); ``share_delegated_compute`` is the same ratio with pure data-movement ops
(view/permute/expand/squeeze/slice/select/clone/copy) left out of both counts.
"""
from __future__ import annotations

import collections
import math
import operator
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from clipdeploy.export.backends.base import Backend, BackendUnavailable, ExportResult
from clipdeploy.export.backends.xnnpack_modules import rewrite_attention_pools, split_large_depthwise
from clipdeploy.export.wrappers import IMAGE_INPUT, OUTPUT, TEXT_INPUT
from clipdeploy.models.errors import ClipDeployError


class NotDelegated(ClipDeployError, RuntimeError):
    """The lowered program has no delegate at all, or leaves compute ops to ExecuTorch's portable
    kernels (hundreds of times slower than XNNPACK): it is never written. ``clip-export`` ends with
    its one line and exit 1."""
    exit_code = 1


_DATA_MOVEMENT = ("view", "_unsafe_view", "reshape", "permute", "transpose", "expand", "squeeze",
                  "unsqueeze", "slice", "select", "clone", "_clone_dim_order", "_to_copy",
                  "_to_dim_order_copy", "alias", "t", "contiguous")


# ---------------------------------------------------------------------------------------------------
# export helpers

def _static_example(example: torch.Tensor, encoder: str) -> torch.Tensor:
    example = example[:1]
    if encoder == "text":
        return example.to(torch.int32).contiguous()
    return example.to(torch.float32).contiguous()


def _dynamic_shapes(example: torch.Tensor, encoder: str, shapes: Optional[dict]):
    """torch.export ``dynamic_shapes`` for the artifact's ``shapes`` entry (:mod:`clipdeploy.export.shapes`):
    a dynamic image batch (bounded: XNNPACK plans its memory for the upper bound) or text length; None
    when everything is static. The example is widened to the upper bound (a size-1 example would be
    specialized)."""
    dims = {}
    if shapes:
        b, L = shapes.get("batch"), shapes.get("length")
        if b and b["kind"] == "dynamic" and b["max"] and b["max"] > 1:
            dims[0] = torch.export.Dim("batch", min=1, max=int(b["max"]))
            example = example[:1].expand(int(b["max"]), *example.shape[1:]).contiguous()
        if encoder == "text" and L and L["kind"] == "dynamic":
            dims[1] = torch.export.Dim("length", min=int(L["min"]), max=int(L["max"]))
            # an example at the bound would be specialized to it (slicing the 77 positional rows to
            # 77 clamps), so trace at a length inside the range
            example = example[:, :max(int(L["min"]), min(32, int(L["max"]) - 1))].contiguous()
    static = torch.export.Dim.STATIC
    if not dims:
        return None, example
    return ({0: dims.get(0, static), 1: dims.get(1, static)} if encoder == "text"
            else {0: dims.get(0, static)}), example


def _export(wrapper: nn.Module, example: torch.Tensor, encoder: str, shapes: Optional[dict] = None):
    if encoder not in ("image", "text"):
        raise ValueError(f"encoder must be 'image' or 'text', got {encoder!r}")
    name = IMAGE_INPUT if encoder == "image" else TEXT_INPUT
    example = _static_example(example, encoder)
    dynamic, example = _dynamic_shapes(example, encoder, shapes)
    wrapper = wrapper.eval()
    # torch.export names the placeholder after forward()'s argument; the wrappers call it image/text.
    with torch.no_grad():
        ep = torch.export.export(wrapper, (example,), dynamic_shapes=(dynamic,) if dynamic else None)
    return ep, example, name


def _io(ep, example: torch.Tensor, name: str, shapes: Optional[dict] = None):
    """Input/output specs; a dynamic dim is named ("batch", "length") as in the ONNX artifacts."""
    out = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    out = out[0] if isinstance(out, (tuple, list)) else out
    dyn = {0: "batch", 1: "length"}
    ph = [n for n in ep.graph.nodes if n.op == "placeholder"][-1].meta["val"]

    def dims(shape):
        return [d if isinstance(d, int) else dyn.get(i, str(d)) for i, d in enumerate(shape)]

    oshape = dims(out.meta["val"].shape)
    inputs = [{"name": name, "shape": dims(ph.shape) if shapes else list(example.shape),
               "dtype": str(example.dtype).replace("torch.", "")}]
    outputs = [{"name": OUTPUT, "shape": oshape, "dtype": "float32"}]
    return inputs, outputs


def _op_name(target) -> str:
    op = getattr(target, "_op", target)          # EdgeOpOverload wraps the aten OpOverload
    name = getattr(op, "name", None)
    if callable(name):
        try:
            return name().replace("::", ".")
        except Exception:  # noqa: BLE001
            pass
    return str(op)


def _is_getitem(target) -> bool:
    return target is operator.getitem or "getitem" in str(target)


# index arithmetic XNNPACK has no operator for (the text tower's token-embedding gather and its EOT
# pooling: argmax over the ids, arange, index); they move or pick data, cost microseconds, and are the
# only ops allowed to stay outside the delegate
_INDEXING = ("embedding", "index", "arange", "argmax", "gather", "index_select")


def _is_indexing(opname: str) -> bool:
    base = opname.split(".")[1] if opname.startswith("aten.") else opname
    return base in _INDEXING


def _is_data_movement(opname: str) -> bool:
    base = opname.split(".")[1] if opname.startswith("aten.") else opname
    base = base[:-5] if base.endswith("_copy") else base
    return base in _DATA_MOVEMENT or base in ("dim_order_ops", "_clone_dim_order")


def _is_shape_arithmetic(node) -> bool:
    """A node computing a symbolic size of a dynamic-shape program (``sym_size``, ``mul`` / ``add`` of
    SymInts): scalar arithmetic ExecuTorch evaluates between kernels, not a tensor op."""
    val = node.meta.get("val")
    return isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool)


def delegation_figures(edge_program) -> dict:
    """Delegation figures of a lowered edge ``ExportedProgram`` (see the module docstring)."""
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    gm = edge_program.graph_module
    inside, outside = collections.Counter(), collections.Counter()
    backends, shape_ops = collections.Counter(), collections.Counter()
    partitions = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or _is_getitem(node.target):
            continue
        if "executorch_call_delegate" in str(node.target):
            partitions += 1
            lowered = getattr(gm, node.args[0].target)
            assert isinstance(lowered, LoweredBackendModule)
            backends[lowered.backend_id] += 1
            sub = lowered.original_module.graph_module
            for n in sub.graph.nodes:
                if n.op == "call_function" and not _is_getitem(n.target):
                    inside[_op_name(n.target)] += 1
            continue
        if _is_shape_arithmetic(node):
            shape_ops[_op_name(node.target)] += 1
            continue
        outside[_op_name(node.target)] += 1
    n_in, n_out = sum(inside.values()), sum(outside.values())
    c_in = sum(v for k, v in inside.items() if not _is_data_movement(k))
    c_out = sum(v for k, v in outside.items() if not _is_data_movement(k))
    return {
        "partitions": partitions,
        "backends": dict(backends),
        "delegated_ops": n_in,
        "outside_ops": n_out,
        "share_delegated": n_in / max(1, n_in + n_out),
        "share_delegated_compute": c_in / max(1, c_in + c_out),
        "ops_outside": dict(sorted(outside.items(), key=lambda kv: (-kv[1], kv[0]))),
        # compute left to the portable kernels (neither data movement nor indexing): must be empty
        "compute_ops_outside": {k: v for k, v in sorted(outside.items())
                                if not _is_data_movement(k) and not _is_indexing(k)},
        "ops_delegated": dict(sorted(inside.items(), key=lambda kv: (-kv[1], kv[0]))),
        "shape_arithmetic_outside": dict(sorted(shape_ops.items())),
    }


# ---------------------------------------------------------------------------------------------------
# the XNNPACK-friendly rewrite (decompositions applied to the exported ATen graph)

aten = torch.ops.aten


def _sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    if dropout_p != 0.0 or is_causal or enable_gqa or query.dim() < 3:
        return NotImplemented
    if query.dtype != torch.float32:
        return NotImplemented
    lead, L, E = tuple(query.shape[:-2]), query.shape[-2], query.shape[-1]
    S, Ev = key.shape[-2], value.shape[-1]
    if tuple(key.shape[:-2]) != lead or tuple(value.shape[:-2]) != lead:
        return NotImplemented
    s = scale if scale is not None else 1.0 / math.sqrt(E)
    q = query.reshape(-1, L, E)
    k = key.reshape(-1, S, E)
    v = value.reshape(-1, S, Ev)
    attn = torch.bmm(q * s, k.transpose(1, 2))                    # [BH, L, S]
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=attn.dtype).masked_fill(
                attn_mask.logical_not(), float("-inf"))
        if attn_mask.dim() > 2:
            attn = (attn.reshape(*lead, L, S) + attn_mask).reshape(-1, L, S)
        else:
            attn = attn + attn_mask
    attn = torch.softmax(attn, dim=-1)
    return torch.bmm(attn, v).reshape(*lead, L, Ev)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    if len(normalized_shape) != 1 or input.dtype != torch.float32 or input.dim() < 2:
        return NotImplemented
    shape = tuple(input.shape)
    C = shape[-1]
    x = input.reshape(1, -1, 1, C)
    mean = torch.mean(x, dim=(2, 3), keepdim=True)
    xc = x - mean
    var = torch.mean(xc * xc, dim=(2, 3), keepdim=True)
    y = (xc * torch.rsqrt(var + eps)).reshape(shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _select(x, dim, index):
    dim = dim % x.dim()
    index = index % x.shape[dim]
    out_shape = tuple(s for i, s in enumerate(x.shape) if i != dim)
    return aten.slice.Tensor(x, dim, index, index + 1).reshape(out_shape)


def _matmul(a, b):
    if a.dim() < 3 or a.dim() != b.dim() or tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        return NotImplemented
    lead = tuple(a.shape[:-2])
    out = torch.bmm(a.reshape(-1, a.shape[-2], a.shape[-1]), b.reshape(-1, b.shape[-2], b.shape[-1]))
    return out.reshape(*lead, a.shape[-2], b.shape[-1])


def _unbind(x, dim=0):
    return [_select(x, dim, i) for i in range(x.shape[dim])]


def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    if ord != 2 or dtype is not None or x.dtype != torch.float32 or dim is None:
        return NotImplemented
    dims = [dim] if isinstance(dim, int) else list(dim)
    if len(dims) != 1 or dims[0] % x.dim() != x.dim() - 1:
        return NotImplemented
    shape = tuple(x.shape)
    C = shape[-1]
    x4 = x.reshape(1, -1, 1, C)
    ms = torch.mean(x4 * x4, dim=(2, 3), keepdim=True)
    n = torch.sqrt(ms * float(C))
    out_shape = shape[:-1] + ((1,) if keepdim else ())
    return n.reshape(out_shape)


def _squeeze(x, dim=None):
    shape = list(x.shape)
    if dim is None:
        dims = set(range(len(shape)))
    else:
        dims = {d % max(1, len(shape)) for d in ([dim] if isinstance(dim, int) else dim)}
    return x.reshape(tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1)))


def _unsqueeze(x, dim):
    shape = list(x.shape)
    shape.insert(dim % (len(shape) + 1), 1)
    return x.reshape(tuple(shape))


_REWRITES = {
    aten.scaled_dot_product_attention.default: _sdpa,
    aten.squeeze.dim: _squeeze,
    aten.squeeze.dims: _squeeze,
    aten.squeeze.default: _squeeze,
    aten.unsqueeze.default: _unsqueeze,
    aten.layer_norm.default: _layer_norm,
    aten.select.int: _select,
    aten.unbind.int: _unbind,
    aten.matmul.default: _matmul,
    aten.linalg_vector_norm.default: _vector_norm,
}

_BROADCASTING = {aten.div.Tensor, aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor}


def _drop_broadcast_expands(ep) -> int:
    """Remove ``expand``/``expand_as`` nodes that are no-ops (same shape in and out) or whose every
    user is a broadcasting binary op whose other operand already has the expanded shape (the op
    broadcasts to the same result)."""
    g = ep.graph_module.graph
    removed = 0
    for node in list(g.nodes):
        if node.op != "call_function" or node.target not in (aten.expand.default, aten.expand_as.default):
            continue
        src = node.args[0]
        shape = tuple(node.meta["val"].shape)
        if tuple(src.meta["val"].shape) == shape:       # a no-op expand (e.g. ViT's class token at batch 1)
            node.replace_all_uses_with(src)
            g.erase_node(node)
            removed += 1
            continue
        ok = bool(node.users)
        for user in node.users:
            if user.target not in _BROADCASTING or len(user.args) != 2 or user.kwargs.get("alpha", 1) != 1:
                ok = False
                break
            other = user.args[1] if user.args[0] is node else user.args[0]
            if other is node or not isinstance(other, torch.fx.Node) or \
                    tuple(other.meta["val"].shape) != shape:
                ok = False
                break
        if ok:
            node.replace_all_uses_with(src)
            g.erase_node(node)
            removed += 1
    if removed:
        g.eliminate_dead_code()
        ep.graph_module.recompile()
    return removed


_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}


def _infer_symbolic_view_dims(ep) -> int:
    """A view / reshape whose target shape has exactly one symbolic size (a dynamic batch or length)
    gets -1 there: the same shape (the element count fixes it), and the only dynamic form XNNPACK's
    static reshape takes (it refuses symbolic sizes). Returns how many were rewritten."""
    g = ep.graph_module.graph
    n = 0
    for node in g.nodes:
        if node.op != "call_function" or node.target not in _VIEWS or len(node.args) < 2:
            continue
        shape = list(node.args[1])
        sym = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if len(sym) == 1 and -1 not in shape:
            shape[sym[0]] = -1
            node.args = (node.args[0], shape) + tuple(node.args[2:])
            n += 1
    if n:
        g.eliminate_dead_code()
        ep.graph_module.recompile()
    return n


def xnnpack_friendly(ep):
    """The rewrite described in the module docstring; returns a new ExportedProgram."""
    _drop_broadcast_expands(ep)
    ep = ep.run_decompositions(dict(_REWRITES))
    if ep.range_constraints:             # a dynamic batch / length
        _infer_symbolic_view_dims(ep)
    return ep


# ---------------------------------------------------------------------------------------------------
# int8: XNNPACK PT2E quantization

#: int8 schemes: static per-channel int8 weights and per-tensor int8 activations calibrated on the probe
#: set (convolutions need static activations to reach XNNPACK's int8 kernels), or int8 weights with
#: activations quantized per call (linear layers only)
INT8_SCHEMES = ("static", "dynamic")
#: the cosine the quantized part of an encoder must keep on the calibration rows (the gate's bar is
#: 0.999; the margin covers the difference between PyTorch's simulation and XNNPACK's int8 kernels)
INT8_TARGET_COSINE = 0.9995


def _units(module: nn.Module) -> list:
    """The encoder's sections that are quantized or kept in float32 as a whole: the children of its
    shallowest module lists/sequences of at least two modules (stem layers, stages, transformer
    blocks); everything else is one more unit, ``""`` (embeddings, heads, projections)."""
    units = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) >= 2 and \
                not any(name == u or name.startswith(u + ".") for u in units):
            units += [f"{name}.{i}" for i in range(len(m))]
    return units + [""]


def _unit_of(node, units: list) -> str:
    paths = [str(v[0]) for v in (node.meta.get("nn_module_stack") or {}).values()]
    for u in units[:-1]:
        if any(p == u or p.startswith(u + ".") for p in paths):
            return u
    return ""


def _quantize(ep, wrapper, example, calibration, encoder: str, scheme: str = "auto",
              other_tower=None, target_cosine: float = INT8_TARGET_COSINE, dynamic=None):
    """Quantize the (rewritten) exported program with the XNNPACK quantizer and re-export it.

    ``scheme`` "auto" is static for image towers and dynamic for text towers (static activation
    ranges from 8 captions do not cover the attention outliers). Mixed precision by measured
    sensitivity: the whole encoder is tried first; if its PyTorch simulation (the converted model)
    keeps less than ``target_cosine`` against the float wrapper on the calibration rows, each unit
    (:func:`_units`) is quantized alone, and units join in order of their error while the summed error
    stays within the budget (checked by one more trial, dropping the last unit until it holds; the
    trial also keeps the zero-shot top-1 agreement >= 99 % against ``other_tower``). The rest stays
    float32 inside the same XNNPACK delegate. Returns (program, info)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from clipdeploy.latency.parity import measure

    if scheme == "auto":
        scheme = "static" if encoder == "image" else "dynamic"
    if scheme not in INT8_SCHEMES:
        raise ValueError(f"int8 scheme must be one of {INT8_SCHEMES} or 'auto', got {scheme!r}")
    rows = np.asarray(calibration if calibration is not None else example.numpy())
    dtype = torch.int32 if encoder == "text" else torch.float32
    rows = [torch.from_numpy(np.ascontiguousarray(r[None])).to(dtype) for r in rows]
    with torch.no_grad():
        ref = np.concatenate([wrapper(r).numpy() for r in rows])
    units = _units(wrapper)
    t0 = time.perf_counter()
    trials = []

    def trial(chosen):
        chosen = frozenset(chosen)
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True, is_dynamic=scheme == "dynamic"))
        if len(chosen) < len(units):
            quantizer.set_filter_function(lambda n: _unit_of(n, units) in chosen)
        prepared = prepare_pt2e(ep.module(), quantizer)
        with torch.no_grad():
            for r in rows:
                prepared(r)
            converted = convert_pt2e(prepared)
            got = np.concatenate([converted(r).numpy() for r in rows])
        # zero-shot agreement against the other tower's reference embeddings when the pipeline gives
        # them (the gate's measure), else self-retrieval among the calibration rows
        fig = measure(ref, got, ref if other_tower is None else other_tower)
        trials.append({"units": len(chosen), "cosine_min": round(fig["cosine_min"], 6)})
        return converted, fig

    def ok(fig):
        return fig["cosine_min"] >= target_cosine and fig["zero_shot_agreement"] >= 0.99

    converted, fig = trial(units)
    chosen = list(units)
    if not ok(fig):
        errors = {}
        for u in units:
            errors[u] = 1.0 - trial([u])[1]["cosine_min"]
        chosen, spent = [], 0.0
        for u in sorted(units, key=lambda u: errors[u]):
            if spent + errors[u] <= 1.0 - target_cosine:
                chosen.append(u)
                spent += errors[u]
        if not chosen:                 # nothing fits: the least sensitive unit (the gate decides)
            chosen = [min(units, key=lambda u: errors[u])]
        converted, fig = trial(chosen)
        while not ok(fig) and len(chosen) > 1:
            chosen.pop()
            converted, fig = trial(chosen)
    with torch.no_grad():
        qep = torch.export.export(converted, (example,), dynamic_shapes=(dynamic,) if dynamic else None)
    return qep, {"scheme": scheme, "quantizer": "XNNPACKQuantizer (per-channel symmetric int8 weights)",
                 "calibration_rows": len(rows) if scheme == "static" else 0,
                 "units_quantized": len(chosen), "units_total": len(units),
                 "float32_units": [u or "(rest)" for u in units if u not in chosen],
                 "simulated_cosine_min": fig["cosine_min"], "target_cosine": target_cosine,
                 "trials": trials, "seconds": round(time.perf_counter() - t0, 2)}


# ---------------------------------------------------------------------------------------------------
# runtime

_PROGRAMS_LOADED = False


def _runtime(threads: Optional[int]):
    """The executorch runtime; sizes XNNPACK's thread pool once, before any program is loaded
    (resetting it with programs alive once hung a run)."""
    global _PROGRAMS_LOADED
    try:
        from executorch.runtime import Runtime
    except Exception as e:  # noqa: BLE001
        raise BackendUnavailable(f"executorch runtime unavailable: {e}") from e
    rt = Runtime.get()
    if threads and not _PROGRAMS_LOADED:
        from executorch.extension.pybindings import portable_lib
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(int(threads))
    _PROGRAMS_LOADED = True
    return rt


def thread_count() -> int:
    from executorch.extension.pybindings import portable_lib
    return int(portable_lib._threadpool_get_thread_count())


def _write(buffer: bytes, out_path: Path) -> None:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(buffer)


# ---------------------------------------------------------------------------------------------------

class ExecuTorchBackend(Backend):
    name = "executorch"
    extension = ".pte"
    precisions = ("fp32", "int8")
    can_run_here = True

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads

    def check_available(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BackendUnavailable(
                f"executorch (XNNPACK) writes fp32 or int8 here; precision {precision!r} is not "
                f"supported (use executorch-coreml for fp16)")
        try:
            import executorch.exir  # noqa: F401
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
        except Exception as e:  # noqa: BLE001
            raise BackendUnavailable(f"executorch/XNNPACK not importable: {e}") from e

    def export(self, wrapper: nn.Module, example: torch.Tensor, encoder: str, precision: str,
               out_path: Path, spec=None, options: Optional[dict] = None) -> ExportResult:
        self.check_available(precision)
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        options = dict(options or {})
        # a classifier (clipdeploy.export.classifier) is an image model whose output is "logits"
        out_name = "logits" if encoder == "classifier" else OUTPUT
        encoder = "image" if encoder == "classifier" else encoder
        out_path = Path(out_path)
        t0 = time.perf_counter()
        rewrite = options.get("rewrite", True)
        banded = 0
        if rewrite:
            wrapper, banded = split_large_depthwise(wrapper)
            wrapper, _ = rewrite_attention_pools(wrapper)
        shapes = options.get("shapes")
        ep, example, name = _export(wrapper, example, encoder, shapes)
        inputs, outputs = _io(ep, example, name, shapes)
        outputs[0]["name"] = out_name
        t_export = time.perf_counter() - t0
        if rewrite:
            ep = xnnpack_friendly(ep)
        quant = None
        if precision == "int8":
            ep, quant = _quantize(ep, wrapper, example, options.get("calibration"), encoder,
                                  options.get("int8_scheme", "auto"), options.get("other_tower"),
                                  dynamic=_dynamic_shapes(example, encoder, shapes)[0])
        t1 = time.perf_counter()
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        t_lower = time.perf_counter() - t1
        figures = delegation_figures(edge.exported_program())
        if figures["partitions"] == 0:
            raise NotDelegated(f"{encoder} encoder: XNNPACK took no part of the graph; refusing to write "
                               f"an undelegated .pte (ops: {figures['ops_outside']})")
        if figures["compute_ops_outside"] and not options.get("allow_fallback", False):
            raise NotDelegated(
                f"{encoder} encoder: compute ops outside the XNNPACK delegate would run on portable kernels "
                f"{figures['compute_ops_outside']}; refusing to write the .pte (rewrite the op into ones "
                f"XNNPACK takes, see executorch_backend's rewrites)")
        t2 = time.perf_counter()
        et = edge.to_executorch()
        buffer = et.buffer
        t_serialize = time.perf_counter() - t2
        _write(buffer, out_path)
        import executorch
        info = {
            "delegate": "XnnpackBackend",
            "executorch_version": getattr(executorch, "__version__", None) or _dist_version("executorch"),
            "torch_version": torch.__version__,
            "static_batch": None if (shapes or {}).get("batch", {}).get("kind") == "dynamic" else 1,
            "rewrite": bool(rewrite),
            "banded_depthwise_convs": banded,
            "delegation": figures,
            "size_bytes": out_path.stat().st_size,
            "times_s": {"export": round(t_export, 2), "lower": round(t_lower, 2),
                        "to_executorch": round(t_serialize, 2)},
        }
        if quant:
            info["int8"] = quant
        return ExportResult(path=out_path, files=[out_path.name], inputs=inputs, outputs=outputs, info=info)

    def open(self, path: Path):
        method = _runtime(self.threads).load_program(Path(path)).load_method("forward")
        return lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0]

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        rt = _runtime(self.threads)
        program = rt.load_program(Path(path))
        method = program.load_method("forward")
        if method is None:
            raise RuntimeError(f"{path}: no 'forward' method")
        inputs = np.asarray(inputs)
        dtype = np.int32 if inputs.dtype.kind in "iu" else np.float32
        rows = []
        for i in range(len(inputs)):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i:i + 1], dtype=dtype))
            out = method.execute([x])
            y = out[0] if isinstance(out, (list, tuple)) else out
            rows.append(np.asarray(y.detach().numpy() if isinstance(y, torch.Tensor) else y,
                                   dtype=np.float32).reshape(1, -1))
        return np.concatenate(rows, 0) if rows else np.zeros((0, 0), np.float32)


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------------------

_IOS = {16: "iOS16", 17: "iOS17", 18: "iOS18"}
_COREML_BACKEND_ID = "CoreMLBackend"


class ExecuTorchCoreMLBackend(Backend):
    name = "executorch-coreml"
    extension = ".pte"
    precisions = ("fp16", "fp32")
    can_run_here = sys.platform == "darwin"   # the CoreML delegate runs only on Apple platforms
    reference_runtime = ("clipdeploy Core ML reference interpreter on the delegate's ML Program "
                         "(clipdeploy.latency.coreml_ref); not Apple's kernels")

    def check_available(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BackendUnavailable(f"executorch-coreml writes fp16 or fp32, not {precision!r}")
        try:
            import coremltools  # noqa: F401
            from executorch.backends.apple.coreml.partition import CoreMLPartitioner  # noqa: F401
        except Exception as e:  # noqa: BLE001
            raise BackendUnavailable(f"executorch Core ML delegate not importable: {e}") from e

    def export(self, wrapper: nn.Module, example: torch.Tensor, encoder: str, precision: str,
               out_path: Path, spec=None, options: Optional[dict] = None) -> ExportResult:
        self.check_available(precision)
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner
        from executorch.exir import to_edge_transform_and_lower

        options = dict(options or {})
        ios = int(options.get("ios", 17))
        if ios not in _IOS:
            raise ValueError(f"options['ios'] must be one of {sorted(_IOS)}, got {ios}")
        target = getattr(ct.target, _IOS[ios])
        cprec = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
        out_path = Path(out_path)
        t0 = time.perf_counter()
        ep, example, name = _export(wrapper, example, encoder)
        inputs, outputs = _io(ep, example, name)
        t_export = time.perf_counter() - t0
        specs = CoreMLBackend.generate_compile_specs(
            compute_unit=ct.ComputeUnit.ALL, minimum_deployment_target=target, compute_precision=cprec)
        t1 = time.perf_counter()
        edge = to_edge_transform_and_lower(ep, partitioner=[CoreMLPartitioner(compile_specs=specs)])
        t_lower = time.perf_counter() - t1
        figures = delegation_figures(edge.exported_program())
        if figures["partitions"] == 0:
            raise NotDelegated(f"{encoder} encoder: Core ML took no part of the graph; refusing to write "
                               f"an undelegated .pte (ops: {figures['ops_outside']})")
        t2 = time.perf_counter()
        buffer = edge.to_executorch().buffer
        t_serialize = time.perf_counter() - t2
        _write(buffer, out_path)
        info = {
            "delegate": _COREML_BACKEND_ID,
            "minimum_deployment_target": _IOS[ios],
            "compute_precision": precision,
            "executorch_version": _dist_version("executorch"),
            "coremltools_version": ct.__version__,
            "static_batch": 1,
            "delegation": figures,
            "size_bytes": out_path.stat().st_size,
            "times_s": {"export": round(t_export, 2), "lower": round(t_lower, 2),
                        "to_executorch": round(t_serialize, 2)},
            "runs_on": "Apple platforms only (iOS/macOS executorch runtime with the CoreML backend)",
        }
        return ExportResult(path=out_path, files=[out_path.name], inputs=inputs, outputs=outputs, info=info)

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        raise BackendUnavailable(
            "executorch-coreml: a Core ML-delegated .pte runs only on Apple platforms (iOS/macOS "
            "executorch runtime with the CoreML backend); use structural_check() here")

    def reference_run(self, path: Path, inputs: np.ndarray) -> tuple:
        """The Core ML model inside the .pte, through the Core ML reference interpreter. Only a program
        that is one Core ML delegate end to end can be evaluated this way (nothing runs outside it)."""
        import tempfile

        from clipdeploy.latency.pte_coreml import extract_coreml_from_pte
        from clipdeploy.latency.coreml_ref import evaluate
        found = structural_check(path)
        if found["coreml_delegates"] != 1 or found["operators_outside"]:
            raise BackendUnavailable(
                f"executorch-coreml: {Path(path).name} has {found['coreml_delegates']} Core ML delegates and "
                f"ops outside them {found['operators_outside']}; only a fully delegated program can be "
                f"evaluated by the reference interpreter")
        with tempfile.TemporaryDirectory(prefix="pte-coreml-") as d:
            (pkg,) = extract_coreml_from_pte(path, d)
            got, info = evaluate(pkg, np.asarray(inputs))
        info["extracted_from"] = "the .pte's CoreMLBackend delegate payload"
        return got, info

    def structural_check(self, path: Path) -> dict:
        return structural_check(path)


def structural_check(path: Path) -> dict:
    """Deserialize a ``.pte`` and report its delegates; raise ValueError if it holds no Core ML
    delegate. Returns {"methods", "delegates": [{"id", "compile_specs", "payload_bytes"}],
    "coreml_delegates", "operators_outside", "inputs", "outputs"}."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DataLocation

    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:6] != b"ET":
        raise ValueError(f"{path}: not an ExecuTorch program (file identifier {data[4:8]!r})")
    pte = deserialize_pte_binary(data)
    prog = pte.program
    delegates, methods, ops = [], [], []
    for plan in prog.execution_plan:
        methods.append(plan.name)
        ops += [f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators]
        for d in plan.delegates:
            specs = {}
            for cs in d.compile_specs:
                try:
                    specs[cs.key] = bytes(cs.value).decode("utf-8")
                except UnicodeDecodeError:
                    specs[cs.key] = f"<{len(cs.value)} bytes>"
            size = None
            if d.processed.location == DataLocation.INLINE and d.processed.index < len(prog.backend_delegate_data):
                size = len(prog.backend_delegate_data[d.processed.index].data)
            elif d.processed.location == DataLocation.SEGMENT and d.processed.index < len(prog.segments):
                size = int(prog.segments[d.processed.index].size)
            entry = {"method": plan.name, "id": d.id, "compile_specs": specs, "payload_bytes": size}
            target = specs.get("min_deployment_target")
            if d.id == _COREML_BACKEND_ID and target and target.isdigit():
                try:
                    import coremltools as ct
                    entry["minimum_deployment_target"] = ct.target(int(target)).name
                except Exception:  # noqa: BLE001
                    pass
            delegates.append(entry)
    coreml = [d for d in delegates if d["id"] == _COREML_BACKEND_ID]
    result = {
        "path": str(path),
        "size_bytes": len(data),
        "methods": methods,
        "delegates": delegates,
        "coreml_delegates": len(coreml),
        "operators_outside": sorted(set(ops)),
        "has_coreml_delegate": bool(coreml),
    }
    if not coreml:
        raise ValueError(f"{path}: no CoreMLBackend delegate in the program "
                         f"(delegates: {[d['id'] for d in delegates]})")
    if any(not d["payload_bytes"] for d in coreml):
        raise ValueError(f"{path}: a CoreMLBackend delegate has an empty payload")
    return result
