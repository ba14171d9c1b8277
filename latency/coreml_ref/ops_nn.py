"""Linear algebra and network layers: linear, matmul, conv, pooling, batch/layer norm, softmax and
scaled dot-product attention, each with its fp16-accumulation (``pessimistic``) variant."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .opdef import _axis
from .types import FP16_ACC_CHUNK, _f16


# ---- linear algebra ------------------------------------------------------------------------------

def _mm_pess(x, y):
    """fp16-accumulated matmul: chunks of K in fp32, rounded, accumulated in fp16."""
    k = x.shape[-1]
    acc = None
    for k0 in range(0, k, FP16_ACC_CHUNK):
        part = _f16(torch.matmul(x[..., k0:k0 + FP16_ACC_CHUNK], y[..., k0:k0 + FP16_ACC_CHUNK, :]))
        acc = part if acc is None else _f16(acc + part)
    return acc


def _c_linear(c):
    def run(a, pess):
        x, w, b = a["x"], a["weight"], a.get("bias")
        if w.dim() != 2 or x.shape[-1] != w.shape[1]:
            raise c.op.error(f"x {tuple(x.shape)} and weight {tuple(w.shape)} do not match")
        if pess and c.fp16:
            y = _mm_pess(x, w.t())
            return y if b is None else _f16(y + b)
        return F.linear(x, w, b)
    return run


def _c_matmul(c):
    tx, ty = c.bool("transpose_x", False), c.bool("transpose_y", False)

    def run(a, pess):
        x, y = a["x"], a["y"]
        if tx and x.dim() >= 2:
            x = x.transpose(-1, -2)
        if ty and y.dim() >= 2:
            y = y.transpose(-1, -2)
        if pess and c.fp16 and x.dim() >= 2 and y.dim() >= 2:
            return _mm_pess(x, y)
        return torch.matmul(x, y)
    return run


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_PAD_TYPES = ("valid", "same", "same_lower", "custom")


def _spatial_pads(op, pad_type, pad, in_sp, k_eff, strides):
    """[(before, after)] per spatial dim, following MIL's aggregated_pad."""
    n = len(k_eff)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    out = []
    for i, k, s in zip(in_sp, k_eff, strides):
        total = max(0, s * math.ceil(i / s) - i + k - s)
        small, big = total // 2, total - total // 2
        out.append((small, big) if pad_type == "same" else (big, small))
    return out


def _c_conv(c):
    wt = c.in_type("weight")
    if wt.shape is None or len(wt.shape) not in (3, 4, 5):
        raise c.op.unsupported(f"weight of type {wt} (1-3 spatial dims supported)")
    n = len(wt.shape) - 2
    strides = c.ints("strides", [1] * n, length=n)
    dil = c.ints("dilations", [1] * n, length=n)
    groups = c.int("groups", 1)
    pad_type = c.str("pad_type", "valid", choices=_PAD_TYPES)
    pad = c.ints("pad", [0] * 2 * n, length=2 * n)
    conv = _CONV[n]
    op = c.op

    def run(a, pess):
        x, w, b = a["x"], a["weight"], a.get("bias")
        if x.dim() != n + 2 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
            raise op.error(f"x {tuple(x.shape)}, weight {tuple(w.shape)}, groups {groups} do not match")
        k_eff = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]
        pads = _spatial_pads(op, pad_type, pad, x.shape[2:], k_eff, strides)
        if all(p0 == p1 for p0, p1 in pads):
            padding = [p0 for p0, _ in pads]
        else:
            tp = []
            for p0, p1 in reversed(pads):
                tp += [p0, p1]
            x = F.pad(x, tp)
            padding = [0] * n
        if not (pess and c.fp16):
            return conv(x, w, b, strides, padding, dil, groups)
        cin = w.shape[1]
        acc = None
        for c0 in range(0, cin, FP16_ACC_CHUNK):
            c1 = min(cin, c0 + FP16_ACC_CHUNK)
            if groups == 1:
                xs = x[:, c0:c1]
            else:
                xs = x.reshape(x.shape[0], groups, cin, *x.shape[2:])[:, :, c0:c1].reshape(
                    x.shape[0], groups * (c1 - c0), *x.shape[2:])
            part = _f16(conv(xs, w[:, c0:c1], None, strides, padding, dil, groups))
            acc = part if acc is None else _f16(acc + part)
        if b is not None:
            acc = _f16(acc + b.reshape(1, -1, *([1] * n)))
        return acc
    return run


