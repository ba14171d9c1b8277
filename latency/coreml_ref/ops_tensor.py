"""Shape and data-movement ops: transpose, reshape, expand/squeeze, slices, concat/stack/split, tile,
pad, and the gathers (with their per-opset parameter tables)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .opdef import _axis
from .types import _Op


# ---- tensor ops ----------------------------------------------------------------------------------

def _c_transpose(c):
    perm = c.ints("perm")
    return lambda a, pess: a["x"].permute(perm)


def _c_reshape(c):
    shape = c.ints("shape")
    ios = c.ios
    op = c.op

    def run(a, pess):
        x = a["x"]
        xs = list(x.shape)
        tgt = list(shape)
        if 0 in tgt:
            if ios >= 17:        # iOS17: 0 copies the dim aligned from the right, 1 if out of range
                for i, v in enumerate(tgt):
                    if v == 0:
                        j = len(xs) - (len(tgt) - i)
                        tgt[i] = xs[j] if j >= 0 else 1
            else:                # iOS15/16: 0 copies the same position; len(shape) == rank(x)
                if len(tgt) != len(xs):
                    raise op.error(f"shape {shape} has a 0 but a length different from rank {len(xs)}")
                tgt = [xs[i] if v == 0 else v for i, v in enumerate(tgt)]
        if sum(1 for v in tgt if v == -1) > 1 or any(v < -1 for v in tgt):
            raise op.error(f"invalid shape {shape}")
        return x.reshape(tgt)
    return run


def _c_expand_dims(c):
    axes = c.ints("axes")

    def run(a, pess):
        x = a["x"]
        r = x.dim() + len(axes)
        norm = sorted(_axis(ax, r, c.op) for ax in axes)
        if len(set(norm)) != len(norm):
            raise c.op.error(f"repeated axes {axes}")
        for ax in norm:
            x = x.unsqueeze(ax)
        return x
    return run


def _c_squeeze(c):
    axes = c.ints("axes", None)

    def run(a, pess):
        x = a["x"]
        if axes is None:
            return x.reshape([d for d in x.shape if d != 1])
        norm = sorted({_axis(ax, x.dim(), c.op) for ax in axes})
        for ax in norm:
            if x.shape[ax] != 1:
                raise c.op.error(f"cannot squeeze axis {ax} of size {x.shape[ax]}")
        return x.reshape([d for i, d in enumerate(x.shape) if i not in norm])
    return run


def _c_slice_by_index(c):
    op = c.op
    begin = c.ints("begin") if c.is_const("begin") else None
    end = c.ints("end") if c.is_const("end") else None
    if begin is None or end is None:
        raise op.unsupported("non-constant begin/end are not supported")
    stride = c.ints("stride", None)
    bm, em, sm = c.bools("begin_mask", None), c.bools("end_mask", None), c.bools("squeeze_mask", None)

    def run(a, pess):
        x = a["x"]
        r = x.dim()
        for nm, v in (("begin", begin), ("end", end), ("stride", stride), ("begin_mask", bm),
                      ("end_mask", em), ("squeeze_mask", sm)):
            if v is not None and len(v) != r:
                raise op.error(f"{nm} has {len(v)} entries for a rank-{r} input")
        squeeze = []
        for d in range(r):
            n = x.shape[d]
            s = 1 if stride is None else stride[d]
            if s == 0:
                raise op.error("stride 0")
            b = None if (bm and bm[d]) else begin[d]
            e = None if (em and em[d]) else end[d]
            if sm and sm[d]:
                i = begin[d] + n if begin[d] < 0 else begin[d]
                if not 0 <= i < n:
                    raise op.error(f"squeezed index {begin[d]} out of range for dim {d} of size {n}")
                x = x.narrow(d, i, 1)
                squeeze.append(d)
                continue
            start, stop, step = slice(b, e, s).indices(n)
            idx = range(start, stop, step)
            if step == 1:
                x = x.narrow(d, start, len(idx))
            elif step > 0:
                x = x[(slice(None),) * d + (slice(start, stop, step),)]
            else:
                x = x.index_select(d, torch.tensor(list(idx), dtype=torch.long))
        if squeeze:
            x = x.reshape([s for i, s in enumerate(x.shape) if i not in squeeze])
        return x
    return run


def _c_slice_by_size(c):
    begin = c.ints("begin")
    size = c.ints("size")

    def run(a, pess):
        x = a["x"]
        for d, (b, s) in enumerate(zip(begin, size)):
            n = x.shape[d]
            b = b + n if b < 0 else b
            s = n - b if s == -1 else s
            if b < 0 or s < 0 or b + s > n:
                raise c.op.error(f"slice begin {begin} size {size} out of range for {tuple(x.shape)}")
            x = x.narrow(d, b, s)
        return x
    return run


def _c_concat(c):
    axis = c.int("axis")
    inter = c.bool("interleave", False)

    def run(a, pess):
        vals = a["values"]
        ax = _axis(axis, vals[0].dim(), c.op)
        if not inter:
            return torch.cat(vals, ax)
        if len({v.shape[ax] for v in vals}) != 1:
            raise c.op.error("interleave needs equal sizes along the axis")
        st = torch.stack(vals, ax + 1)
        shp = list(vals[0].shape)
        shp[ax] *= len(vals)
        return st.reshape(shp)
    return run


def _c_stack(c):
    axis = c.int("axis")

    def run(a, pess):
        vals = a["values"]
        return torch.stack(vals, _axis(axis, vals[0].dim() + 1, c.op))
    return run


def _c_split(c):
    axis = c.int("axis")
    sizes = c.ints("split_sizes", None)
    num = c.int("num_splits", None) if c.has("num_splits") else None
    if (sizes is None) == (num is None):
        raise c.op.error("exactly one of num_splits / split_sizes must be given")
    nout = len(c.op.outputs)

    def run(a, pess):
        x = a["x"]
        ax = _axis(axis, x.dim(), c.op)
        n = x.shape[ax]
        if sizes is not None:
            sz = list(sizes)
            if sum(sz) != n:
                raise c.op.error(f"split_sizes {sz} do not add up to {n}")
        else:
            if num != nout:
                raise c.op.error(f"num_splits {num} but {nout} outputs")
            if n % num:
                raise c.op.error(f"size {n} not divisible by num_splits {num}")
            sz = [n // num] * num
        return list(torch.split(x, sz, ax))
    return run


def _c_tile(c):
    reps = c.ints("reps")

    def run(a, pess):
        x = a["x"]
        if len(reps) != x.dim():
            raise c.op.error(f"reps {reps} length differs from rank {x.dim()}")
        return x.repeat(reps)
    return run


def _c_pad(c):
    pad = c.ints("pad")
    mode = c.str("mode", "constant", choices=("constant", "reflect", "replicate"))
    val = c.float("constant_val", 0.0)
    if len(pad) % 2:
        raise c.op.error(f"pad {pad} has odd length")

    def run(a, pess):
        x = a["x"]
        n = len(pad) // 2
        if n > x.dim():
            raise c.op.error(f"pad covers {n} dims of a rank-{x.dim()} input")
        tp = []
        for i in reversed(range(n)):            # MIL: forward order over the last n dims
            tp += [pad[2 * i], pad[2 * i + 1]]
        if mode == "constant":
            return F.pad(x, tp, value=val)
        if n > 3:
            raise c.op.unsupported(f"{mode} padding of {n} dims")
        lead = x.shape[:x.dim() - n]
        y = F.pad(x.reshape(1, -1, *x.shape[x.dim() - n:]), tp, mode=mode)
        return y.reshape(*lead, *y.shape[2:])
    return run


# ---- gather --------------------------------------------------------------------------------------

def _norm_indices(idx: torch.Tensor, n: int, ios: int, op: _Op) -> torch.Tensor:
    idx = idx.to(torch.long)
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if hi >= n or lo < -n or (lo < 0 and ios >= 17):
            raise op.error(f"gather index out of range [{lo}, {hi}] for a dimension of size {n}"
                           + (" (negative indices are out of bounds from iOS17 on)" if lo < 0 else ""))
        if lo < 0:
            idx = torch.where(idx < 0, idx + n, idx)
    return idx


def _c_gather(c):
    axis = c.int("axis", 0)
    bd = c.int("batch_dims", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def g(x, idx, ax, bdims):
        if bdims == 0:
            flat = _norm_indices(idx.reshape(-1), x.shape[ax], ios, op)
            y = x.index_select(ax, flat)
            return y.reshape(*x.shape[:ax], *idx.shape, *x.shape[ax + 1:])
        if x.shape[0] != idx.shape[0]:
            raise op.error("batch dims of x and indices differ")
        return torch.stack([g(x[i], idx[i], ax - 1, bdims - 1) for i in range(x.shape[0])])

    def run(a, pess):
        x, idx = a["x"], a["indices"]
        ax = _axis(axis, x.dim(), op)
        if bd < 0 or bd > ax:
            raise op.error(f"batch_dims {bd} invalid for axis {ax}")
        return g(x, idx, ax, bd)
    return run


def _c_gather_along_axis(c):
    axis = c.int("axis", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def run(a, pess):
        x, idx = a["x"], a["indices"]
        ax = _axis(axis, x.dim(), op)
        if idx.dim() != x.dim() or any(i != j for d, (i, j) in enumerate(zip(idx.shape, x.shape)) if d != ax):
            raise op.error(f"indices {tuple(idx.shape)} do not match x {tuple(x.shape)} off axis {ax}")
        return torch.gather(x, ax, _norm_indices(idx, x.shape[ax], ios, op))
    return run


def _c_gather_nd(c):
    bd = c.int("batch_dims", 0)
    c.bool("validate_indices", False)
    op, ios = c.op, c.ios

    def g(x, idx, bdims):
        if bdims:
            return torch.stack([g(x[i], idx[i], bdims - 1) for i in range(x.shape[0])])
        k = idx.shape[-1]
        if k > x.dim():
            raise op.error(f"indices last dim {k} > rank {x.dim()}")
        flat = idx.reshape(-1, k)
        cols = tuple(_norm_indices(flat[:, j], x.shape[j], ios, op) for j in range(k))
        y = x[cols]
        return y.reshape(*idx.shape[:-1], *x.shape[k:])

    return lambda a, pess: g(a["x"], a["indices"], bd)


def _gather_params(ios):
    t = {"x": True, "indices": True, "axis": False}
    if ios >= 16:
        t["batch_dims"] = False
    if ios >= 17:
        t["validate_indices"] = False
    return t


def _gather_nd_params(ios):
    t = {"x": True, "indices": True}
    if ios >= 16:
        t["batch_dims"] = False
    if ios >= 17:
        t["validate_indices"] = False
    return t


def _gather_axis_params(ios):
    t = {"x": True, "indices": True, "axis": False}
    if ios >= 17:
        t["validate_indices"] = False
    return t
