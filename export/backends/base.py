"""The contract every export backend implements (one module per target in this package).

A backend turns an encoder wrapper (:mod:`clipdeploy.export.wrappers`) into an artifact file and runs
that artifact on numpy inputs for the parity gate. It never writes outside the path it is given; the
bundle writer hands it a path inside a temporary directory and moves the result into place only after
the parity gate passed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from torch import nn


class BackendUnavailable(RuntimeError):
    """This backend (or this precision / mode of it) cannot run here; the message says why and what to do."""


@dataclass
class ExportResult:
    path: Path                       # the main artifact file (e.g. image_encoder.onnx)
    files: list                      # every file/dir written (relative to path.parent), path included
    inputs: list                     # [{"name", "shape", "dtype"}]; dynamic dims as strings, e.g. "batch"
    outputs: list                    # same form
    info: dict = field(default_factory=dict)   # backend specifics (opset, delegation share, ...)


class Backend:
    name: str = ""                   # target name on the command line
    extension: str = ""              # ".onnx", ".pte", ".mlpackage"
    precisions: tuple = ("fp32",)    # precisions this backend can write
    can_run_here: bool = True        # False: the real runtime is not on this host (Core ML on Linux)
    #: what evaluates the saved artifact where the real runtime cannot (None: structural check only)
    reference_runtime: Optional[str] = None

    def check_available(self, precision: str) -> None:
        """Raise BackendUnavailable (one clear line) if this backend/precision cannot export here."""

    def export(self, wrapper: nn.Module, example: "torch.Tensor", encoder: str, precision: str,
               out_path: Path, spec, options: Optional[dict] = None) -> ExportResult:
        raise NotImplementedError

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        """Run the saved artifact on ``inputs`` (batch of probe images float32 or ids int32) and return
        the float32 embeddings [N, D]. Artifacts with a static batch of 1 are run row by row."""
        raise NotImplementedError

    def open(self, path: Path):
        """Load the saved artifact once and return ``call(x)`` that runs one input batch (numpy) and
        returns the embeddings; used to time precision variants against each other at export time."""
        raise BackendUnavailable(f"{self.name}: artifacts cannot run on this host")

    def reference_run(self, path: Path, inputs: np.ndarray) -> tuple:
        """Where ``can_run_here`` is False: evaluate the *saved* artifact with a reference
        implementation of its format (not the device's kernels) -> ``(embeddings [N, D], info)``."""
        raise BackendUnavailable(f"{self.name}: no reference runtime for this artifact on this host")


def time_alternately(calls: list, x: np.ndarray, runs: int = 15, warmup: int = 3) -> list:
    """Median ms of each ``call(x)``, the calls interleaved run by run (the same load on each); how
    precision variants and quantization candidates are timed against each other at export."""
    for call in calls:
        for _ in range(warmup):
            call(x)
    samples = [[] for _ in calls]
    for _ in range(runs):
        for call, s in zip(calls, samples):
            t = time.perf_counter()
            call(x)
            s.append((time.perf_counter() - t) * 1e3)
    return [float(np.median(s)) for s in samples]
