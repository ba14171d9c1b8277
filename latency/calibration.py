"""The calibration workload: a fixed piece of CPU work measured in every run, so that ``compare`` can
tell a slower artifact from a slower (or busier) machine.

One sample = a float32 GEMM (256 × 256 × 256) plus a 3×3 convolution (32 → 32 channels on a 32×32 map,
written as a sliding-window tensordot), in NumPy on one thread (the workers run with
``OPENBLAS_NUM_THREADS=1``; the runtimes' own pools are unaffected). Fixed seed, ~1–3 ms per sample on a
desktop core. NumPy keeps it cheap to run inside every worker (no torch import for ONNX Runtime).

It is measured (a) in its own worker at the start and at the end of a run (the report's
``calibration``), (b) inside every artifact worker, in two blocks right before and right after the
steady state (the record's ``calibration``), and (c) interleaved with the steady state: after every
~0.25 s of timed samples, a block of 5 calibration samples whose median is paired with that block of
samples (the record's ``steady.blocks``). A shared machine's speed drifts by 10-40 % within seconds;
the gate compares block medians divided by their own calibration, resampling whole blocks.
"""
from __future__ import annotations

import time

import numpy as np

NAME = "numpy-gemm256-conv3x3-1thread"
DESCRIPTION = ("one sample = float32 matmul 256x256 @ 256x256 + 3x3 conv 32->32 channels on a "
               "32x32 map (sliding-window tensordot), NumPy, one BLAS thread, seed 0")
FLOPS_PER_SAMPLE = 2 * 256 ** 3 + 2 * 32 * 32 * 9 * 32 * 32
RECORD_BLOCK = 15          # samples per block inside an artifact worker (before and after the steady state)
BLOCK_SECONDS = 0.25       # steady state: a calibration block after every ~0.25 s of timed samples ...
BLOCK_MIN_SAMPLES = 3      # ... and at least this many samples
INTERLEAVED_BLOCK = 5      # calibration samples per interleaved block (its median is paired with the block)


class Workload:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((256, 256), dtype=np.float32)
        self.b = rng.standard_normal((256, 256), dtype=np.float32)
        self.x = rng.standard_normal((32, 34, 34), dtype=np.float32)       # padded 32x32 map
        self.w = rng.standard_normal((32, 32, 3, 3), dtype=np.float32)
        self.win = np.lib.stride_tricks.sliding_window_view(self.x, (3, 3), axis=(1, 2))  # 32,32,32,3,3

    def one(self) -> None:
        self.a @ self.b
        np.tensordot(self.w, self.win, axes=([1, 2, 3], [0, 3, 4]))

    def block(self, n: int, warmup: int = 2) -> list:
        for _ in range(warmup):
            self.one()
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            self.one()
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out
