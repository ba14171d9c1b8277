"""Weight-decompression ops (``constexpr_*``), evaluated once at load time: affine dequantization, cast,
look-up-table palettes, sparse masks, blockwise shift/scale, and their iOS18 joint forms."""
from __future__ import annotations

import math

import numpy as np
import torch

from .opdef import _axis
from .types import _DTYPE_STR, _NP_DTYPE, _unpack_bits


# ---- constexpr (weight decompression, evaluated once at load) ------------------------------------

def _np_const(c, p):
    v = c.const(p)
    if isinstance(v, str):
        raise c.op.error(f"parameter {p!r} must be a tensor")
    return np.asarray(v)


def _c_affine_dequantize(c):
    q, zp, sc = _np_const(c, "quantized_data"), _np_const(c, "zero_point"), _np_const(c, "scale")
    axis = c.int("axis")
    ax = _axis(axis, q.ndim, c.op)

    def promote(p, nm):
        if p.ndim == 0:
            return p.reshape([1] * q.ndim)
        if p.ndim != 1 or p.shape[0] != q.shape[ax]:
            raise c.op.error(f"{nm} of shape {p.shape} for data {q.shape} along axis {ax}")
        shp = [1] * q.ndim
        shp[ax] = -1
        return p.reshape(shp)
    out = (q.astype(np.float32) - promote(zp, "zero_point").astype(np.float32)) * \
        promote(sc, "scale").astype(np.float32)
    return lambda a, pess: torch.from_numpy(out.astype(sc.dtype))


def _c_constexpr_cast(c):
    v = _np_const(c, "source_val")
    s = c.str("output_dtype", choices=("fp16", "fp32"))
    want = _DTYPE_STR[s]
    if c.out_type().dtype != want:
        raise c.op.error(f"output_dtype {s} but the output is declared {c.out_type().dtype}")
    return lambda a, pess: torch.from_numpy(v.astype(_NP_DTYPE[want]))


