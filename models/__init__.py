"""clipdeploy.models — the model zoo.

Public API::

    from clipdeploy.models import list_models, load_model
    m = load_model("mobileclip_s0", checkpoint="mobileclip_s0.pt")   # or a URL, or random_weights=SEED
    m.encode_image(x); m.encode_text(m.tokenize(["a dog"])); m.logit_scale; m.preprocess(img); m.module
"""
from .errors import (CheckpointError, CheckpointMismatchError, ClipDeployError, DownloadError,
                     UnknownModelError)
from .registry import REGISTRY, ModelSpec, get_spec, list_models
from .api import CLIPModel, load_model, build_module
from .tokenizer import tokenize
from .preprocess import preprocess_image

__all__ = [
    "list_models", "load_model", "get_spec", "build_module", "CLIPModel", "ModelSpec", "REGISTRY",
    "tokenize", "preprocess_image", "ClipDeployError", "UnknownModelError", "CheckpointError",
    "CheckpointMismatchError", "DownloadError",
]
