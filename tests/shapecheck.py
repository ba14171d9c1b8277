"""Shared by the bundle tests: an image artifact of a bundle takes batch 4 with the rows of batch 1."""
import json

import numpy as np
import torch

from clipdeploy.models import shapes as S
from clipdeploy.models.probe import probe_images


def image_rows_equal_batch1(bundle, target):
    from clipdeploy.export.targets import backend
    m = json.loads((bundle / "manifest.json").read_text())
    (a,) = [a for a in m["artifacts"] if a["target"] == target and a["encoder"] == "image"]
    assert S.accepts(a["shapes"]["batch"], 4)
    batch = a["parity"]["shapes"]["batch"]
    assert [r["batch"] for r in batch] == [4, 8] and all(r["max_abs_vs_batch1"] <= 1e-5 for r in batch)
    # and again here, in the runtime, on four images the gate never saw
    call = backend(target).open(bundle / a["path"])
    x = probe_images(m["spec"]["image_size"], 10).numpy()[6:]

    def run(v):
        y = call(np.ascontiguousarray(v))
        return np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y, np.float32)

    four = run(x)
    one = np.concatenate([run(x[i:i + 1]) for i in range(4)])
    assert four.shape == (4, m["embedding_dim"]) and np.abs(four - one).max() <= 1e-5
    assert float((four @ four.T)[~np.eye(4, dtype=bool)].max()) < 0.999     # four different rows
