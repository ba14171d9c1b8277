"""The calibration workload: a fixed piece of single-thread CPU work measured inside every artifact
worker — 15 samples right before its steady state, ``INTERLEAVED`` samples after each block of it, 15
right after it (all of them, in order, are the worker's ``steady.workers[].calibration_ms``; the
record's ``calibration`` pools the accepted workers').

One sample = a float32 GEMM (256 × 256 × 256) plus a 3×3 convolution (32 → 32 channels on a 32×32 map,
written as a sliding-window tensordot), in NumPy on one thread (the workers run with
``OPENBLAS_NUM_THREADS=1``; the runtimes' own pools are unaffected). Fixed seed, ~0.5–1 ms per sample on
the build machine.

``compare`` divides each process's figure (the median of its block means) by the median of that
process's calibration samples: on the 2-vCPU build machine the speed of one core drifts by up to 2×
within seconds with no steal or other load visible from the guest, and the calibration measured in the
same process and the same seconds follows it (docs/latency.md, "Does the calibration earn its place").
Dividing block by block by a 5-sample calibration, as before, added the calibration's own noise to every
block; pooling a process's ~100 samples does not.
"""
from __future__ import annotations

import time

import numpy as np

NAME = "numpy-gemm256-conv3x3-1thread"
DESCRIPTION = ("one sample = float32 matmul 256x256 @ 256x256 + 3x3 conv 32->32 channels on a "
               "32x32 map (sliding-window tensordot), NumPy, one BLAS thread, seed 0")
FLOPS_PER_SAMPLE = 2 * 256 ** 3 + 2 * 32 * 32 * 9 * 32 * 32
RECORD_BLOCK = 15          # samples per block inside an artifact worker (before and after the steady state)
INTERLEAVED = 8            # samples after each block of the steady state (~2-3 % of its time)


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
