"""The parity gate: an artifact's embeddings of the probe set against the PyTorch reference.

The figures and bars are defined once in :mod:`clipdeploy.latency.parity` (the harness and the Core ML
reference interpreter use the same): max abs error of the normalized embeddings, cosine (min, mean),
and zero-shot top-1 agreement against the other tower's reference embeddings. Never cosine alone.
fp32: max abs <= 1e-5; fp16: cosine >= 0.99995 and max abs <= 1.5e-3; agreement 100 % for both.
int8 (quantized): cosine >= 0.999 and zero-shot agreement >= 99 %, no max-abs bar.
Every artifact is also held to VALIDATION_THRESHOLDS on the generated validation set (every row at
the cosine bar, agreement >= 95 % both ways; see clipdeploy.latency.parity).
"""
from clipdeploy.latency.parity import (QUANTIZED, THRESHOLDS, VALIDATION_THRESHOLDS, ParityError,  # noqa: F401
                                       check, failures, measure)
