"""A saved ML Program, parsed, weight-loaded and precompiled (:class:`Program`); the package reader,
the program cache, and batch evaluation (:func:`run_rows`, :func:`evaluate`)."""
from __future__ import annotations

import collections
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..milblob import WEIGHTS_REL, CoreMLStructureError, read_weight_blob, read_weight_blobs
from .inputs import InputInfo, feed, split_rows
from .opdef import _Ctx
from .registry import OPS
from .types import (_BLOB_CODE, _NP_DTYPE, _SUBBYTE_BITS, _TORCH_DTYPE, OVERFLOW_WARN, CoreMLRefError, ProgramError,
                    UnsupportedOpError, VarType, _kind, _Op, _parse_type, _torch_kind, _unpack_bits)

_DATA_DIR = WEIGHTS_REL.parent.parent    # Data/com.apple.CoreML


@dataclass
class _Bound:
    kind: int                 # 0 const tensor, 1 runtime var, 2 variadic list of (kind, ref)
    ref: object
    nf: int = 0               # const: 0 finite, 1 holds +-inf, 2 holds NaN


def _nf_state(t: torch.Tensor) -> tuple:
    """(state, max |x| over the finite values): state 0 all finite, 1 some +-inf, 2 some NaN."""
    if not t.is_floating_point() or not t.numel():
        return 0, 0.0
    m = float(torch.linalg.vector_norm(t, ord=math.inf))      # max |x|, NaN-propagating
    if math.isfinite(m):
        return 0, m
    if math.isnan(m):
        return 2, m
    fin = torch.where(torch.isfinite(t), t.abs(), torch.zeros((), dtype=t.dtype))
    return 1, float(fin.max())


@dataclass
class _Compiled:
    name: str
    type: str
    bind: list                # [(param, _Bound)]
    fn: Callable
    outputs: list             # [(name, VarType, torch dtype)]
    free: tuple = ()          # runtime vars whose last use is this op


