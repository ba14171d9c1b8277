"""One class per runtime that can load a bundle's artifacts and run them.

Every runtime has the same small contract, used by :mod:`clipdeploy.latency.worker` inside a fresh
process per artifact × runtime:

* ``available()`` -> ``None`` or the reason it cannot run on this host (cheap: no heavy import);
* ``skip_reason(artifact)`` -> ``None`` or why this runtime does not run that artifact here;
* ``configure(threads)`` -> called once, before anything is loaded;
* ``load(artifact)`` -> a handle (what "cold load" / "warm load" time);
* ``infer(handle, x)`` -> float32 embeddings of one batch-1 input (what the steady state times);
* ``embed(handle, inputs)`` -> embeddings of the whole probe set, run the way the export gate ran it
  (ONNX Runtime: one batch; static-batch artifacts: row by row), for the parity figures;
* ``versions()`` -> library versions for the report.

Runtimes: ``onnxruntime`` (CPU execution provider, ``intra_op_num_threads`` = threads),
``executorch`` (XNNPACK ``.pte`` through ``executorch.runtime``; the XNNPACK thread pool is sized
before any program is loaded and never reset while programs are alive), ``litert`` (``.tflite`` in
``ai_edge_litert``'s Interpreter with its default XNNPACK delegate, ``num_threads`` = threads), ``torch`` (the PyTorch
reference: the bundle's model rebuilt from its recorded weights, reparameterized, eager, computing the
wrappers' function), ``coreml`` (``MLModel.predict``, macOS only, ``compute_units`` selectable).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from importlib import metadata
from typing import Optional

import numpy as np

from .bundle import Artifact, Bundle


def _dist_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Runtime:
    name = ""
    targets: tuple = ()          # manifest targets this runtime runs
    libraries: tuple = ()        # distributions whose versions go into the report

    def __init__(self, bundle: Bundle, options: Optional[dict] = None):
        self.bundle = bundle
        self.options = dict(options or {})
        self.threads = None

    # -- host / artifact selection (parent process, cheap)
    @classmethod
    def available(cls) -> Optional[str]:
        return None

    def runs(self, art: Artifact) -> bool:
        return art.target in self.targets

    def skip_reason(self, art: Artifact) -> Optional[str]:
        return None

    @classmethod
    def versions(cls) -> dict:
        return {d: _dist_version(d) for d in cls.libraries}

    def describe_options(self) -> dict:
        return {"threads": self.threads}

    # -- in the worker process
    def configure(self, threads: Optional[int]) -> None:
        self.threads = threads

    def load(self, art: Artifact):
        raise NotImplementedError

    def infer(self, handle, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, handle, inputs: np.ndarray) -> np.ndarray:
        rows = [np.asarray(self.infer(handle, inputs[i:i + 1]), np.float32).reshape(1, -1)
                for i in range(len(inputs))]
        return np.concatenate(rows, 0)

    def release(self, handle) -> None:
        del handle

    def flops(self, handle, x: np.ndarray) -> Optional[int]:
        return None


# ---------------------------------------------------------------------------------------------------

class OnnxRuntime(Runtime):
    name = "onnxruntime"
    targets = ("onnx",)
    libraries = ("onnxruntime", "numpy")

    @classmethod
    def available(cls):
        return None if _has("onnxruntime") else "onnxruntime is not installed (pip install onnxruntime)"

    def _spinning(self) -> bool:
        return bool(self.options.get("ort_spinning", True))

    def describe_options(self):
        return {"threads": self.threads, "execution_provider": "CPUExecutionProvider",
                "intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
                "execution_mode": "sequential", "graph_optimization_level": "ORT_ENABLE_ALL",
                "session.intra_op.allow_spinning": "1" if self._spinning() else "0"}

    def load(self, art):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ONNX Runtime's own default (spin-wait on): what an app's default session does. One runtime
        # per process keeps its spinning pool from starving another runtime; --ort-spinning off
        # measures the other setting.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning() else "0")
        sess = ort.InferenceSession(str(self.bundle.path / art.path), sess_options=so,
                                    providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
                 "tensor(float16)": np.float16}.get(inp.type, np.float32)
        return {"session": sess, "input": inp.name, "dtype": dtype}

    def infer(self, h, x):
        return h["session"].run(None, {h["input"]: np.ascontiguousarray(x, dtype=h["dtype"])})[0]

    def embed(self, h, inputs):
        # as the export gate: the whole probe set in one batch (the ONNX artifacts have a dynamic batch)
        return np.asarray(self.infer(h, inputs), np.float32)


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    targets = ("executorch", "executorch-coreml")
    libraries = ("executorch", "torch")

    @classmethod
    def available(cls):
        return None if _has("executorch") else "executorch is not installed (pip install executorch)"

    def skip_reason(self, art):
        if art.target == "executorch-coreml" and sys.platform != "darwin":
            return "a Core ML-delegated .pte runs only on Apple platforms"
        return None

    def describe_options(self):
        return {"threads": self.threads, "delegate": "XNNPACK", "xnnpack_threadpool": self.threads}

    def configure(self, threads):
        # Size XNNPACK's thread pool once, before any program is loaded: resetting it with programs
        # alive once hung a run, so this is the only place it is touched.
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as _R  # noqa: F401  (loads the backends)
        self.threads = threads
        if threads and portable_lib._threadpool_get_thread_count() != int(threads):
            portable_lib._unsafe_reset_threadpool(int(threads))
        self.threads = int(portable_lib._threadpool_get_thread_count())

    def load(self, art):
        from pathlib import Path

        from executorch.runtime import Runtime as ETRuntime
        program = ETRuntime.get().load_program(Path(self.bundle.path / art.path))
        method = program.load_method("forward")
        if method is None:
            raise RuntimeError(f"{art.path}: no 'forward' method")
        return {"program": program, "method": method,
                "dtype": np.int32 if art.encoder == "text" else np.float32}

    def infer(self, h, x):
        import torch
        out = h["method"].execute([torch.from_numpy(np.ascontiguousarray(x, dtype=h["dtype"]))])
        y = out[0] if isinstance(out, (list, tuple)) else out
        return y.numpy() if hasattr(y, "numpy") else np.asarray(y)


class TorchRuntime(Runtime):
    """The PyTorch reference: eager, reparameterized, computing exactly the exported function.

    image: float32 [B,3,R,R] in [0,1] -> (x - mean) * (1/std) when the model has mean/std -> visual ->
    L2 normalize; text: int32 ids [B,77] -> text tower -> L2 normalize (clipdeploy.export.wrappers).
    """
    name = "torch"
    targets = ("pytorch",)
    libraries = ("torch", "timm", "open_clip_torch")

    def describe_options(self):
        return {"threads": self.threads, "mode": "eager", "reparameterized": True,
                "reparam": "reparameterize (verified)" if self.options.get("verify_reparam")
                else "to_inference_form",
                "weights": self.bundle.weights() if not self.options.get("checkpoint")
                else {"checkpoint": self.options["checkpoint"]}}

    def configure(self, threads):
        import torch
        self.threads = threads
        if threads:
            torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        self.threads = torch.get_num_threads()

    def _resolve_checkpoint(self, src: Optional[str]):
        from pathlib import Path
        if src is None:
            return None                                 # official weights (downloaded, cached)
        if src.startswith(("http://", "https://")):
            return src
        for cand in (Path(src), self.bundle.path / src):
            if cand.exists():
                return str(cand)
        raise FileNotFoundError(f"the bundle's checkpoint {src!r} is not found (tried it relative to "
                                f"the working directory and to the bundle); pass --checkpoint")

    def load(self, art):
        import torch

        from clipdeploy.models import load_model
        from clipdeploy.reparam import reparameterize, to_inference_form

        w = self.bundle.weights()
        if self.options.get("checkpoint"):
            w = {"checkpoint": self.options["checkpoint"], "sha256": None}
        if "random_weights" in w:
            m = load_model(self.bundle.model, random_weights=w["random_weights"])
        else:
            m = load_model(self.bundle.model, checkpoint=self._resolve_checkpoint(w["checkpoint"]),
                           sha256=w.get("sha256"), progress=False)
        if m.fused:
            module = m.module
        elif self.options.get("verify_reparam"):
            module = reparameterize(m, flops=False)[0].module
        else:
            # the same folds as reparameterize(), without its fold-by-fold verification (20x faster);
            # the parity figures against the bundle's reference embeddings check the result
            module = to_inference_form(m.module)
        module = module.eval()
        return {"fn": encoder_fn(module, m.spec, art.encoder), "module": module,
                "dtype": torch.int32 if art.encoder == "text" else torch.float32}

    def infer(self, h, x):
        import torch
        with torch.inference_mode():
            return h["fn"](torch.from_numpy(np.ascontiguousarray(x)).to(h["dtype"])).numpy()

    def embed(self, h, inputs):
        # as the export reference: the whole probe set in one batch
        return np.asarray(self.infer(h, inputs), np.float32)

    def flops(self, h, x):
        import torch
        from torch.utils.flop_counter import FlopCounterMode
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            h["fn"](torch.from_numpy(np.ascontiguousarray(x)).to(h["dtype"]))
        return int(counter.get_total_flops())


class CoreMLRuntime(Runtime):
    name = "coreml"
    targets = ("coreml",)
    libraries = ("coremltools",)
    COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")

    @classmethod
    def available(cls):
        if sys.platform != "darwin":
            return ("Core ML predict needs macOS (clip-latency verify checks the program here with the "
                    "reference interpreter)")
        return None if _has("coremltools") else "coremltools is not installed"

    def describe_options(self):
        return {"threads": None, "compute_units": self.options.get("compute_units", "ALL")}

    def load(self, art):
        import coremltools as ct
        cu = getattr(ct.ComputeUnit, self.options.get("compute_units", "ALL"))
        model = ct.models.MLModel(str(self.bundle.path / art.path), compute_units=cu)
        spec = model.get_spec()
        feat = spec.description.input[0]
        return {"model": model, "input": feat.name, "output": spec.description.output[0].name,
                "image_type": feat.type.WhichOneof("Type") == "imageType"}

    def infer(self, h, x):
        x = np.asarray(x)
        if h["image_type"]:
            from PIL import Image
            hwc = np.clip(np.round(np.asarray(x[0], np.float32).transpose(1, 2, 0) * 255.0), 0, 255)
            value = Image.fromarray(hwc.astype(np.uint8), "RGB")
        elif np.issubdtype(x.dtype, np.integer):
            value = x.astype(np.int32)
        else:
            value = x.astype(np.float32)
        out = h["model"].predict({h["input"]: value})[h["output"]]
        return np.asarray(out, np.float32).reshape(1, -1)


class LiteRTRuntime(Runtime):
    """LiteRT ``.tflite`` through ``ai_edge_litert``'s Interpreter: the XNNPACK delegate LiteRT applies on
    CPU by default, ``num_threads`` = threads (the interpreter passes it to the delegate it creates). The
    interpreter and its signature runner are the export gate's own (:mod:`clipdeploy.latency.litert_run`),
    so both run the artifact the same way."""
    name = "litert"
    targets = ("litert",)
    libraries = ("ai-edge-litert", "litert-torch")

    @classmethod
    def available(cls):
        return None if _has("ai_edge_litert") else "ai-edge-litert is not installed (pip install ai-edge-litert)"

    def describe_options(self):
        return {"threads": self.threads, "delegate": "XNNPACK (LiteRT's default CPU delegate)",
                "num_threads": self.threads}

    def load(self, art):
        from . import litert_run as lb
        interp = lb.interpreter(self.bundle.path / art.path, self.threads)
        d = lb.delegation_figures(interp)
        if not d["partitions"]:
            raise RuntimeError(f"{art.path}: the Interpreter applied no XNNPACK delegate")
        return {"interp": interp, "call": lb.runner(interp), "delegation": d}

    def infer(self, h, x):
        return h["call"](x)


def encoder_fn(module, spec, encoder: str):
    """The function an exported artifact computes (clipdeploy.export.wrappers), on ``module``."""
    import torch
    import torch.nn.functional as F

    if encoder == "image":
        visual = module.visual
        if spec.mean is not None:
            mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
            inv_std = 1.0 / torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
            return lambda x: F.normalize(visual((x - mean) * inv_std), dim=-1)
        return lambda x: F.normalize(visual(x), dim=-1)
    text = module.text
    return lambda ids: F.normalize(text(ids), dim=-1)


def structural_flops(model: str, inputs: dict) -> dict:
    """FLOPs (batch 1) of each encoder of ``model`` in inference form, counted with
    ``torch.utils.flop_counter`` on a module built without weights (FLOPs depend on structure only).
    ``inputs``: {encoder: batch-1 numpy input}."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from clipdeploy.models import build_module, get_spec
    from clipdeploy.reparam import to_inference_form

    spec = get_spec(model)
    module = to_inference_form(build_module(spec).eval()).eval()
    out = {}
    for enc, x in inputs.items():
        fn = encoder_fn(module, spec, enc)
        t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.int32 if enc == "text" else torch.float32)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            fn(t)
        out[enc] = int(counter.get_total_flops())
    return out


RUNTIMES = {cls.name: cls for cls in (OnnxRuntime, ExecuTorchRuntime, LiteRTRuntime, TorchRuntime, CoreMLRuntime)}


def get_runtime(name: str, bundle: Bundle, options: Optional[dict] = None) -> Runtime:
    return RUNTIMES[name](bundle, options)


def child_env(threads: Optional[int]) -> dict:
    """Environment of a worker: OpenMP/MKL pools pinned to ``threads``, NumPy's BLAS to one thread."""
    env = dict(os.environ)
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    # NumPy's BLAS only runs the calibration workload, which is single-threaded by definition
    env["OPENBLAS_NUM_THREADS"] = env["VECLIB_MAXIMUM_THREADS"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
