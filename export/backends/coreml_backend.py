"""Core ML backend: an encoder wrapper -> an ML Program ``.mlpackage`` (a directory).

Conversion goes through ``torch.export`` (``torch.jit.trace`` conversion fails on this torch) and
works on any host; Core ML *prediction* only exists on macOS. Elsewhere the parity gate falls back to
:meth:`CoreMLBackend.structural_check`, which reads the saved package (spec protobuf + MILBlob weights)
without loading it into Core ML, and to the Core ML reference interpreter (:meth:`reference_run`).

Shapes are fixed: image float32 ``[1, 3, R, R]``, text int32 ``[1, 77]`` (a dynamic sequence length
crashes Core ML at load), output float32 ``embedding [1, D]`` — fp16 programs compute in fp16 but
keep float32 inputs/outputs (coremltools inserts the casts).

For the image encoder a second package ``<stem>_imagetype.mlpackage`` is written whose input is a
``ct.ImageType`` (RGB, scale 1/255, no bias), so an app can hand it a ``CVPixelBuffer`` directly; the
model's mean/std (if any) stays inside the network either way.

``int8``: the fp16 program with its weights (tensors of more than :data:`INT8_WEIGHT_THRESHOLD`
elements) compressed by ``coremltools.optimize.coreml``, decompressed at load (``constexpr_*`` ops; the
iOS target picks the flavour: iOS16/17 ``constexpr_affine_dequantize`` / ``constexpr_lut_to_dense``,
iOS18 ``constexpr_blockwise_shift_scale`` / the iOS18 ``constexpr_lut_to_dense``); compute stays fp16.
Two candidates — ``linear8`` (symmetric per-channel int8) and ``palettize8`` (a per-tensor 256-entry
k-means LUT) — are run through the reference interpreter on ``options["calibration"]``; the one with
the higher minimum cosine to the PyTorch embeddings is written (and its ImageType variant); zero-shot
agreement uses ``options["other_tower"]``. Where neither clears the int8 bars, the better one is
retried keeping the weights it is most sensitive to in fp16 (``<name>+fp16``; sensitivities simulated
in PyTorch with the decompressed weights). What was tried is recorded in ``info["int8"]``. The export
gate's re-evaluation of the written package on the same rows reuses the candidate's outputs (same
bytes, same inputs). Core ML int8 cannot be timed off macOS.
"""
from __future__ import annotations

import collections
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from clipdeploy.latency.coreml_ref import REFERENCE_RUNTIME
from clipdeploy.latency.milblob import (WEIGHTS_REL, CoreMLStructureError, read_weight_blob,  # noqa: F401
                                        read_weight_blobs)

from .base import Backend, BackendUnavailable, ExportResult

SUPPORTED_MAJOR = (8, 9)                 # we pin coremltools 9.0; 8.x has the same torch.export path
IOS_TARGETS = (16, 17, 18)
DEFAULT_IOS = 17

#: int8: weight tensors with more elements than this are compressed; smaller ones (norm scales, biases,
#: small depthwise kernels) stay fp16 -- 139 kB of the MobileCLIP-S0 image tower's 11.4 MB int8 weights
INT8_WEIGHT_THRESHOLD = 2048
INT8_CANDIDATES = ("linear8", "palettize8")
#: int8 fallback: keep weights fp16 (most sensitive first) until the PyTorch simulation of the
#: compressed weights reaches this minimum cosine -- half the int8 bar's distance from 1, leaving room
#: for the fp16 compute the simulation does not model
INT8_SIM_TARGET = 0.9995
#: the fallback ranks weights by their sensitivity on this many rows, those the full compression hurts most
SENSITIVITY_ROWS = 6
_INT8_ROUNDS = 3                          # fallback rounds (each halves the target's distance from 1 again)
#: the minimum cosine a candidate must keep on the calibration rows to be chosen as it is: a fifth of the int8
#: bar's distance from 1. The bar itself (0.999) on the rows a candidate was chosen on does not carry over to
#: inputs it never saw: MobileCLIP-S0 (seed 0) palettize8 image weights kept 0.99916 on the 22 calibration
#: rows and 0.99894 on one of the 32 validation images; the text tower with 4 weights back in fp16, 0.99956
#: and 0.99889 on one of 64 validation captions
INT8_CALIBRATION_COSINE = 0.9998

# Core ML ArrayFeatureType.ArrayDataType -> numpy-style name
_ARRAY_DTYPES = {65568: "float32", 65600: "float64", 65552: "float16", 131104: "int32", 131080: "int8"}


def _import_coremltools():
    try:
        import coremltools as ct  # noqa: F401
    except Exception as e:  # ImportError, or a broken install failing at import
        raise BackendUnavailable(
            f"coreml: coremltools cannot be imported ({type(e).__name__}: {e}); "
            f"install it with `pip install coremltools==9.0`") from e
    return ct


def _clipdeploy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("clipdeploy")
    except PackageNotFoundError:
        return "unknown"


def _weights_file(pkg: Path) -> Path:
    return Path(pkg) / WEIGHTS_REL


def _feature_io(feature) -> dict:
    """A FeatureDescription -> {"name", "shape", "dtype"} (+ image details for ImageType inputs)."""
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        t = feature.type.multiArrayType
        return {"name": feature.name, "shape": [int(s) for s in t.shape],
                "dtype": _ARRAY_DTYPES.get(int(t.dataType), f"arraytype{int(t.dataType)}")}
    if kind == "imageType":
        t = feature.type.imageType
        from coremltools.proto import FeatureTypes_pb2 as ft
        layout = ft.ImageFeatureType.ColorSpace.Name(t.colorSpace)
        channels = 1 if layout.startswith("GRAYSCALE") else 3
        return {"name": feature.name, "shape": [1, channels, int(t.height), int(t.width)],
                "dtype": "image", "color_layout": layout}
    return {"name": feature.name, "shape": None, "dtype": kind}