def _block_repeat(p, shape, c, nm):
    if p.ndim != len(shape):
        raise c.op.error(f"{nm} rank {p.ndim} != data rank {len(shape)}")
    for ax, (d, s) in enumerate(zip(shape, p.shape)):
        if s == 0 or d % s:
            raise c.op.error(f"{nm} shape {p.shape} does not tile data shape {tuple(shape)}")
        if d // s > 1:
            p = np.repeat(p, d // s, axis=ax)
    return p


_IDX_BITS = {"UINT1": 1, "UINT2": 2, "UINT3": 3, "UINT4": 4, "UINT6": 6, "UINT8": 8}


def _lut_dense(c, idx: np.ndarray, lut: np.ndarray, va, idx_dtype: str) -> np.ndarray:
    """iOS18 LUT decompression: per-group palettes (block-tiled over the indices), vector entries
    filled along ``vector_axis``."""
    if lut.ndim != idx.ndim + 2:
        raise c.op.error(f"lut rank {lut.ndim} != indices rank {idx.ndim} + 2")
    npal, vs = lut.shape[-2], lut.shape[-1]
    bits = _IDX_BITS.get(idx_dtype)
    if bits is None or npal != (1 << bits):
        raise c.op.error(f"{npal} palettes for {idx_dtype} indices")
    if vs > 1:
        if va is None:
            raise c.op.error("vector_axis is required when the lut holds vectors")
        va = _axis(va, idx.ndim, c.op)
        idx = np.swapaxes(idx, -1, va)
        lut = np.swapaxes(lut, -3, va)
    groups = lut.shape[:-2]
    # group id of every element: block index along each axis, row-major over the group grid
    gid = np.zeros(idx.shape, np.int64)
    for ax, (d, g) in enumerate(zip(idx.shape, groups)):
        if d % g:
            raise c.op.error(f"lut groups {tuple(groups)} do not tile indices {idx.shape}")
        shp = [1] * idx.ndim
        shp[ax] = d
        gid = gid * g + (np.arange(d) // (d // g)).reshape(shp)
    table = np.ascontiguousarray(lut).reshape(-1, npal, vs)
    out = table[gid.reshape(-1), idx.reshape(-1).astype(np.int64)]          # [N, vs]
    if vs > 1:
        out = out.reshape(*idx.shape[:-1], idx.shape[-1] * vs)
        out = np.swapaxes(out, -1, va)
    else:
        out = out.reshape(idx.shape)
    return np.ascontiguousarray(out)


def _blockwise(c, data: np.ndarray, scale: np.ndarray, off) -> np.ndarray:
    """scale * (data - offset), scale/offset block-tiled over data (iOS18 blockwise_shift_scale)."""
    if off is not None and off.shape != scale.shape:
        raise c.op.error(f"offset shape {off.shape} != scale shape {scale.shape}")
    s = _block_repeat(scale, data.shape, c, "scale").astype(np.float32)
    d = data.astype(np.float32)
    if off is not None:
        d = d - _block_repeat(off, data.shape, c, "offset").astype(np.float32)
    return (s * d).astype(scale.dtype)


def _sparse_dense(c, nz: np.ndarray, bits: np.ndarray, shape) -> np.ndarray:
    pos = np.flatnonzero(bits.reshape(-1))
    if pos.size != nz.size:
        raise c.op.error(f"mask has {pos.size} set bits for {nz.size} non-zero values")
    out = np.zeros(int(np.prod(shape)), nz.dtype)
    out[pos] = nz.reshape(-1)
    return out.reshape(shape)


def _const_kernel(*arrays):
    ts = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return lambda a, pess: ts[0] if len(ts) == 1 else ts


def _c_lut_to_dense(c):
    lut = _np_const(c, "lut")
    if c.ios < 18:                                   # iOS16: packed uint8 indices + shape
        packed = _np_const(c, "indices")
        shape = [int(s) for s in _np_const(c, "shape").reshape(-1)]
        nbits = int(round(math.log2(lut.size)))
        if lut.ndim != 1 or (1 << nbits) != lut.size or nbits not in (1, 2, 4, 6, 8):
            raise c.op.error(f"lut of shape {lut.shape} (2/4/16/64/256 entries expected)")
        idx = _unpack_bits(packed, nbits, int(np.prod(shape)), False) if nbits < 8 else \
            packed.reshape(-1)[:int(np.prod(shape))]
        return _const_kernel(lut[idx.astype(np.int64)].reshape(shape))
    va = c.int("vector_axis", None) if c.has("vector_axis") else None
    return _const_kernel(_lut_dense(c, _np_const(c, "indices"), lut, va, c.in_type("indices").dtype))


def _c_blockwise_shift_scale(c):
    off = _np_const(c, "offset") if c.has("offset") else None
    return _const_kernel(_blockwise(c, _np_const(c, "data"), _np_const(c, "scale"), off))


def _c_sparse_to_dense(c):
    nz = _np_const(c, "nonzero_data")
    mask = _np_const(c, "mask")
    if c.ios < 18:                                   # iOS16: packed uint8 bit mask + shape
        shape = [int(s) for s in _np_const(c, "shape").reshape(-1)]
        bits = np.unpackbits(mask.astype(np.uint8), bitorder="little")[:int(np.prod(shape))]
    else:                                            # iOS18: a uint1 tensor of the dense shape
        shape, bits = list(mask.shape), mask
    return _const_kernel(_sparse_dense(c, nz, bits, shape))


def _c_lut_to_sparse(c):
    """(mask, nonzero data) of de-palettized sparse weights (joint pruning + palettization)."""
    mask = _np_const(c, "indices_mask")
    nz_idx = _np_const(c, "indices_nonzero_data")
    lut = _np_const(c, "lut")
    va = c.int("vector_axis", None) if c.has("vector_axis") else None
    idx = _sparse_dense(c, nz_idx, mask, mask.shape)
    dense = _lut_dense(c, idx, lut, va, c.in_type("indices_nonzero_data").dtype)
    vs = lut.shape[-1]
    out_mask = np.repeat(mask, vs, axis=_axis(va, mask.ndim, c.op)) if vs > 1 else mask
    return _const_kernel(out_mask, dense[out_mask != 0].reshape(-1))


def _c_sparse_blockwise_shift_scale(c):
    """(mask, nonzero data) of dequantized sparse weights (joint pruning + linear quantization)."""
    mask = _np_const(c, "data_mask")
    data = _sparse_dense(c, _np_const(c, "nonzero_data"), mask, mask.shape)
    off = _np_const(c, "offset") if c.has("offset") else None
    deq = _blockwise(c, data, _np_const(c, "scale"), off)
    return _const_kernel(mask, deq[mask != 0].reshape(-1))


def _lut_params(ios):
    if ios >= 18:
        return {"indices": True, "lut": True, "vector_axis": False}
    return {"indices": True, "lut": True, "shape": True}


def _sparse_params(ios):
    if ios >= 18:
        return {"nonzero_data": True, "mask": True}
    return {"nonzero_data": True, "mask": True, "shape": True}
