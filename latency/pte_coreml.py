"""The Core ML model inside an ExecuTorch ``.pte`` with a Core ML delegate, extracted for the Core ML
reference interpreter (:mod:`clipdeploy.latency.coreml_ref`).

:func:`extract_coreml_from_pte` finds every ``CoreMLBackend`` delegate payload (inline, or a ``CMJR``
JSON reference into the named data store) and un-flattens it -- executorch's in-memory file system
format: the files' bytes followed by the directory tree as JSON written *reversed* at the end of the
buffer -- into ``model.mlpackage`` directories the interpreter loads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from .coreml_ref import UnsupportedOpError


_COREML_ID = "CoreMLBackend"


def _reverse_json_end(buf: bytes) -> tuple:
    """executorch's in-memory file system stores its metadata JSON reversed at the end of the buffer:
    read it back (scanning from the end until the braces balance). Returns (metadata, start offset)."""
    i = len(buf) - 1
    if i < 0 or buf[i:i + 1] != b"{":
        raise ValueError("no reversed JSON metadata at the end of the delegate payload")
    depth, in_str = 0, False
    while i >= 0:
        ch = buf[i:i + 1]
        if ch == b'"' and buf[i + 1:i + 2] != b"\\":      # original order: the escape follows
            in_str = not in_str
        elif not in_str:
            if ch == b"{" or ch == b"[":
                depth += 1
            elif ch == b"}" or ch == b"]":
                depth -= 1
                if depth == 0:
                    break
        i -= 1
    if depth != 0:
        raise ValueError("unbalanced reversed JSON metadata in the delegate payload")
    text = buf[i:][::-1].decode("utf-8")
    return json.loads(text), i


def _unflatten(buf: bytes, out_dir: Path) -> list:
    """Write executorch's flattened directory (``flatten_directory_contents``) under ``out_dir``."""
    meta, end = _reverse_json_end(buf)
    nodes = meta.get("nodes")
    if not nodes:
        raise ValueError("flattened payload metadata has no nodes")
    written = []

    def walk(idx: int, dest: Path, depth: int):
        if depth > 64:
            raise ValueError("flattened payload nests too deep")
        node = nodes[idx]
        name = node["name"]
        if "/" in name or name in ("..", ".") or "\\" in name:
            raise ValueError(f"unsafe name {name!r} in the flattened payload")
        if int(node["kind"]) == 1:               # directory
            d = dest / name if depth else dest
            d.mkdir(parents=True, exist_ok=True)
            for child, ci in sorted(node.get("children", {}).items(), key=lambda kv: kv[1]):
                if nodes[ci]["name"] != child:
                    raise ValueError(f"child {child!r} / node name {nodes[ci]['name']!r} mismatch")
                walk(ci, d, depth + 1)
        else:
            r = node["dataRegion"]
            off, size = int(r["offset"]), int(r["size"])
            if off + size > end:
                raise ValueError(f"file {name!r} region runs into the metadata")
            p = dest / name
            p.write_bytes(buf[off:off + size])
            written.append(p)

    children = {int(i) for n in nodes for i in n.get("children", {}).values()}
    roots = [i for i in range(len(nodes)) if i not in children]
    if len(roots) != 1 or int(nodes[roots[0]]["kind"]) != 1:
        raise ValueError(f"flattened payload has no single root directory (roots {roots})")
    walk(roots[0], out_dir, 0)
    return written


def _pte_payloads(data: bytes) -> list:
    """[(method, delegate index, payload bytes, compile specs)] of every Core ML delegate in a .pte."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DataLocation

    if len(data) < 8 or data[4:6] != b"ET":
        raise ValueError(f"not an ExecuTorch program (file identifier {data[4:8]!r})")
    pte = deserialize_pte_binary(data)
    prog = pte.program
    named = {}
    if pte.named_data is not None:
        nd = pte.named_data
        for key, entry in nd.pte_data.items():
            named[key] = bytes(nd.buffers[entry.buffer_index])
    out = []
    for plan in prog.execution_plan:
        for i, d in enumerate(plan.delegates):
            if d.id != _COREML_ID:
                continue
            specs = {}
            for cs in d.compile_specs:
                try:
                    specs[cs.key] = bytes(cs.value).decode("utf-8")
                except UnicodeDecodeError:
                    specs[cs.key] = bytes(cs.value)
            if d.processed.location == DataLocation.INLINE:
                payload = bytes(prog.backend_delegate_data[d.processed.index].data)
            else:
                raise ValueError(f"delegate {i} of {plan.name!r}: payload location {d.processed.location} "
                                 f"not restored")
            if payload[:4] == b"CMJR":              # JSON reference into the named data store
                ref = json.loads(payload[4:].decode("utf-8"))
                if ref.get("key") not in named:
                    raise ValueError(f"delegate {i} of {plan.name!r} refers to missing named data "
                                     f"{ref.get('key')!r}")
                specs["function_name"] = ref.get("functionName")
                payload = named[ref["key"]]
            out.append((plan.name, i, payload, specs))
    return out


def extract_coreml_from_pte(pte_path: Union[str, Path], out_dir: Union[str, Path]) -> list:
    """Extract the Core ML model of every ``CoreMLBackend`` delegate of an ExecuTorch ``.pte``.

    Each payload is executorch's flattened directory (``model.mlpackage`` + ``metadata.json``
    [+ ``debug_info.json``]); it is written to ``out_dir/<method>_<delegate index>/`` and the list of
    ``.mlpackage`` paths is returned. A delegate compiled ahead of time (``model.mlmodelc``) has no
    protobuf program to interpret and raises :class:`UnsupportedOpError`."""
    pte_path, out_dir = Path(pte_path), Path(out_dir)
    payloads = _pte_payloads(pte_path.read_bytes())
    if not payloads:
        raise ValueError(f"{pte_path}: no {_COREML_ID} delegate in the program")
    paths = []
    for method, i, payload, specs in payloads:
        dest = out_dir / f"{method}_{i}"
        dest.mkdir(parents=True, exist_ok=True)
        files = _unflatten(payload, dest)
        pkgs = sorted({_package_root(p, dest) for p in files} - {None})
        if not pkgs:
            if any(".mlmodelc" in str(p) for p in files):
                raise UnsupportedOpError(f"{pte_path.name}: delegate {i} of {method!r} holds a compiled "
                                         f"model (model.mlmodelc), which has no MIL protobuf to interpret")
            raise ValueError(f"{pte_path.name}: delegate {i} of {method!r} holds no .mlpackage "
                             f"({[str(p.relative_to(dest)) for p in files]})")
        meta = dest / "metadata.json"
        if meta.exists():
            (dest / "compile_specs.json").write_text(json.dumps(
                {k: v for k, v in specs.items() if isinstance(v, str) or v is None}, indent=1))
        paths += pkgs
    return paths


def _package_root(p: Path, dest: Path) -> Optional[Path]:
    for parent in [p, *p.parents]:
        if parent == dest:
            return None
        if parent.suffix == ".mlpackage":
            return parent
    return None