class Program:
    """A parsed, weight-loaded, precompiled ML Program. Build with :func:`load_program`."""

    def __init__(self, path: Union[str, Path], function: Optional[str] = None):
        t0 = time.perf_counter()
        self.path = Path(path)
        if not self.path.is_dir():
            raise ProgramError(f"{self.path}: not an .mlpackage directory")
        self.spec = read_spec(self.path)
        if self.spec.WhichOneof("Type") != "mlProgram":
            raise UnsupportedOpError(f"{self.path.name}: model type {self.spec.WhichOneof('Type')!r}, "
                                     f"only ML Programs (mlProgram) are interpreted")
        prog = self.spec.mlProgram
        fname = function or self.spec.description.defaultFunctionName or "main"
        if fname not in prog.functions:
            raise ProgramError(f"{self.path.name}: no function {fname!r} (has {sorted(prog.functions)})")
        fn = prog.functions[fname]
        self.function = fname
        self.opset = fn.opset
        if not self.opset.startswith("CoreML") or not self.opset[6:].isdigit():
            raise UnsupportedOpError(f"{self.path.name}: unknown opset {self.opset!r}")
        self.ios = int(self.opset[6:]) + 10
        if not 15 <= self.ios <= 19:
            raise UnsupportedOpError(f"{self.path.name}: opset {self.opset} (iOS{self.ios}) is not supported "
                                     f"(CoreML5..CoreML9)")
        if self.opset not in fn.block_specializations:
            raise ProgramError(f"{self.path.name}: no block for opset {self.opset}")
        block = fn.block_specializations[self.opset]
        self._data_dir = self.path / _DATA_DIR
        self._load_warnings: list = []
        self._weights: dict = {}
        self._blob_files: dict = {}

        # inputs (function) + ImageType details (description)
        desc_in = {f.name: f for f in self.spec.description.input}
        self.inputs: list = []
        self._types: dict = {}
        for nv in fn.inputs:
            vt = _parse_type(nv.type, f"function input {nv.name!r}")
            image = None
            feat = desc_in.get(nv.name)
            if feat is not None and feat.type.WhichOneof("Type") == "imageType":
                from coremltools.proto import FeatureTypes_pb2 as ft
                it = feat.type.imageType
                image = {"color_space": ft.ImageFeatureType.ColorSpace.Name(it.colorSpace),
                         "width": int(it.width), "height": int(it.height)}
            self.inputs.append(InputInfo(nv.name, vt, image))
            self._types[nv.name] = vt
        if [i.name for i in self.inputs] != [f.name for f in self.spec.description.input]:
            raise ProgramError(f"{self.path.name}: function inputs {[i.name for i in self.inputs]} != model "
                               f"description inputs {[f.name for f in self.spec.description.input]}")
        self.output_names = list(block.outputs)

        # parse + compile
        self._consts: dict = {}           # name -> numpy array | str   (declared dtype)
        self._kconsts: dict = {}          # name -> torch tensor for kernels (fp16 widened to fp32)
        self._ops: list = []
        hist: dict = collections.Counter()
        n_const = 0
        for proto in block.operations:
            op = _Op(proto, self.ios)
            hist[op.type] += 1
            if op.type == "const":
                n_const += 1
                self._add_const(op)
                continue
            self._compile(op)
        for o in self.output_names:
            if o not in self._types:
                raise ProgramError(f"{self.path.name}: block output {o!r} is never produced")
        self._plan_frees()

        out16 = any(t.dtype == "FLOAT16" for c in self._ops for _, t, _ in c.outputs)
        self.precision = "fp16" if out16 else "fp32"
        self.load_time_s = time.perf_counter() - t0
        self.diagnostics = {
            "path": str(self.path), "opset": self.opset, "ios": self.ios, "precision": self.precision,
            "op_count": len(self._ops), "const_count": n_const,
            "weight_blobs": sum(int(v.get("count", 0)) for v in self._blob_files.values()),
            "op_types": dict(sorted((k, v) for k, v in hist.items() if k != "const")),
            "load_time_s": round(self.load_time_s, 3),
            "first_nonfinite": None, "overflow_warnings": [], "warnings": list(self._load_warnings),
            "run_time_s": None, "pessimistic": None,
        }
        self._weights.clear()     # blobs were copied or viewed into tensors; drop the file map

    # ---------------------------------------------------------------- values and types
    def _weight_data(self, file_name: str, where: str) -> np.ndarray:
        if not file_name.startswith("@model_path/"):
            raise ProgramError(f"{where}: weight file {file_name!r} is not under @model_path/")
        path = self._data_dir / file_name[len("@model_path/"):]
        key = str(path)
        if key not in self._weights:
            if not path.is_file():
                raise ProgramError(f"{where}: weight file {path} is missing")
            try:
                self._blob_files[key] = read_weight_blobs(path)   # walk: header count, every sentinel
            except CoreMLStructureError as e:
                # every blob the program uses is still checked on its own (read_weight_blob), so the
                # op whose weights are damaged is the one named; the walk failure stays a warning
                self._blob_files[key] = {"error": str(e)}
                self._load_warnings.append(f"weight file walk: {e}")
            self._weights[key] = np.fromfile(path, dtype=np.uint8)
        return self._weights[key]

    def _value(self, value, vt: VarType, where: str):
        """A MIL Value (immediate or blob) -> numpy array of the declared dtype (str for strings)."""
        if vt.shape is None or any(d is None for d in vt.shape):
            raise ProgramError(f"{where}: constant with unknown shape {vt}")
        shape = vt.shape
        n = int(np.prod(shape)) if shape else 1
        dt = vt.dtype
        kind = value.WhichOneof("value")
        if dt == "BFLOAT16" or dt.startswith("FLOAT8"):
            raise UnsupportedOpError(f"{where}: {dt} constants are not supported")
        if kind == "blobFileValue":
            bfv = value.blobFileValue
            data = self._weight_data(bfv.fileName, where)
            try:
                bdt, raw = read_weight_blob(data, int(bfv.offset), bfv.fileName)
            except CoreMLStructureError as e:
                raise ProgramError(f"{where}: {e}") from e
            if _BLOB_CODE.get(dt) != bdt:
                held = {v: k for k, v in _BLOB_CODE.items()}.get(bdt, f"dtype code {bdt}")
                raise ProgramError(f"{where}: weight blob at offset {bfv.offset} holds {held}, the program "
                                   f"declares {dt}")
            if dt in _SUBBYTE_BITS:
                bits = _SUBBYTE_BITS[dt]
                if raw.size != math.ceil(n * bits / 8):
                    raise ProgramError(f"{where}: blob has {raw.size} bytes for {n} {dt} values")
                arr = _unpack_bits(raw, bits, n, dt == "INT4")
            else:
                item = np.dtype(_NP_DTYPE[dt]).itemsize
                if raw.size != n * item:
                    raise ProgramError(f"{where}: blob has {raw.size} bytes for {n} {dt} values of shape "
                                       f"{shape}")
                arr = raw.view(_NP_DTYPE[dt])
            return arr.reshape(shape)
        if kind != "immediateValue":
            raise ProgramError(f"{where}: value without data")
        iv = value.immediateValue
        if iv.WhichOneof("value") != "tensor":
            raise UnsupportedOpError(f"{where}: immediate {iv.WhichOneof('value')} values are not supported")
        t = iv.tensor
        field = t.WhichOneof("value")
        if dt == "STRING":
            vals = [s.decode() if isinstance(s, bytes) else s for s in t.strings.values]
            if len(vals) != n:
                raise ProgramError(f"{where}: {len(vals)} strings for shape {shape}")
            return vals[0] if shape == () else np.array(vals, dtype=object).reshape(shape)
        if field == "bytes":
            raw = np.frombuffer(t.bytes.values, np.uint8)
            if dt in _SUBBYTE_BITS:
                arr = _unpack_bits(raw, _SUBBYTE_BITS[dt], n, dt == "INT4")
            else:
                arr = raw.view(_NP_DTYPE[dt]) if raw.size else np.zeros(0, _NP_DTYPE[dt])
        elif field in ("floats", "doubles", "ints", "longInts", "bools"):
            src = getattr(t, field).values
            arr = np.asarray(src, {"floats": np.float32, "doubles": np.float64, "ints": np.int64,
                                   "longInts": np.int64, "bools": np.bool_}[field])
            if _kind(dt) == "int" and arr.dtype.kind == "f":
                raise ProgramError(f"{where}: float data for a {dt} constant")
            arr = arr.astype(_NP_DTYPE[dt])
        elif field is None:
            arr = np.zeros(0, _NP_DTYPE[dt])
        else:
            raise UnsupportedOpError(f"{where}: tensor field {field!r}")
        if arr.size != n:
            raise ProgramError(f"{where}: {arr.size} values for shape {shape}")
        return arr.reshape(shape)

    def _add_const(self, op: _Op):
        val = op.proto.attributes["val"] if "val" in op.proto.attributes else None
        if val is None or len(op.outputs) != 1:
            raise op.error("const without a 'val' attribute or with several outputs")
        name, vt = op.outputs[0]
        declared = _parse_type(val.type, op.where())
        if declared.dtype != vt.dtype or declared.shape != vt.shape:
            raise op.error(f"value type {declared} != output type {vt}")
        self._define(name, vt, op)
        self._consts[name] = self._value(val, vt, op.where())

    def _define(self, name, vt, op):
        if name in self._types:
            raise op.error(f"variable {name!r} defined twice")
        self._types[name] = vt

    def _is_const_binding(self, b) -> bool:
        return b[0] == "value" or b[1] in self._consts

    def _binding_type(self, b, op: _Op) -> VarType:
        if b[0] == "value":
            return _parse_type(b[1].type, op.where())
        if b[1] not in self._types:
            raise op.error(f"input {b[1]!r} is used before it is defined")
        return self._types[b[1]]

    def _const_value(self, b, op: _Op):
        if b[0] == "value":
            return self._value(b[1], _parse_type(b[1].type, op.where()), op.where())
        return self._consts[b[1]]

    def _kernel_const(self, b, op: _Op) -> torch.Tensor:
        key = b[1] if b[0] == "var" else None
        if key is not None and key in self._kconsts:
            return self._kconsts[key]
        v = self._const_value(b, op)
        if isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object):
            raise op.error("a string constant where a tensor is expected")
        arr = np.asarray(v)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        elif arr.dtype in (np.uint32, np.uint64):
            arr = arr.astype(np.int64)
        arr = np.ascontiguousarray(arr)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())   # weights: read-only mmap views
        if t.dtype == torch.float16:
            t = t.float()
        if key is not None:
            self._kconsts[key] = t
        return t

    # ---------------------------------------------------------------- compile
    def _compile(self, op: _Op):
        d = OPS.get(op.type)
        if d is None:
            raise op.unsupported(f"unknown op type {op.type!r}")
        if self.ios < d.min_ios:
            raise op.unsupported(f"not available in opset {self.opset} (needs iOS{d.min_ios})")
        params = d.params(self.ios)
        for p in op.inputs:
            if p not in params:
                raise op.unsupported(f"unknown parameter {p!r} (known: {', '.join(params)})")
        for p, req in params.items():
            if req and p not in op.inputs:
                raise op.error(f"missing required parameter {p!r}")
        for p, binds in op.inputs.items():
            if p not in d.variadic and len(binds) != 1:
                raise op.error(f"parameter {p!r} bound to {len(binds)} values")
            for b in binds:
                self._binding_type(b, op)                  # defined before use
        # float dtype domain: float inputs carry the output's float dtype
        if d.same_float and op.outputs and _kind(op.outputs[0][1].dtype) == "float":
            want = op.outputs[0][1].dtype
            for p, binds in op.inputs.items():
                if p in d.static:
                    continue
                for b in binds:
                    t = self._binding_type(b, op)
                    if _kind(t.dtype) == "float" and t.dtype != want:
                        raise op.error(f"input {p!r} is {t.dtype} but the output is {want} "
                                       f"(mixed precision inside an op)")
        ctx = _Ctx(op, self)
        for p in d.static:
            if p in op.inputs and not ctx.is_const(p):
                raise op.unsupported(f"parameter {p!r} must be a constant here")
        fn = d.compile(ctx)
        outs = [(n, vt, _TORCH_DTYPE.get(vt.dtype)) for n, vt in op.outputs]
        for n, vt, tdt in outs:
            if tdt is None:
                raise op.unsupported(f"output {n!r} has unsupported dtype {vt.dtype}")
        if d.constexpr:
            for p, binds in op.inputs.items():
                if not all(self._is_const_binding(b) for b in binds):
                    raise op.error(f"constexpr parameter {p!r} is not constant")
            res = fn({}, False)
            res = list(res) if isinstance(res, (list, tuple)) else [res]
            if len(res) != len(outs):
                raise op.error(f"{len(res)} results for {len(outs)} outputs")
            for (n, vt, tdt), t in zip(outs, res):
                t = self._conform(op.name, op.type, t, vt, tdt)
                self._define(n, vt, op)
                self._consts[n] = t.numpy()
            return
        bind = []
        for p, binds in op.inputs.items():
            if p in d.static:
                continue
            items = []
            for b in binds:
                if self._is_const_binding(b):
                    kt = self._kernel_const(b, op)
                    items.append(_Bound(0, kt, _nf_state(kt)[0]))
                else:
                    items.append(_Bound(1, b[1]))
            bind.append((p, _Bound(2, items) if p in d.variadic else items[0]))
        for n, vt, _ in outs:
            self._define(n, vt, op)
        self._ops.append(_Compiled(op.name, op.type, bind, fn, outs))

    def _plan_frees(self):
        last: dict = {}
        for i, c in enumerate(self._ops):
            for _, b in c.bind:
                for x in (b.ref if b.kind == 2 else [b]):
                    if x.kind == 1:
                        last[x.ref] = i
        keep = set(self.output_names)
        per: dict = collections.defaultdict(list)
        for name, i in last.items():
            if name not in keep:
                per[i].append(name)
        for i, c in enumerate(self._ops):
            c.free = tuple(per.get(i, ()))

    @staticmethod
    def _conform(name, typ, t, vt: VarType, tdt) -> torch.Tensor:
        """Round/cast a kernel result to the declared dtype; check kind and shape."""
        where = f"op {name!r} ({typ})"
        if not isinstance(t, torch.Tensor):
            raise ProgramError(f"{where}: kernel returned {type(t).__name__}", name, typ)
        want = _kind(vt.dtype)
        got = _torch_kind(t)
        if want != got:
            raise ProgramError(f"{where}: computed a {got} tensor but the output is declared {vt}", name, typ)
        if t.dtype != tdt:
            t = t.to(tdt)
        if vt.shape is not None:
            if t.dim() != len(vt.shape) or any(d is not None and d != s for d, s in zip(vt.shape, t.shape)):
                raise ProgramError(f"{where}: output shape {tuple(t.shape)} disagrees with the declared type "
                                   f"{vt}", name, typ)
        return t

    # ---------------------------------------------------------------- run
    def _execute(self, inputs: dict, pessimistic: bool, keep_all: bool = False):
        names = [i.name for i in self.inputs]
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise ProgramError(f"{self.path.name}: inputs {sorted(inputs)} != expected {names}")
        self.diagnostics["warnings"] = list(self._load_warnings)
        env = {i.name: feed(i, inputs[i.name], self.diagnostics["warnings"]) for i in self.inputs}
        acts = {} if keep_all else None
        first_bad = None
        overflow = []
        check_overflow = self.precision == "fp32"
        state: dict = {}          # runtime vars holding non-finite values: 1 +-inf, 2 NaN
        for n, t in env.items():
            st, _ = _nf_state(t)
            if st:
                state[n] = st
                first_bad = first_bad or {"name": n, "type": "input", "value": "nan" if st == 2 else "inf",
                                          "inputs_finite": False}
                self.diagnostics["warnings"].append(f"input {n!r} holds non-finite values")
        t0 = time.perf_counter()
        with torch.no_grad():
            for c in self._ops:
                a = {}
                in_state = 0
                for p, b in c.bind:
                    if b.kind == 0:
                        a[p] = b.ref
                        in_state = max(in_state, b.nf)
                    elif b.kind == 1:
                        v = env[b.ref]
                        a[p] = v.float() if v.dtype == torch.float16 else v
                        in_state = max(in_state, state.get(b.ref, 0))
                    else:
                        vals = []
                        for x in b.ref:
                            if x.kind == 0:
                                v = x.ref
                                in_state = max(in_state, x.nf)
                            else:
                                v = env[x.ref]
                                in_state = max(in_state, state.get(x.ref, 0))
                            vals.append(v.float() if v.dtype == torch.float16 else v)
                        a[p] = vals
                try:
                    res = c.fn(a, pessimistic)
                except CoreMLRefError:
                    raise
                except Exception as e:  # noqa: BLE001 - a kernel failure names the op
                    raise ProgramError(f"op {c.name!r} ({c.type}): {type(e).__name__}: {e}", c.name, c.type) from e
                res = res if isinstance(res, (list, tuple)) else (res,)
                if len(res) != len(c.outputs):
                    raise ProgramError(f"op {c.name!r} ({c.type}): {len(res)} results for {len(c.outputs)} "
                                       f"outputs", c.name, c.type)
                for t, (n, vt, tdt) in zip(res, c.outputs):
                    t = self._conform(c.name, c.type, t, vt, tdt)
                    env[n] = t
                    if t.is_floating_point() and t.numel():
                        st, m = _nf_state(t)
                        if st:
                            state[n] = st
                            # the origin: inf from finite inputs, or NaN from NaN-free inputs (a -inf
                            # attention mask flowing through an add is not an origin)
                            if first_bad is None and (in_state == 0 or (st == 2 and in_state < 2)):
                                first_bad = {"name": n, "type": c.type, "value": "nan" if st == 2 else "inf",
                                             "inputs_finite": in_state == 0}
                        if check_overflow and st < 2 and m > OVERFLOW_WARN:
                            overflow.append({"name": n, "type": c.type, "max_abs": m})
                    if keep_all:
                        acts[n] = t
                for n in c.free:
                    env.pop(n, None)
        dt = time.perf_counter() - t0
        diag = self.diagnostics
        diag["first_nonfinite"] = first_bad
        diag["overflow_warnings"] = overflow
        if overflow:
            diag["warnings"].append(
                f"{len(overflow)} op(s) produce activations above {OVERFLOW_WARN:g} (10% of the fp16 max); "
                f"an fp16 export may overflow (first: {overflow[0]['name']!r} ({overflow[0]['type']}), "
                f"max |x| {overflow[0]['max_abs']:.4g})")
        diag["run_time_s"] = dt
        diag["pessimistic"] = bool(pessimistic)
        outs = {}
        for o in self.output_names:
            if o in env:
                outs[o] = env[o]
            elif acts is not None and o in acts:
                outs[o] = acts[o]
            else:
                outs[o] = torch.from_numpy(np.ascontiguousarray(self._consts[o]))
        return outs, acts

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy().copy()

    def run(self, inputs: dict, pessimistic: bool = False) -> dict:
        """Evaluate the program: ``{input name: array}`` -> ``{output name: numpy array}`` (declared
        dtypes). See :mod:`clipdeploy.latency.coreml_ref` for ImageType inputs and for ``pessimistic``."""
        outs, _ = self._execute(dict(inputs), pessimistic)
        return {k: self._np(v) for k, v in outs.items()}

    def activations(self, inputs: dict, pessimistic: bool = False) -> dict:
        """Every op output of one run, in program order: ``{var name: numpy array}``."""
        _, acts = self._execute(dict(inputs), pessimistic, keep_all=True)
        return {k: self._np(v) for k, v in acts.items()}

    @property
    def ops(self) -> list:
        """[(output name, op type)] of the compiled (non-const) ops in program order."""
        return [(c.name, c.type) for c in self._ops]

    def op_outputs(self) -> dict:
        """{var name: (op output name, op type)} for every non-const op output."""
        return {n: (c.name, c.type) for c in self._ops for n, _, _ in c.outputs}

    def constants(self) -> dict:
        """{const name: numpy array | str} (decompressed constexpr results included)."""
        return dict(self._consts)

    def __repr__(self):
        return (f"Program({self.path.name!r}, {getattr(self, 'opset', '?')}, {getattr(self, 'precision', '?')}, "
                f"{len(getattr(self, '_ops', []))} ops)")


