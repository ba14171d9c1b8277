"""Reading the weights out of a TorchScript archive without running it.

OpenAI publishes CLIP (``RN50.pt``, ``ViT-B-32.pt`` ...) as TorchScript archives: a zip whose
``data.pkl`` pickles the scripted module tree (``__torch__.…`` classes) with its tensors in
``data/<key>``. ``torch.load(weights_only=True)`` refuses them and ``torch.jit.load`` compiles and
runs the code they carry. This reader does neither: its unpickler resolves only tensor rebuilding,
storage types and ``OrderedDict``; every ``__torch__`` class becomes an inert record of its attributes,
and any other global is refused. The weights are then the tensors of that attribute tree, named by
their attribute path as ``state_dict()`` names them.
"""
from __future__ import annotations

import collections
import pickle
import zipfile

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# tensors a scripted CLIP carries that are not weights (masks and constants recomputed at build time);
# the root's ROOT_CONSTANTS are kept: the checkpoint loader checks them against the model's spec
NOT_WEIGHTS = ("attn_mask", "input_resolution", "context_length", "vocab_size")
ROOT_CONSTANTS = ("input_resolution", "context_length", "vocab_size")


class _Record:
    """Stand-in for a TorchScript class instance: only holds the state it is given."""

    def __setstate__(self, state):
        self.state = state


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def is_torchscript_archive(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any(n.endswith("/code/") or "/code/" in n
                                                                     for n in names)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fileobj, zf: zipfile.ZipFile, root: str):
        super().__init__(fileobj)
        self._zf, self._root, self._records = zf, root, {}

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            key = f"{module}.{name}"
            if key not in self._records:
                self._records[key] = type(name, (_Record,), {})
            return self._records[key]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
            return getattr(torch._utils, name)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights archive")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = storage_type.dtype
        raw = self._zf.read(f"{self._root}/data/{key}")
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _walk(obj, prefix: str, out: dict):
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return
    if isinstance(obj, _Record):
        state = obj.state if isinstance(getattr(obj, "state", None), dict) else {}
        for k, v in state.items():
            _walk(v, f"{prefix}.{k}" if prefix else k, out)


def read_torchscript_weights(path) -> dict:
    """``{name: tensor}`` of a TorchScript archive's module tree (no code is compiled or run)."""
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise pickle.UnpicklingError("no data.pkl at the archive's top level")
        root = pkl[0].split("/")[0]
        with zf.open(pkl[0]) as f:
            tree = _Unpickler(f, zf, root).load()
    out: dict = {}
    _walk(tree, "", out)
    return {k: v for k, v in out.items() if k in ROOT_CONSTANTS or k.rsplit(".", 1)[-1] not in NOT_WEIGHTS}