def _exported(wrapper, example):
    """``torch.export`` + core-ATen decompositions, without ``aten.alias`` nodes (transformers' CLIP text
    model leaves one; coremltools has no converter for it, and an alias computes nothing)."""
    import torch
    with torch.no_grad():
        ep = torch.export.export(wrapper, (example,)).run_decompositions({})
    graph = ep.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    ep.graph_module.recompile()
    return ep


def _io_from_spec(spec):
    return ([_feature_io(f) for f in spec.description.input],
            [_feature_io(f) for f in spec.description.output])


def _op_histogram(spec) -> tuple:
    """(Counter of op types over the main function incl. nested blocks, opset name)."""
    fn = spec.mlProgram.functions["main"]
    opset = fn.opset
    block = fn.block_specializations[opset]
    hist: dict = collections.Counter()

    def walk(b):
        for op in b.operations:
            hist[op.type] += 1
            for inner in op.blocks:
                walk(inner)
    walk(block)
    return dict(sorted(hist.items())), opset


# ------------------------------------------------------------------ int8 weight compression helpers

def _lloyd(v: np.ndarray, c: np.ndarray, centers: np.ndarray, iters: int) -> np.ndarray:
    """Weighted 1-D Lloyd iterations from sorted ``centers`` until no centre moves; an empty cluster is
    re-seeded at the distinct value its neighbours fit worst."""
    k = len(centers)
    for _ in range(iters):
        lab = np.searchsorted((centers[1:] + centers[:-1]) / 2, v)
        total = np.bincount(lab, weights=c * v, minlength=k)
        n = np.bincount(lab, weights=c, minlength=k)
        new = np.where(n > 0, total / np.maximum(n, 1e-300), centers)
        empty = np.flatnonzero(n == 0)
        if empty.size:
            worst = np.argsort(c * (v - new[lab]) ** 2)[::-1][:empty.size]
            new[empty[:worst.size]] = v[worst]
        new = np.sort(new)
        if np.array_equal(new, centers):
            break
        centers = new
    return centers


def _sse(v: np.ndarray, c: np.ndarray, centers: np.ndarray) -> float:
    lab = np.searchsorted((centers[1:] + centers[:-1]) / 2, v)
    return float((c * (v - centers[lab]) ** 2).sum())


def _kmeans_lut(values: np.ndarray, nbits: int = 8, iters: int = 300) -> tuple:
    """Per-tensor k-means palette of ``values``: ``(lut [2**nbits] in the values' dtype, uint8 indices
    [values.size])``, each value mapped to its nearest LUT entry as stored.

    k-means on the distinct values weighted by their counts (an fp16 tensor has at most 63k): Lloyd's
    iterations from two seedings -- k-means++ (fixed seed) and the high-resolution optimum (centres
    spaced by density^(1/3)) -- keeping the lower squared error. coremltools' ``mode="kmeans"`` runs
    scikit-learn's KMeans over every element instead (without the optional ``kmeans1d`` package): 75 s
    for the MobileCLIP-S0 image tower and 40 s for its text tower on the 2-core build host, where this
    takes seconds; its squared error is within about 10 % of scikit-learn's per tensor (median over
    the S0 image weights), lower on Gaussian weights."""
    flat = np.ascontiguousarray(values).reshape(-1)
    k = 1 << nbits
    if flat.dtype == np.float16:                  # distinct values by bit pattern: O(n), no sort of n
        codes = flat.view(np.uint16)
        counts_all = np.bincount(codes, minlength=1 << 16)
        present = np.flatnonzero(counts_all)
        vals = present.astype(np.uint16).view(np.float16)
        order = np.argsort(vals.astype(np.float64), kind="stable")
        vals, present = vals[order], present[order]
        counts = counts_all[present]
        pos = np.empty(1 << 16, np.int64)
        pos[present] = np.arange(len(present))
        inv = pos[codes]
    else:
        vals, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
    v = vals.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError("cannot palettize a weight with non-finite values")
    if len(v) <= k:
        lut = np.zeros(k, flat.dtype)
        lut[:len(v)] = vals
        return lut, inv.astype(np.uint8)
    c = counts.astype(np.float64)
    rng = np.random.default_rng(0)                # k-means++: D^2 sampling, weighted by count
    picks = [int(rng.choice(len(v), p=c / c.sum()))]
    d2 = (v - v[picks[0]]) ** 2
    for _ in range(1, k):
        p = c * d2
        if p.sum() <= 0:
            break
        picks.append(int(rng.choice(len(v), p=p / p.sum())))
        d2 = np.minimum(d2, (v - v[picks[-1]]) ** 2)
    seeds = [np.sort(np.resize(v[picks], k))]
    edges = np.linspace(v[0], v[-1], 4097)
    comp = np.cumsum(np.cbrt(np.histogram(v, bins=edges, weights=c)[0]))
    seeds.append(np.interp((np.arange(k) + 0.5) / k, np.concatenate([[0.0], comp / comp[-1]]), edges))
    centers = min((_lloyd(v, c, s, iters) for s in seeds), key=lambda cc: _sse(v, c, cc))
    lut = np.sort(centers.astype(flat.dtype))
    lf = lut.astype(np.float64)
    lab = np.searchsorted((lf[1:] + lf[:-1]) / 2, v)
    return lut, lab[inv].astype(np.uint8)


