"""Core ML backend: an encoder wrapper -> an ML Program ``.mlpackage`` (a directory).

Conversion goes through ``torch.export`` (``torch.jit.trace`` conversion fails on this torch) and
works on any host; Core ML *prediction* only exists on macOS. Elsewhere the parity gate falls back to
:meth:`CoreMLBackend.structural_check`, which reads the saved package (spec protobuf + MILBlob weights)
without loading it into Core ML.

Shapes are fixed: image float32 ``[1, 3, R, R]``, text int32 ``[1, 77]`` (a dynamic sequence length
crashes Core ML at load), output float32 ``embedding [1, D]`` — fp16 programs compute in fp16 but
keep float32 inputs/outputs (coremltools inserts the casts).

For the image encoder a second package ``<stem>_imagetype.mlpackage`` is written whose input is a
``ct.ImageType`` (RGB, scale 1/255, no bias), so an app can hand it a ``CVPixelBuffer`` directly; the
model's mean/std (if any) stays inside the network either way.
"""
from __future__ import annotations

import collections
import json
import sys
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


class CoreMLBackend(Backend):
    name = "coreml"
    extension = ".mlpackage"
    precisions = ("fp16", "fp32")
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
            outputs=[ct.TensorType(name="embedding", dtype=np.float32)],
            convert_to="mlprogram", minimum_deployment_target=target,
            compute_precision=(ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32),
        )

    def _describe(self, mlmodel, encoder: str, precision: str, spec, ios: int, image_type: bool):
        version = _clipdeploy_version()
        dim = int(spec.embed_dim)
        R = int(spec.image_size)
        if encoder == "image":
            mlmodel.short_description = (
                f"{spec.name} image encoder ({spec.image_tower}): RGB image -> L2-normalized "
                f"{dim}-d embedding ({precision}, iOS{ios}+)")
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
                f"{dim}-d embedding ({precision}, iOS{ios}+)")
            mlmodel.input_description["text"] = (
                f"int32 [1,{spec.context_length}] token ids ({spec.tokenizer}: start token 49406, "
                f"end token 49407, zero-padded to {spec.context_length})")
        mlmodel.output_description["embedding"] = (
            f"float32 [1,{dim}] L2-normalized embedding; cosine similarity = dot product with the "
            f"other tower's embedding")
        mlmodel.author = "clipdeploy"
        mlmodel.license = spec.license
        mlmodel.version = version
        meta = {
            "model_name": spec.name,
            "clipdeploy_version": version,
            "encoder": encoder,
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
            "output_normalized": "l2",
        }
        meta["preprocessing"] = json.dumps({
            "image_size": R, "resize_size": spec.resize_size, "crop": "center",
            "interpolation": spec.interpolation,
            "mean": list(spec.mean) if spec.mean is not None else None,
            "std": list(spec.std) if spec.std is not None else None,
            "applied_inside_network": ["mean/std"] if spec.mean is not None else [],
        }, sort_keys=True)
        for k, v in meta.items():
            mlmodel.user_defined_metadata[k] = v

    def export(self, wrapper, example, encoder: str, precision: str, out_path: Path, spec,
               options: Optional[dict] = None) -> ExportResult:
        import torch

        options = dict(options or {})
        self.check_available(precision)
        ct = _import_coremltools()
        if encoder not in ("image", "text"):
            raise ValueError(f"coreml: encoder must be 'image' or 'text', not {encoder!r}")
        ios = int(options.get("ios", DEFAULT_IOS))
        if ios not in IOS_TARGETS:
            raise ValueError(f"coreml: options['ios'] must be one of {IOS_TARGETS}, not {ios!r}")
        target = getattr(ct.target, f"iOS{ios}")
        out_path = Path(out_path)
        if out_path.suffix != self.extension:
            raise ValueError(f"coreml: output path must end in {self.extension}: {out_path}")

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
        with torch.no_grad():
            ep = torch.export.export(wrapper, (example,)).run_decompositions({})
        timings["torch_export_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        mlmodel = self._convert(ep, ct, ct_input, precision, target)
        timings["convert_s"] = round(time.perf_counter() - t0, 2)
        self._describe(mlmodel, encoder, precision, spec, ios, image_type=False)
        out_path.parent.mkdir(parents=True, exist_ok=True)
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
            "compute_precision": precision,
            "specification_version": int(saved.specificationVersion),
            "coremltools_version": ct.__version__,
            "weights_bytes": wf.stat().st_size if wf.exists() else 0,
            "package_bytes": _dir_size(out_path),
            "output_dtype": outputs[0]["dtype"] if outputs else None,
            "timings": timings,
            "prediction": "macOS only" if sys.platform != "darwin" else "available",
        }

        if encoder == "image" and options.get("image_type", True):
            R = int(spec.image_size)
            it_path = out_path.with_name(out_path.stem + "_imagetype" + self.extension)
            it_input = ct.ImageType(name="image", shape=(1, 3, R, R),
                                    color_layout=ct.colorlayout.RGB, scale=1 / 255.0, bias=[0, 0, 0])
            t0 = time.perf_counter()
            with torch.no_grad():
                ep2 = torch.export.export(wrapper, (example,)).run_decompositions({})
            it_model = self._convert(ep2, ct, it_input, precision, target)
            self._describe(it_model, encoder, precision, spec, ios, image_type=True)
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

    # ------------------------------------------------------------------ checks
    def structural_check(self, path: Path, expected_inputs: list, expected_outputs: list,
                         precision: Optional[str] = None) -> dict:
        """Read the saved package without Core ML and check it is the promised ML Program.

        ``expected_*``: [{"name", "shape", "dtype"}] (dtype "image" plus optional "color_layout" for an
        ImageType input). ``precision`` ("fp16"/"fp32"), if given, also checks the stored weight dtype.
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
        if precision is not None:
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
        return evaluate(path, np.asarray(inputs))

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
