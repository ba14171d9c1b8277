import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIPDEPLOY_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
APPLE_MODELS = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b"]

torch.set_num_threads(2)


def read_reference_layout(name):
    """{key: (dtype name, shape)} from ../shared/reference/<name>.keys.tsv."""
    path = REFERENCE / f"{name}.keys.tsv"
    if not path.exists():
        pytest.fail(f"reference layout {path} is missing: the tests need the project's shared/ "
                    f"folder beside the repository (or CLIPDEPLOY_SHARED pointing to it)")
    out = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, dtype, shape = line.split("\t")
        out[key] = (dtype, () if shape == "scalar" else tuple(int(s) for s in shape.split("x")))
    return out


_MODELS = {}


@pytest.fixture(scope="session")
def seeded_model():
    """load_model(name, random_weights=0), built once per session."""
    from clipdeploy.models import load_model

    def get(name, seed=0):
        if (name, seed) not in _MODELS:
            _MODELS[(name, seed)] = load_model(name, random_weights=seed)
        return _MODELS[(name, seed)]
    return get


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Downloads in tests never touch the user's cache."""
    monkeypatch.setenv("CLIPDEPLOY_CACHE", str(tmp_path / "cache"))
