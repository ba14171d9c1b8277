"""Feeding a program: function inputs checked against their declared types, ImageType inputs (a uint8
``HxWx3`` RGB array, a PIL image, or a float 0..255 planar array) turned into the tensor Core ML would
make of the pixel buffer, and batched inputs split into per-run feeds for a static-batch program."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from .types import _NP_DTYPE, ProgramError, VarType, _kind

if TYPE_CHECKING:  # pragma: no cover
    from .program import Program


@dataclass
class InputInfo:
    name: str
    type: VarType                     # the MIL function input
    image: Optional[dict] = None      # {"color_space", "width", "height"} for ImageType inputs


def feed(info: InputInfo, value, warnings: list) -> torch.Tensor:
    """One function input -> the torch tensor the program runs on (its declared dtype; unsigned 16/32-bit
    widened), checked against the declared type; ``warnings`` collects the run's input warnings."""
    vt = info.type
    if info.image is not None:
        arr = image_array(info, value, warnings)
    else:
        arr = np.asarray(value)
    dt = vt.dtype
    if _kind(dt) == "int":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ProgramError(f"input {info.name!r}: non-integer values for a {dt} input")
        elif arr.dtype.kind not in "iub":
            raise ProgramError(f"input {info.name!r}: {arr.dtype} data for a {dt} input")
        info_ = np.iinfo(_NP_DTYPE[dt])
        if arr.size and (arr.min() < info_.min or arr.max() > info_.max):
            raise ProgramError(f"input {info.name!r}: values outside the {dt} range")
    elif _kind(dt) == "float" and arr.dtype.kind not in "fiub":
        raise ProgramError(f"input {info.name!r}: {arr.dtype} data for a {dt} input")
    if vt.shape is not None:
        if arr.ndim != len(vt.shape) or any(d is not None and d != s for d, s in zip(vt.shape, arr.shape)):
            raise ProgramError(f"input {info.name!r}: shape {arr.shape} does not match the declared {vt}")
    arr = np.ascontiguousarray(arr.astype(_NP_DTYPE[dt]))
    if arr.dtype == np.uint16:
        arr = arr.astype(np.int32)
    elif arr.dtype in (np.uint32, np.uint64):
        arr = arr.astype(np.int64)
    return torch.from_numpy(arr)

def image_array(info: InputInfo, value, warnings: list) -> np.ndarray:
    """An ImageType input (uint8 ``HxWx3`` RGB / ``HxW`` gray, a PIL image, or float 0..255 ``[1, C, H, W]``)
    -> the float ``[1, C, H, W]`` 0..255 tensor Core ML makes of the pixel buffer (BGR: channels reversed)."""
    img = info.image
    cs = img["color_space"]
    gray = cs.startswith("GRAYSCALE")
    try:
        from PIL import Image
        if isinstance(value, Image.Image):
            value = np.asarray(value.convert("L" if gray else "RGB"))
    except ImportError:   # pragma: no cover
        pass
    arr = np.asarray(value)
    H, W = img["height"], img["width"]
    if arr.dtype == np.uint8:
        if gray:
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.shape != (H, W):
                raise ProgramError(f"input {info.name!r}: grayscale image of shape {arr.shape}, "
                                   f"expected ({H}, {W})")
            chw = arr[None].astype(np.float32)
        else:
            if arr.shape != (H, W, 3):
                raise ProgramError(f"input {info.name!r}: uint8 image of shape {arr.shape}, expected "
                                   f"({H}, {W}, 3) RGB")
            chw = arr.transpose(2, 0, 1).astype(np.float32)
    elif arr.dtype.kind == "f":
        c = 1 if gray else 3
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape != (1, c, H, W):
            raise ProgramError(f"input {info.name!r}: float image of shape {arr.shape}, expected "
                               f"(1, {c}, {H}, {W}) with 0..255 values")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ProgramError(f"input {info.name!r}: float image values outside 0..255")
        if arr.size and arr.max() <= 1.0:
            warnings.append(
                f"input {info.name!r}: every pixel is <= 1.0; ImageType inputs take 0..255 values "
                f"(the program applies its own scale)")
        chw = arr[0].astype(np.float32)
    else:
        raise ProgramError(f"input {info.name!r}: image data of dtype {arr.dtype}; pass uint8 HxWx3 "
                           f"or float [1,3,H,W] 0..255")
    if cs == "BGR":
        chw = chw[::-1]
    return np.ascontiguousarray(chw[None])


def split_rows(prog: Program, inputs) -> tuple:
    """Split batched inputs into per-run feeds for a static-batch program: (n, [feed dicts]).

    A tensor input declared ``[1, ...]`` given as ``[N, ...]`` runs N times; an ImageType input takes
    uint8 ``[N, H, W, 3]`` (or one ``H x W x 3``) or float ``[N, 3, H, W]`` (or one ``[3, H, W]``)."""
    if not isinstance(inputs, dict):
        if len(prog.inputs) != 1:
            raise ValueError(f"the program has inputs {[i.name for i in prog.inputs]}: pass a dict")
        inputs = {prog.inputs[0].name: inputs}
    feeds, n = None, None
    for info in prog.inputs:
        if info.name not in inputs:
            raise ValueError(f"missing input {info.name!r}")
        arr = inputs[info.name]
        try:
            from PIL import Image
            if isinstance(arr, Image.Image):
                arr = [arr]
        except ImportError:  # pragma: no cover
            pass
        if isinstance(arr, list):
            rows = arr
        else:
            arr = np.asarray(arr)
            if info.image is not None:
                H, W = info.image["height"], info.image["width"]
                if arr.dtype == np.uint8:
                    rows = [arr] if arr.shape[:2] == (H, W) else list(arr)
                else:
                    rows = [a[None] for a in arr] if arr.ndim == 4 else [arr]
            else:
                shp = info.type.shape
                if shp and shp[0] == 1 and arr.ndim == len(shp) and arr.shape[0] != 1:
                    rows = [a[None] for a in arr]
                else:
                    rows = [arr]
        if n is None:
            n, feeds = len(rows), [dict() for _ in rows]
        elif len(rows) != n:
            raise ValueError(f"inputs have different batch sizes ({n} vs {len(rows)})")
        for f, r in zip(feeds, rows):
            f[info.name] = r
    return n, feeds