class _KMeansLUT:
    """``lut_function`` for ``OpPalettizerConfig(mode="custom")``: :func:`_kmeans_lut`, cached by the
    weight's bytes so the retried candidate and the ImageType variant get the same palettes."""

    def __init__(self, nbits: int = 8):
        self.nbits = nbits
        self._cache: dict = {}

    def __call__(self, weight: np.ndarray) -> tuple:
        w = np.ascontiguousarray(weight)
        key = (w.shape, w.dtype.str, hashlib.sha1(w.view(np.uint8).reshape(-1)).digest())
        if key not in self._cache:
            self._cache[key] = _kmeans_lut(w, self.nbits)
        return self._cache[key]


def _int8_config(name: str, lut_fn, keep_fp16=()):
    """The ``OptimizationConfig`` of candidate ``name``; ``keep_fp16``: const names left uncompressed."""
    import coremltools.optimize.coreml as cto
    if name == "linear8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=INT8_WEIGHT_THRESHOLD)
    elif name == "palettize8":
        # per tensor: a per-grouped-channel LUT needs iOS18; "custom" = the k-means of _kmeans_lut
        op = cto.OpPalettizerConfig(mode="custom", lut_function=lut_fn, granularity="per_tensor",
                                    weight_threshold=INT8_WEIGHT_THRESHOLD)
    else:
        raise ValueError(f"unknown int8 candidate {name!r}")
    return cto.OptimizationConfig(global_config=op,
                                  op_name_configs={n: None for n in keep_fp16} or None)


def _compress(mlmodel, name: str, lut_fn, keep_fp16=()):
    import coremltools.optimize.coreml as cto
    fn = cto.linear_quantize_weights if name == "linear8" else cto.palettize_weights
    return fn(mlmodel, _int8_config(name, lut_fn, keep_fp16))


_COMPRESSED_SUFFIXES = ("_quantized", "_palettized")


def _constexpr_outputs(spec) -> dict:
    """{output name: op type} of the constexpr (weight decompression) ops of the main function."""
    fn = spec.mlProgram.functions["main"]
    out = {}

    def walk(b):
        for op in b.operations:
            if op.type.startswith("constexpr_"):
                for o in op.outputs:
                    out[o.name] = op.type
            for inner in op.blocks:
                walk(inner)
    walk(fn.block_specializations[fn.opset])
    return out


def _digest(a: np.ndarray) -> tuple:
    a = np.ascontiguousarray(a)
    return a.shape, a.dtype.str, hashlib.sha1(a.view(np.uint8).reshape(-1)).digest()


def _package_digest(path: Path) -> str:
    h = hashlib.sha256()
    for rel in ("Data/com.apple.CoreML/model.mlmodel", str(WEIGHTS_REL)):
        f = Path(path) / rel
        h.update(rel.encode())
        h.update(f.read_bytes() if f.exists() else b"-")
    return h.hexdigest()


#: (package digest, inputs digest) -> (outputs, info) of int8 candidate evaluations: the export gate
#: evaluates the written candidate on the same rows again; the same bytes give the same numbers
_REF_MEMO: "collections.OrderedDict" = collections.OrderedDict()
_REF_MEMO_SIZE = 4


def _memo_put(path: Path, rows: np.ndarray, got: np.ndarray, info: dict) -> None:
    _REF_MEMO[_package_digest(path)] = (np.array(rows), np.array(got), dict(info))
    while len(_REF_MEMO) > _REF_MEMO_SIZE:
        _REF_MEMO.popitem(last=False)


def _memo_get(path: Path, x: np.ndarray):
    """The candidate evaluation of these package bytes whose rows start with ``x`` (the pipeline's
    calibration rows are the probe set followed by the generated calibration set, so the probe gate
    reads the first rows of it): ``(outputs, info)`` or None. Rows are evaluated one at a time, so a
    prefix of the outputs is what ``x`` alone gives."""
    hit = _REF_MEMO.get(_package_digest(path))
    if hit is None:
        return None
    rows, got, info = hit
    if rows.shape[1:] != x.shape[1:] or len(rows) < len(x) or rows.dtype != x.dtype or \
            not np.array_equal(rows[:len(x)], x):
        return None
    return got[:len(x)], info