def read_spec(path: Union[str, Path]):
    """The Model protobuf of a saved .mlpackage, read without touching the package.

    Same result as ``coremltools.models.MLModel(path, skip_model_load=True).get_spec()``, which
    rewrites the package's Manifest.json as a side effect; this follows the manifest's root model
    entry and parses that file with coremltools' ``Model_pb2``."""
    from coremltools.proto import Model_pb2

    path = Path(path)
    try:
        manifest = json.loads((path / "Manifest.json").read_text())
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    except (OSError, ValueError, KeyError) as e:
        raise ProgramError(f"{path.name}: unreadable package manifest ({type(e).__name__}: {e})") from e
    model_file = path / "Data" / entry["path"]
    if not model_file.is_file():
        raise ProgramError(f"{path.name}: root model file {entry['path']!r} is missing")
    spec = Model_pb2.Model()
    spec.ParseFromString(model_file.read_bytes())
    return spec


# ------------------------------------------------------------------------------------------- cache

_CACHE: "collections.OrderedDict" = collections.OrderedDict()
CACHE_SIZE = 2                 # programs hold their weights (fp16 ones also an fp32 copy)


def _cache_key(path: Path, function):
    stamp = []
    for f in sorted((path / "Data").rglob("*")):
        if f.is_file():
            st = f.stat()
            stamp.append((str(f.relative_to(path)), st.st_size, st.st_mtime_ns))
    return (str(path.resolve()), function, tuple(stamp))