def _c_pool(kind):
    def comp(c):
        ks = c.ints("kernel_sizes")
        n = len(ks)
        strides = c.ints("strides", [1] * n, length=n)
        pad_type = c.str("pad_type", choices=_PAD_TYPES)
        pad = c.ints("pad", [0] * 2 * n, length=2 * n)
        ceil = c.bool("ceil_mode", False)
        excl = c.bool("exclude_padding_from_average", False) if kind == "avg" else False
        op = c.op

        def run(a, pess):
            x = a["x"]
            if x.dim() != n + 2:
                raise op.error(f"input rank {x.dim()} for {n} kernel dims")
            sp = list(x.shape[2:])
            pads = _spatial_pads(op, pad_type, pad, sp, ks, strides)
            outs, extra = [], []
            for i, k, s, (p0, p1) in zip(sp, ks, strides, pads):
                span = i + p0 + p1 - k
                o = (span + (s - 1 if ceil else 0)) // s + 1
                if ceil and (o - 1) * s >= i + p0 and (p0 > 0 or p1 > 0):
                    o -= 1
                outs.append(o)
                extra.append(max(0, (o - 1) * s + k - (i + p0 + p1)))   # ceil-mode overhang
            tp, tp_extra = [], []
            for (p0, p1), e in zip(reversed(pads), reversed(extra)):
                tp += [p0, p1]
                tp_extra += [0, e]
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n] if kind == "max" else \
                {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
            if kind == "max":
                xp = F.pad(F.pad(x, tp, value=-math.inf), tp_extra, value=-math.inf)
                return pool(xp, ks, strides)
            xp = F.pad(F.pad(x, tp, value=0.0), tp_extra, value=0.0)
            ssum = pool(xp, ks, strides, divisor_override=1) if n > 1 else \
                pool(xp, ks, strides) * ks[0]
            ones = torch.ones((1, 1, *sp), dtype=x.dtype)
            if excl:
                mask = F.pad(F.pad(ones, tp, value=0.0), tp_extra, value=0.0)
            else:
                mask = F.pad(F.pad(ones, tp, value=1.0), tp_extra, value=0.0)
            cnt = pool(mask, ks, strides, divisor_override=1) if n > 1 else pool(mask, ks, strides) * ks[0]
            return ssum / cnt
        return run
    return comp


# ---- normalization / softmax / attention ---------------------------------------------------------

def _c_batch_norm(c):
    eps = c.float("epsilon", 1e-5)

    def run(a, pess):
        x, m, v = a["x"], a["mean"], a["variance"]
        g, b = a.get("gamma"), a.get("beta")
        if x.dim() < 2:
            raise c.op.error(f"rank {x.dim()} input")
        if not (pess and c.fp16):
            return F.batch_norm(x, m.reshape(-1), v.reshape(-1), None if g is None else g.reshape(-1),
                                None if b is None else b.reshape(-1), False, 0.0, eps)
        shp = (1, -1) + (1,) * (x.dim() - 2)
        y = _f16(_f16(x - m.reshape(shp)) * _f16(torch.rsqrt(v.reshape(shp) + eps)))
        if g is not None:
            y = _f16(y * g.reshape(shp))
        if b is not None:
            y = y + b.reshape(shp)
        return y
    return run


def _c_layer_norm(c):
    axes = c.ints("axes", None)
    eps = c.float("epsilon", 1e-5)

    def run(a, pess):
        x, g, b = a["x"], a.get("gamma"), a.get("beta")
        r = x.dim()
        ax = list(range(r)) if axes is None else sorted(_axis(i, r, c.op) for i in axes)
        shp = [x.shape[i] for i in ax]
        for nm, t in (("gamma", g), ("beta", b)):
            if t is not None and list(t.shape) != shp:
                raise c.op.error(f"{nm} shape {tuple(t.shape)} != normalized shape {tuple(shp)}")
        trailing = ax == list(range(r - len(ax), r))
        if trailing and not (pess and c.fp16):
            return F.layer_norm(x, shp, g, b, eps)
        bshape = [x.shape[i] if i in ax else 1 for i in range(r)]
        if not (pess and c.fp16):
            mean = x.mean(ax, keepdim=True)
            d = x - mean
            var = (d * d).mean(ax, keepdim=True)
            y = d * torch.rsqrt(var + eps)
            if g is not None:
                y = y * g.reshape(bshape)
            return y if b is None else y + b.reshape(bshape)
        mean = _f16(x.mean(ax, keepdim=True))
        d = _f16(x - mean)
        var = _f16(_f16(d * d).mean(ax, keepdim=True))
        y = _f16(d * _f16(torch.rsqrt(var + eps)))
        if g is not None:
            y = _f16(y * g.reshape(bshape))
        return y if b is None else y + b.reshape(bshape)
    return run


def _softmax(x, ax, pess):
    if not pess:
        return torch.softmax(x, ax)
    z = _f16(x - x.amax(ax, keepdim=True))
    e = _f16(torch.exp(z))
    return e / _f16(e.sum(ax, keepdim=True))


def _c_softmax(c):
    axis = c.int("axis", -1)
    return lambda a, pess: _softmax(a["x"], _axis(axis, a["x"].dim(), c.op), pess and c.fp16)


def _c_sdpa(c):
    def run(a, pess):
        q, k, v, m = a["query"], a["key"], a["value"], a.get("attn_mask")
        if q.dim() < 3 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise c.op.error(f"query {tuple(q.shape)}, key {tuple(k.shape)}, value {tuple(v.shape)} mismatch")
        scale = 1.0 / math.sqrt(q.shape[-1])
        p16 = pess and c.fp16
        kt = k.transpose(-1, -2)
        s = _f16(_mm_pess(q, kt) * scale) if p16 else torch.matmul(q, kt) * scale
        if m is not None:
            if m.dtype == torch.bool:
                s = s.masked_fill(~m, -math.inf)
            else:
                s = s + m
                if p16:
                    s = _f16(s)
        p = _softmax(s, -1, p16)
        return _mm_pess(p, v) if p16 else torch.matmul(p, v)
    return run