class _WeightSim:
    """The wrapper in PyTorch with chosen weights replaced by their decompressed values: which weights
    cost the most accuracy, in milliseconds instead of interpreter seconds. MIL weight consts are
    matched to the wrapper's parameters by their fp16 values (2-D ones also transposed); unmatched
    consts stay exact in the simulation (reported)."""

    def __init__(self, wrapper, rows: np.ndarray, reference: np.ndarray, weights: dict):
        import torch
        self.wrapper = wrapper
        self.x = torch.from_numpy(np.ascontiguousarray(rows))
        self.ref = np.asarray(reference, np.float64)
        by_key = {}
        for _, t in list(wrapper.named_parameters()) + list(wrapper.named_buffers()):
            if not t.is_floating_point() or t.numel() <= INT8_WEIGHT_THRESHOLD:
                continue
            h = t.detach().to(torch.float16).cpu().numpy()
            by_key.setdefault(_digest(h), (t, False))
            if h.ndim == 2:
                by_key.setdefault(_digest(h.T), (t, True))
        self.targets = {}
        for name, val in weights.items():
            hit = by_key.get(_digest(np.asarray(val).astype(np.float16)))
            if hit is not None:
                self.targets[name] = hit
        # one decompression per export: results by the set of replaced names (the fallback's rounds
        # re-walk the same greedy order with a tighter target)
        self._memo = {}
        self._sens = None
        self.sensitivity_rows = None

    def cosine_min(self, replace: dict) -> float:
        """min cosine to the reference with ``{const name: decompressed array}`` in place."""
        key = frozenset(n for n in replace if n in self.targets)
        if key not in self._memo:
            self._memo[key] = self._cosine_min(replace)
        return self._memo[key]

    def _cosine_min(self, replace: dict) -> float:
        from clipdeploy.latency.parity import measure
        return measure(self.ref, self._forward(replace, self.x), self.ref)["cosine_min"]

    def _forward(self, replace: dict, x) -> np.ndarray:
        import torch
        saved = []
        try:
            with torch.no_grad():
                for name, val in replace.items():
                    if name not in self.targets:
                        continue
                    t, transposed = self.targets[name]
                    d = torch.from_numpy(np.asarray(val, np.float32))
                    saved.append((t, t.detach().clone()))
                    t.copy_((d.T if transposed else d).reshape(t.shape).to(t.dtype))
                return self.wrapper(x).numpy()
        finally:
            with torch.no_grad():
                for t, orig in reversed(saved):
                    t.copy_(orig)

    def _sensitivities(self, decompressed: dict, matched: list) -> dict:
        """{name: 1 - min cosine with that weight alone decompressed}, on the SENSITIVITY_ROWS rows that
        the full compression hurts most: the minimum cosine is set by the worst rows, so they rank the
        weights (one forward of a few rows per weight instead of all of them); the greedy choice that
        follows is judged on every row."""
        from clipdeploy.latency.parity import measure
        x, ref = self.x, self.ref
        if len(ref) > SENSITIVITY_ROWS:
            got = self._forward(decompressed, x)
            cos = (ref * got).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1))
            worst = np.sort(np.argsort(cos, kind="stable")[:SENSITIVITY_ROWS])
            x, ref = x[worst.tolist()], ref[worst]
        self.sensitivity_rows = int(len(ref))
        return {n: 1.0 - measure(ref, self._forward({n: decompressed[n]}, x), ref)["cosine_min"]
                for n in matched}

    def keep_fp16(self, decompressed: dict, target: float) -> tuple:
        """Greedy: the weights whose compression alone costs the most cosine go back to fp16, one at a
        time, until the simulated minimum cosine reaches ``target``. Returns (names, figures)."""
        full = self.cosine_min(decompressed)
        matched = [n for n in decompressed if n in self.targets]
        fig = {"target": target, "simulated_cosine_all": full, "matched": len(matched),
               "unmatched": sorted(n for n in decompressed if n not in self.targets)}
        keep, cos = [], full
        if full < target:
            if self._sens is None:
                self._sens = self._sensitivities(decompressed, matched)
            sens = self._sens
            order = sorted(matched, key=lambda n: -sens[n])
            fig["sensitivity_top"] = [[n, sens[n]] for n in order[:8]]
            fig["sensitivity_rows"] = self.sensitivity_rows
            for n in order:
                keep.append(n)
                cos = self.cosine_min({k: v for k, v in decompressed.items() if k not in keep})
                if cos >= target:
                    break
        fig["simulated_cosine"] = cos
        return keep, fig