def load_program(path: Union[str, Path], function: Optional[str] = None, cache: bool = True) -> Program:
    """Parse a saved ``.mlpackage``, load its weights and precompile its op list.

    Programs are cached (least recently used, :data:`CACHE_SIZE` entries) by path and the size and
    modification time of every file under the package's ``Data/``, so an edited package is reloaded."""
    path = Path(path)
    if not cache:
        return Program(path, function)
    key = _cache_key(path, function)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    prog = Program(path, function)
    _CACHE[key] = prog
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prog


def clear_cache():
    _CACHE.clear()


def run_rows(prog: Program, inputs, output: Optional[str] = None, pessimistic: bool = False):
    """Run a batch one row at a time (our programs have a static batch of 1): ``(outputs [N, ...],
    first non-finite origin or None)``; each run's output is flattened into one row."""
    out_name = output or (prog.output_names[0] if len(prog.output_names) == 1 else None)
    if out_name is None:
        raise ValueError(f"the program has outputs {prog.output_names}: name one with output=")
    n, feeds = split_rows(prog, inputs)
    got, nonfinite = [], None
    for f in feeds:
        got.append(np.asarray(prog.run(f, pessimistic)[out_name], np.float32).reshape(1, -1))
        nonfinite = nonfinite or prog.diagnostics["first_nonfinite"]
    return np.concatenate(got, 0), nonfinite


REFERENCE_RUNTIME = ("clipdeploy Core ML reference interpreter (clipdeploy.latency.coreml_ref): evaluates the "
                     "ML Program the converter wrote, with fp16 emulated; not Apple's kernels")


def evaluate(path, inputs, pessimistic: bool = False) -> tuple:
    """A saved package (loaded uncached) on a batch of inputs, row by row: ``(outputs [N, ...], info)``;
    ``info``: runtime, opset, program precision, op count, seconds per run, the first non-finite
    origin, overflow warnings. What the export gate and ``clip-latency verify`` run."""
    prog = load_program(path, cache=False)
    t0 = time.perf_counter()
    got, nonfinite = run_rows(prog, inputs, pessimistic=pessimistic)
    seconds = time.perf_counter() - t0
    d = prog.diagnostics
    return got, {"runtime": REFERENCE_RUNTIME, "opset": prog.opset, "program_precision": prog.precision,
                 "ops": d["op_count"], "seconds_per_run": round(seconds / max(1, len(got)), 4),
                 "first_nonfinite": nonfinite, "overflow_warnings": d["overflow_warnings"][:5]}
