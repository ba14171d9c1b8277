"""Export targets: names on the command line -> backend classes (imported lazily)."""
from __future__ import annotations

import difflib

from clipdeploy.latency.parity import QUANTIZED
from clipdeploy.models.errors import ClipDeployError

# target -> (module, class, default precision)
TARGETS = {
    "coreml": ("clipdeploy.export.backends.coreml_backend", "CoreMLBackend", "fp16"),
    "onnx": ("clipdeploy.export.backends.onnx_backend", "OnnxBackend", "fp32"),
    "executorch": ("clipdeploy.export.backends.executorch_backend", "ExecuTorchBackend", "fp32"),
    "executorch-coreml": ("clipdeploy.export.backends.executorch_backend", "ExecuTorchCoreMLBackend", "fp16"),
    "litert": ("clipdeploy.export.backends.litert_backend", "LiteRTBackend", "fp32"),
}
ALL = ("coreml", "onnx", "executorch", "litert")   # --target all (the Core ML-delegated .pte is opt-in)


class ExportInputError(ClipDeployError):
    """Bad export request (target, precision, output directory)."""


def backend(target: str):
    import importlib
    if target not in TARGETS:
        close = difflib.get_close_matches(target, list(TARGETS) + ["all"], n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ExportInputError(f"unknown target '{target}': {hint}choose from "
                               f"{', '.join(list(TARGETS) + ['all'])}")
    module, cls, _ = TARGETS[target]
    return getattr(importlib.import_module(module), cls)()


def resolve(targets: list, precision: str = None) -> list:
    """[(target, precision)] for the request; checks each target can write that precision. A quantized
    precision brings the target's default float precision along: the bundle keeps both, and the
    quantized one is the default only where it passed its gate and ran faster (see the pipeline)."""
    names = []
    for t in targets:
        names.extend(ALL if t == "all" else [t])
    out = []
    for t in dict.fromkeys(names):
        b = backend(t)
        p = precision or TARGETS[t][2]
        if p not in b.precisions:
            raise ExportInputError(
                f"target '{t}' cannot write {p} artifacts (it supports {', '.join(b.precisions)}); "
                f"drop --precision or choose {' or '.join(b.precisions)}")
        if p in QUANTIZED:                 # the float artifact it is measured against (and falls back to)
            out.append((t, TARGETS[t][2]))
        out.append((t, p))
    return out