class CoreMLBackend(Backend):
    name = "coreml"
    extension = ".mlpackage"
    precisions = ("fp16", "fp32", "int8")
    can_run_here = sys.platform == "darwin"
    reference_runtime = REFERENCE_RUNTIME

    def __init__(self, compute_units: str = "CPU_ONLY"):
        # prediction device on macOS: CPU_ONLY keeps the parity gate about the program's numerics
        self.compute_units = compute_units

    # ------------------------------------------------------------------ availability
    def check_available(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BackendUnavailable(
                f"coreml: unknown precision {precision!r}; choose one of {', '.join(self.precisions)}")
        ct = _import_coremltools()
        ver = getattr(ct, "__version__", "0")
        try:
            major = int(ver.split(".")[0])
        except ValueError:
            major = -1
        if major not in SUPPORTED_MAJOR:
            raise BackendUnavailable(
                f"coreml: coremltools {ver} is not supported (need 8.x or 9.x); "
                f"install it with `pip install coremltools==9.0`")

    # ------------------------------------------------------------------ export
    def _convert(self, ep, ct, ct_input, precision: str, target):
        return ct.convert(
            ep, inputs=[ct_input],
            outputs=[ct.TensorType(name=getattr(self, "_output", "embedding"), dtype=np.float32)],
            convert_to="mlprogram", minimum_deployment_target=target,
            compute_precision=(ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16),
        )

    def _describe(self, mlmodel, encoder: str, precision: str, spec, ios: int, image_type: bool,
                  compression: Optional[str] = None):
        version = _clipdeploy_version()
        label = precision if precision != "int8" else f"int8 weights ({compression}), fp16 compute"
        dim = int(spec.embed_dim)
        R = int(spec.image_size)
        if encoder == "image":
            mlmodel.short_description = (
                f"{spec.name} image encoder ({spec.image_tower}): RGB image -> L2-normalized "
                f"{dim}-d embedding ({label}, iOS{ios}+)")
            geometry = (f"resized to {spec.resize_size} on the shorter side ({spec.interpolation}) and "
                        f"center-cropped to {R}; ")
            inside = ("mean/std normalization is applied inside the network" if spec.mean is not None
                      else "the network takes [0,1] RGB, no mean/std")
            mlmodel.input_description["image"] = (
                f"RGB image {R}x{R} (e.g. a CVPixelBuffer), already {geometry}pixels are scaled by 1/255 "
                f"inside; {inside}" if image_type else
                f"float32 [1,3,{R},{R}] RGB in [0,1] (channels first), {geometry}{inside}")
        else:
            mlmodel.short_description = (
                f"{spec.name} text encoder ({spec.text_tower}): token ids -> L2-normalized "
                f"{dim}-d embedding ({label}, iOS{ios}+)")
            mlmodel.input_description["text"] = (
                f"int32 [1,{spec.context_length}] token ids ({spec.tokenizer}: start token 49406, "
                f"end token 49407, zero-padded to {spec.context_length})")
        classifier = mlmodel.get_spec().description.output[0].name == "logits"
        if classifier:
            mlmodel.short_description = (
                f"{spec.name} zero-shot classifier: RGB image -> logits over fixed labels (image encoder, "
                f"prompt-ensemble class matrix and logit_scale inside; {label}, iOS{ios}+)")
            mlmodel.output_description["logits"] = (
                "float32 [1,N] logit_scale x cosine(image, class); softmax gives the probabilities; the labels "
                "are the bundle's classifier/labels.json, in order")
        else:
            mlmodel.output_description["embedding"] = (
                f"float32 [1,{dim}] L2-normalized embedding; cosine similarity = dot product with the "
                f"other tower's embedding")
        mlmodel.author = "clipdeploy"
        mlmodel.license = spec.license
        mlmodel.version = version
        meta = {
            "model_name": spec.name,
            "clipdeploy_version": version,
            "encoder": "classifier" if classifier else encoder,
            "precision": precision,
            "minimum_deployment_target": f"iOS{ios}",
            "input_type": ("image" if image_type else "multiarray"),
            "tokenizer": spec.tokenizer,
            "context_length": str(spec.context_length),
            "embedding_dim": str(dim),
            "image_size": str(R),
            "resize_size": str(spec.resize_size),
            "crop": "center",
            "interpolation": spec.interpolation,
            "mean": ",".join(repr(float(v)) for v in spec.mean) if spec.mean is not None else "none",
            "std": ",".join(repr(float(v)) for v in spec.std) if spec.std is not None else "none",
            "input_range": ("uint8 RGB pixels (scaled by 1/255 inside)" if image_type
                            else "[0,1] RGB" if encoder == "image" else "token ids"),
            "normalization": "inside the network" if spec.mean is not None else "none",
            "output_normalized": "none (logits)" if classifier else "l2",
        }
        meta["preprocessing"] = json.dumps({
            "image_size": R, "resize_size": spec.resize_size, "crop": "center",
            "interpolation": spec.interpolation,
            "mean": list(spec.mean) if spec.mean is not None else None,
            "std": list(spec.std) if spec.std is not None else None,
            "applied_inside_network": ["mean/std"] if spec.mean is not None else [],
        }, sort_keys=True)
        if precision == "int8":
            meta["weight_compression"] = str(compression)
            meta["compute_precision"] = "fp16"
        for k, v in meta.items():
            mlmodel.user_defined_metadata[k] = v

    def export(self, wrapper, example, encoder: str, precision: str, out_path: Path, spec,
               options: Optional[dict] = None) -> ExportResult:
        # coremltools writes every converted or compressed model to a package from tempfile.mkdtemp
        # and deletes it only at interpreter exit (atexit): a package as large as the model's weights
        # per conversion, which in a long-lived process (a test worker, a notebook exporting several
        # models) fills the disk.
        # The conversions of one export get a private temp dir, removed when the export returns.
        with tempfile.TemporaryDirectory(prefix="clipdeploy-coreml-") as scratch:
            previous = tempfile.tempdir
            tempfile.tempdir = scratch
            try:
                return self._export(wrapper, example, encoder, precision, out_path, spec, options)
            finally:
                tempfile.tempdir = previous

    def _export(self, wrapper, example, encoder: str, precision: str, out_path: Path, spec,
                options: Optional[dict] = None) -> ExportResult:
        import torch

        options = dict(options or {})
        self.check_available(precision)
        ct = _import_coremltools()
        if encoder not in ("image", "text", "classifier"):
            raise ValueError(f"coreml: encoder must be 'image', 'text' or 'classifier', not {encoder!r}")
        # a classifier (clipdeploy.export.classifier) is an image model whose output is "logits" [1, N]
        self._output = "logits" if encoder == "classifier" else "embedding"
        encoder = "image" if encoder == "classifier" else encoder
        ios = int(options.get("ios", DEFAULT_IOS))
        if ios not in IOS_TARGETS:
            raise ValueError(f"coreml: options['ios'] must be one of {IOS_TARGETS}, not {ios!r}")
        target = getattr(ct.target, f"iOS{ios}")
        out_path = Path(out_path)
        if out_path.suffix != self.extension:
            raise ValueError(f"coreml: output path must end in {self.extension}: {out_path}")
        calibration = options.get("calibration")
        if precision == "int8" and (calibration is None or len(calibration) == 0):
            raise ValueError("coreml: int8 export needs calibration rows in options['calibration'] "
                             "(the pipeline passes the probe images / token ids)")

        # fixed shapes, batch 1
        example = example[:1]
        if encoder == "image":
            R = int(spec.image_size)
            example = example.to(torch.float32)
            if tuple(example.shape) != (1, 3, R, R):
                raise ValueError(f"coreml: image example has shape {tuple(example.shape)}, "
                                 f"expected (1, 3, {R}, {R})")
            ct_input = ct.TensorType(name="image", shape=(1, 3, R, R), dtype=np.float32)
        else:
            L = int(spec.context_length)
            example = example.to(torch.int32)
            if tuple(example.shape) != (1, L):
                raise ValueError(f"coreml: text example has shape {tuple(example.shape)}, "
                                 f"expected (1, {L}) (Core ML needs the fixed context length)")
            ct_input = ct.TensorType(name="text", shape=(1, L), dtype=np.int32)

        timings = {}
        wrapper = wrapper.eval()
        t0 = time.perf_counter()
        ep = _exported(wrapper, example)
        timings["torch_export_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        mlmodel = self._convert(ep, ct, ct_input, precision, target)
        timings["convert_s"] = round(time.perf_counter() - t0, 2)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        int8 = None
        if precision == "int8":
            int8 = self._export_int8(mlmodel, wrapper, encoder, spec, ios, out_path, calibration, timings,
                                     options.get("other_tower"))
        else:
            self._describe(mlmodel, encoder, precision, spec, ios, image_type=False)
            t0 = time.perf_counter()
            mlmodel.save(str(out_path))
            timings["save_s"] = round(time.perf_counter() - t0, 2)

        saved = ct.models.MLModel(str(out_path), skip_model_load=True).get_spec()
        inputs, outputs = _io_from_spec(saved)
        files = [out_path.name]
        wf = _weights_file(out_path)
        info = {
            "format": "mlprogram",
            "minimum_deployment_target": f"iOS{ios}",
            "compute_precision": "fp16" if precision == "int8" else precision,
            "specification_version": int(saved.specificationVersion),
            "coremltools_version": ct.__version__,
            "weights_bytes": wf.stat().st_size if wf.exists() else 0,
            "package_bytes": _dir_size(out_path),
            "output_dtype": outputs[0]["dtype"] if outputs else None,
            "timings": timings,
            "prediction": "macOS only" if sys.platform != "darwin" else "available",
        }
        if int8 is not None:
            info["weight_precision"] = "int8"
            info["int8"] = int8["info"]

        if encoder == "image" and options.get("image_type", True):
            R = int(spec.image_size)
            it_path = out_path.with_name(out_path.stem + "_imagetype" + self.extension)
            it_input = ct.ImageType(name="image", shape=(1, 3, R, R),
                                    color_layout=ct.colorlayout.RGB, scale=1 / 255.0, bias=[0, 0, 0])
            t0 = time.perf_counter()
            ep2 = _exported(wrapper, example)
            it_model = self._convert(ep2, ct, it_input, precision, target)
            if int8 is not None:              # the chosen compression, the same palettes / fp16 weights
                it_model = _compress(it_model, int8["name"], int8["lut_fn"], int8["keep_fp16"])
            self._describe(it_model, encoder, precision, spec, ios, image_type=True,
                           compression=int8 and int8["label"])
            it_model.save(str(it_path))
            timings["imagetype_total_s"] = round(time.perf_counter() - t0, 2)
            it_inputs, it_outputs = _io_from_spec(
                ct.models.MLModel(str(it_path), skip_model_load=True).get_spec())
            files.append(it_path.name)
            info["image_type_variant"] = {
                "file": it_path.name,
                "inputs": it_inputs,
                "outputs": it_outputs,
                "description": (f"same network with an image input (RGB {R}x{R}, e.g. a CVPixelBuffer; "
                                f"scale 1/255, bias 0); resize/center-crop happen in the app, mean/std "
                                f"(if any) inside the network"),
                "package_bytes": _dir_size(it_path),
            }

        return ExportResult(path=out_path, files=files, inputs=inputs, outputs=outputs, info=info)

    def _export_int8(self, mlmodel, wrapper, encoder: str, spec, ios: int, out_path: Path, calibration,
                     timings: dict, other_tower=None) -> dict:
        """Compress ``mlmodel``'s (fp16) weights: each candidate is saved and run through the reference
        interpreter on the calibration rows against the wrapper's embeddings of them; the one with the
        higher minimum cosine is moved to ``out_path``. ``other_tower`` (``options["other_tower"]``,
        optional): the other encoder's reference embeddings of its probe rows, for the zero-shot
        agreement. Returns {"name", "label", "keep_fp16", "lut_fn", "info"} (what the ImageType variant
        repeats, and ``info["int8"]``)."""
        import torch

        from clipdeploy.latency.coreml_ref import evaluate, load_program
        from clipdeploy.latency.parity import THRESHOLDS, failures, measure

        rows = np.ascontiguousarray(np.asarray(calibration))
        if encoder == "text" and rows.dtype != np.int32:
            rows = rows.astype(np.int32)
        elif encoder == "image" and rows.dtype != np.float32:
            rows = rows.astype(np.float32)
        want = ((3, int(spec.image_size), int(spec.image_size)) if encoder == "image"
                else (int(spec.context_length),))
        if rows.ndim != len(want) + 1 or tuple(rows.shape[1:]) != want:
            raise ValueError(f"coreml: calibration rows of shape {rows.shape}, expected [N, {', '.join(map(str, want))}]")
        with torch.no_grad():
            reference = wrapper(torch.from_numpy(rows)).numpy()

        t_all = time.perf_counter()
        lut_fn = _KMeansLUT(8)
        cands, runs = [], {}
        with tempfile.TemporaryDirectory(prefix="clipdeploy-coreml-int8-") as tmpd:
            def attempt(method: str, keep=(), label: Optional[str] = None) -> dict:
                label = label or method
                t0 = time.perf_counter()
                model = _compress(mlmodel, method, lut_fn, keep)
                self._describe(model, encoder, "int8", spec, ios, image_type=False, compression=label)
                path = Path(tmpd) / f"{label.replace('+', '_')}{self.extension}"
                model.save(str(path))
                t_compress = time.perf_counter() - t0
                t0 = time.perf_counter()
                got, rinfo = evaluate(path, rows)
                # zero-shot against options["other_tower"] (the pipeline passes it); without it the
                # reference embeddings themselves stand in: agreement = every row still closest to its
                # own reference row, a weak check (the export gate measures the real one)
                fig = measure(reference, got, reference if other_tower is None else other_tower)
                hist, _ = _op_histogram(model.get_spec())
                wf = _weights_file(path)
                cand = {"name": label, "method": method, "size_bytes": _dir_size(path),
                        "weight_bytes": wf.stat().st_size if wf.exists() else 0,
                        "cosine_min": fig["cosine_min"], "cosine_mean": fig["cosine_mean"],
                        "zero_shot_agreement": fig["zero_shot_agreement"], "max_abs": fig["max_abs"],
                        "compressed_ops": sum(v for k, v in hist.items() if k.startswith("constexpr_")),
                        "constexpr_ops": {k: v for k, v in hist.items() if k.startswith("constexpr_")},
                        "kept_fp16": list(keep),
                        "passed": not failures(fig, "int8") and fig["cosine_min"] >= INT8_CALIBRATION_COSINE,
                        "compress_s": round(t_compress, 2), "interpreter_s": round(time.perf_counter() - t0, 2),
                        "interpreter_seconds_per_run": rinfo["seconds_per_run"]}
                cands.append(cand)
                runs[label] = (path, method, list(keep), got, rinfo)
                return cand

            for method in INT8_CANDIDATES:
                attempt(method)
            fallback = None
            if not any(c["passed"] for c in cands):
                # neither clears the bars: retry the better one with its most sensitive weights in fp16
                import coremltools.optimize.coreml as cto
                best = max(cands, key=lambda c: c["cosine_min"])
                t0 = time.perf_counter()
                weights = {n: m.val for n, m in cto.get_weights_metadata(mlmodel, INT8_WEIGHT_THRESHOLD).items()}
                sim = _WeightSim(wrapper, rows, reference, weights)
                prog = load_program(runs[best["name"]][0], cache=False)
                consts = prog.constants()
                decompressed = {}
                for out in _constexpr_outputs(prog.spec):
                    for suffix in _COMPRESSED_SUFFIXES:
                        if out.endswith(suffix) and out[:-len(suffix)] in weights:
                            decompressed[out[:-len(suffix)]] = consts[out]
                del prog, consts
                fallback = {"from": best["name"], "rounds": []}
                target, tried = INT8_SIM_TARGET, []
                for _ in range(_INT8_ROUNDS):
                    keep, simfig = sim.keep_fp16(decompressed, target)
                    simfig["seconds"] = round(time.perf_counter() - t0, 2)
                    fallback["rounds"].append(simfig)
                    target = 1.0 - (1.0 - target) / 2
                    if not keep or keep in tried:
                        continue
                    tried.append(keep)
                    cand = attempt(best["method"], keep, f"{best['method']}+fp16" + ("" if len(tried) == 1
                                                                                      else f"-{len(tried)}"))
                    t0 = time.perf_counter()
                    # the simulation steers the cosine only: a zero-shot miss at the cosine bar (a near
                    # tie of the reference) is left to the export gate
                    if cand["passed"]:
                        break
                del sim

            chosen = max(cands, key=lambda c: (c["passed"], c["cosine_min"]))
            path, method, keep, got, rinfo = runs[chosen["name"]]
            if out_path.exists():
                shutil.rmtree(out_path)
            shutil.move(str(path), str(out_path))
        _memo_put(out_path, rows, got, rinfo)
        timings["int8_s"] = round(time.perf_counter() - t_all, 2)
        info = {
            "chosen": chosen["name"],
            "method": method,
            "candidates": cands,
            "weight_threshold": INT8_WEIGHT_THRESHOLD,
            "ios": ios,
            "kept_fp16": keep,
            "compute_precision": "fp16",
            "configs": {
                "linear8": "linear_quantize_weights: linear_symmetric int8, per output channel",
                "palettize8": "palettize_weights: per-tensor 256-entry LUT, k-means of the fp16 values",
            },
            "selection": (f"higher minimum cosine to the PyTorch embeddings of the {len(rows)} calibration "
                          f"rows, Core ML reference interpreter; passing: the int8 bars {THRESHOLDS['int8']} "
                          f"and a minimum cosine of at least {INT8_CALIBRATION_COSINE} on those rows"),
            "calibration_cosine": INT8_CALIBRATION_COSINE,
            "fallback": fallback,
            "zero_shot_against": ("the other tower's reference embeddings" if other_tower is not None else
                                  "the calibration rows' own reference embeddings (no other tower given)"),
        }
        return {"name": method, "label": chosen["name"], "keep_fp16": keep, "lut_fn": lut_fn, "info": info}

    # ------------------------------------------------------------------ checks
    def structural_check(self, path: Path, expected_inputs: list, expected_outputs: list,
                         precision: Optional[str] = None) -> dict:
        """Read the saved package without Core ML and check it is the promised ML Program.

        ``expected_*``: [{"name", "shape", "dtype"}] (dtype "image" plus optional "color_layout" for an
        ImageType input). ``precision`` ("fp16"/"fp32"), if given, also checks the stored weight dtype;
        "int8": weights decompressed at load (``constexpr_*`` ops) from int8/uint8 blobs (the fp16
        weights left, small or kept for accuracy, may still hold most bytes).
        Raises :class:`CoreMLStructureError` on any mismatch; returns what was checked.
        """
        ct = _import_coremltools()
        path = Path(path)
        if not path.is_dir():
            raise CoreMLStructureError(f"{path}: not an .mlpackage directory")
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        kind = spec.WhichOneof("Type")
        if kind != "mlProgram":
            raise CoreMLStructureError(f"{path}: model type is {kind!r}, expected an ML Program (mlProgram)")
        inputs, outputs = _io_from_spec(spec)
        problems = []
        for what, got, want in (("input", inputs, expected_inputs), ("output", outputs, expected_outputs)):
            got_names = [g["name"] for g in got]
            want_names = [w["name"] for w in want]
            if got_names != want_names:
                problems.append(f"{what} names {got_names} != expected {want_names}")
                continue
            for g, w in zip(got, want):
                if list(g["shape"] or []) != [int(s) for s in w["shape"]]:
                    problems.append(f"{what} {g['name']!r} shape {g['shape']} != expected {list(w['shape'])}")
                if g["dtype"] != w["dtype"]:
                    problems.append(f"{what} {g['name']!r} dtype {g['dtype']} != expected {w['dtype']}")
                if w.get("color_layout") and g.get("color_layout") != w["color_layout"]:
                    problems.append(f"{what} {g['name']!r} color layout {g.get('color_layout')} != "
                                    f"expected {w['color_layout']}")
        hist, opset = _op_histogram(spec)
        fn_inputs = [i.name for i in spec.mlProgram.functions["main"].inputs]
        if fn_inputs != [i["name"] for i in inputs]:
            problems.append(f"MIL main function inputs {fn_inputs} != model description {[i['name'] for i in inputs]}")
        compute_ops = {k: v for k, v in hist.items() if not k.startswith("const")}
        if not compute_ops:
            problems.append("the MIL main function has no compute ops")
        wf = _weights_file(path)
        blobs = read_weight_blobs(wf) if wf.exists() else {"count": 0, "bytes_by_dtype": {}, "file_size": 0}
        constexpr = {k: v for k, v in hist.items() if k.startswith("constexpr_")}
        if precision == "int8":
            by = blobs["bytes_by_dtype"]
            if not constexpr:
                problems.append("no constexpr (weight decompression) ops in an int8 program")
            if by.get("int8", 0) + by.get("uint8", 0) == 0:
                problems.append(f"no int8/uint8 weight blobs ({by}) in an int8 program")
        elif precision is not None:
            by = blobs["bytes_by_dtype"]
            main = max(by, key=by.get) if by else None
            want = {"fp16": "float16", "fp32": "float32"}[precision]
            if main != want:
                problems.append(f"weights are mostly {main} ({by}), expected {want} for {precision}")
        if problems:
            raise CoreMLStructureError(f"{path.name}: structural check failed: " + "; ".join(problems))
        return {
            "model_type": "mlProgram",
            "specification_version": int(spec.specificationVersion),
            "opset": opset,
            "inputs": inputs,
            "outputs": outputs,
            "op_histogram": hist,
            "op_types": sorted(compute_ops),
            "n_ops": sum(compute_ops.values()),
            "n_const": hist.get("const", 0),
            "compressed_ops": sum(constexpr.values()),
            "weight_file_bytes": blobs["file_size"],
            "weight_blobs": blobs["count"],
            "weight_bytes_by_dtype": blobs["bytes_by_dtype"],
            "package_bytes": _dir_size(path),
            "user_defined_metadata": dict(spec.description.metadata.userDefined),
        }

    # ------------------------------------------------------------------ run
    def reference_run(self, path: Path, inputs: np.ndarray) -> tuple:
        """The saved package through the Core ML reference interpreter: ``(outputs [N, D], info)``;
        ``inputs``: float32 images [N, 3, R, R] (an ImageType package: 0..255 values) or int32 ids."""
        from clipdeploy.latency.coreml_ref import evaluate
        x = np.asarray(inputs)
        if _REF_MEMO:                  # an int8 export evaluated exactly these bytes on these rows already
            hit = _memo_get(path, x)
            if hit is not None:
                got, info = hit
                return got, {**info, "reused": "int8 candidate evaluation at export (same package bytes, "
                                               "same inputs)"}
        return evaluate(path, x)

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        if sys.platform != "darwin":
            raise BackendUnavailable("Core ML prediction needs macOS; elsewhere the gate uses reference_run() "
                                    "(the Core ML reference interpreter)")
        ct = _import_coremltools()
        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        spec = model.get_spec()
        feat = spec.description.input[0]
        name, out_name = feat.name, spec.description.output[0].name
        is_image = feat.type.WhichOneof("Type") == "imageType"
        rows = []
        for row in np.asarray(inputs):
            if is_image:
                from PIL import Image
                hwc = np.clip(np.round(np.asarray(row, np.float32).transpose(1, 2, 0) * 255.0), 0, 255)
                value = Image.fromarray(hwc.astype(np.uint8), "RGB")
            elif np.issubdtype(row.dtype, np.integer):
                value = row[None].astype(np.int32)
            else:
                value = row[None].astype(np.float32)
            out = model.predict({name: value})[out_name]
            rows.append(np.asarray(out, dtype=np.float32).reshape(-1))
        return np.stack(rows)


def _dir_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
