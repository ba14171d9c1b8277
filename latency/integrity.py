"""A bundle is untrusted input: the integrity record the export writes and every reader checks.

The contract (manifest ``schema_version`` 2, the same in ``Bundle.java`` and ``ModelBundle.swift``):

* ``manifest["integrity"] = {"algorithm": "sha256", "files": {relpath: {"size": int, "sha256": hex}}}``
  lists every regular file of the bundle except ``manifest.json`` itself (artifacts, each file inside an
  ``.mlpackage``, probe arrays, tokenizer files, the model card). Keys are POSIX paths relative to the
  bundle, sorted.
* A path the manifest names is *safe* when it is a non-empty string of at most 1024 characters, holds no
  NUL and no backslash, does not start with ``/`` or a drive letter (``C:``), and has no empty, ``.`` or
  ``..`` component; and its real path (symlinks resolved) stays inside the bundle's real path.
* Opening a bundle checks the manifest's schema, that every named path is safe and listed, and that
  every listed file exists with its recorded size (a stat each: a bundle still being copied is refused
  as incomplete). Before a file is read or an artifact loaded, its sha256 is compared with the record;
  a directory artifact (``.mlpackage``) also may hold no file the record does not list.

Digests of verified files are cached per file in ``$CLIPDEPLOY_CACHE/verified-digests.json`` keyed by
the real path and (size, mtime, ctime, inode, device): a second ``clip-latency run`` of a large bundle
does not hash it again, and any write to a file (which moves its ctime) makes it hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Optional

ALGORITHM = "sha256"
MAX_PATH_CHARS = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A bundle file is missing, modified, unlisted, or named by an unsafe path (one line)."""


def unsafe_reason(rel) -> Optional[str]:
    """Why ``rel`` is not a safe bundle-relative path, or None when it is (no filesystem access)."""
    if not isinstance(rel, str) or not rel:
        return "is not a non-empty string"
    if len(rel) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    if "\x00" in rel:
        return "holds a NUL character"
    if "\\" in rel:
        return "holds a backslash (bundle paths use '/')"
    if rel.startswith("/") or _DRIVE.match(rel):
        return "is absolute"
    parts = rel.split("/")
    if any(p == ".." for p in parts):
        return "contains '..'"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' component"
    return None


def resolve_inside(root: Path, rel: str) -> Path:
    """``root / rel`` after the lexical check and with symlinks resolved, refused unless inside ``root``."""
    why = unsafe_reason(rel)
    if why:
        raise IntegrityError(f"manifest path {rel!r} {why}: a bundle may only name files inside itself; "
                             f"re-export the bundle")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / rel))
    if real != real_root and real_root not in real.parents:
        raise IntegrityError(f"manifest path {rel!r} resolves outside the bundle (to {real}) through a "
                             f"symlink: a bundle may only name files inside itself; replace the link "
                             f"with the file")
    return real


def sha256_file(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def record(root: Path, exclude: Iterable[str] = ("manifest.json",)) -> dict:
    """The integrity block of the directory ``root``: every regular file but ``exclude``. A symlink in
    a bundle being written is refused (the export never writes one)."""
    root = Path(root)
    files = {}
    skip = set(exclude)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in skip:
                continue
            if p.is_symlink() or not p.is_file():
                raise IntegrityError(f"{p} is not a regular file; a bundle holds regular files only")
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return {"algorithm": ALGORITHM, "files": dict(sorted(files.items()))}


# ---------------------------------------------------------------------------------------------------
# the digest cache

def _cache_path() -> Path:
    base = os.environ.get("CLIPDEPLOY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "clipdeploy")
    return Path(base) / "verified-digests.json"


_lock = threading.Lock()
_memo: Optional[dict] = None


def _key(st) -> list:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _load_cache() -> dict:
    global _memo
    if _memo is None:
        try:
            raw = _cache_path().read_bytes()
            data = json.loads(raw) if len(raw) < (64 << 20) else {}
            _memo = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, list)
                     and len(v) == 6 and isinstance(v[5], str)} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _memo = {}
    return _memo


def _save_cache(cache: dict) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(cache) > 20000:                                     # keep it bounded: newest entries last
            for k in list(cache)[: len(cache) - 20000]:
                del cache[k]
        fd, tmp = tempfile.mkstemp(prefix=".verified-digests.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, path)
    except OSError:
        pass                                                        # a cache that cannot be written is no cache


def digest(path: Path, use_cache: bool = True) -> tuple:
    """``(sha256, hashed)`` of ``path`` (a real path); ``hashed`` False when the cache answered."""
    st = os.stat(path)
    key = os.fspath(path)
    if use_cache:
        with _lock:
            hit = _load_cache().get(key)
        if hit is not None and hit[:5] == _key(st):
            return hit[5], False
    h = sha256_file(path)
    st2 = os.stat(path)
    if use_cache and _key(st2) == _key(st):                        # unchanged while it was hashed
        with _lock:
            c = _load_cache()
            c.pop(key, None)
            c[key] = _key(st) + [h]
    return h, True


def flush_cache() -> None:
    with _lock:
        if _memo is not None:
            _save_cache(_memo)


# ---------------------------------------------------------------------------------------------------
# checking

def check_block(block, where: str) -> dict:
    """The manifest's ``integrity`` block, shape-checked; returns its ``files``."""
    fix = "re-export the bundle with clip-export (bundles from before schema_version 2 have no digests)"
    if not isinstance(block, dict):
        raise IntegrityError(f"{where}: manifest has no 'integrity' record; {fix}")
    if block.get("algorithm") != ALGORITHM:
        raise IntegrityError(f"{where}: integrity algorithm {block.get('algorithm')!r} is not supported "
                             f"({ALGORITHM!r}); {fix}")
    files = block.get("files")
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{where}: integrity record lists no files; {fix}")
    for rel, ent in files.items():
        why = unsafe_reason(rel)
        if why:
            raise IntegrityError(f"{where}: integrity path {rel!r} {why}: a bundle may only name files "
                                 f"inside itself; re-export the bundle")
        if rel == "manifest.json":
            raise IntegrityError(f"{where}: integrity record lists manifest.json itself; re-export the bundle")
        if (not isinstance(ent, dict) or not isinstance(ent.get("sha256"), str)
                or not _HEX64.fullmatch(ent["sha256"]) or type(ent.get("size")) is not int
                or ent["size"] < 0):
            raise IntegrityError(f"{where}: integrity entry for {rel!r} is not {{size: int >= 0, sha256: "
                                 f"64 hex digits}}; re-export the bundle")
    return files


class Verifier:
    """The integrity record of one opened bundle: path checks, the stat pass, per-file digests."""

    def __init__(self, root: Path, block):
        self.root = Path(root)
        self.files = check_block(block, str(root))
        self.verified: set = set()
        self.hashed_bytes = 0
        self.cached_files = 0

    def stat_all(self) -> None:
        """Every listed file exists inside the bundle with its recorded size (a bundle still being
        written or copied fails here, before anything is read)."""
        for rel, ent in self.files.items():
            real = resolve_inside(self.root, rel)
            try:
                st = os.stat(real)
            except OSError:
                raise IntegrityError(f"bundle {self.root} is incomplete: {rel} is missing; copy the whole "
                                     f"bundle again (or re-export it)") from None
            if not os.path.isfile(real):
                raise IntegrityError(f"bundle {self.root}: {rel} is not a regular file; re-export the bundle")
            if st.st_size != ent["size"]:
                state = "incomplete" if st.st_size < ent["size"] else "modified"
                raise IntegrityError(f"bundle {self.root} is {state}: {rel} is {st.st_size} bytes, the "
                                     f"manifest records {ent['size']}; copy the bundle again (or re-export it)")

    def listed(self, rel: str) -> list:
        """The listed files that make up ``rel``: the file itself, or every file under a directory."""
        if rel in self.files:
            return [rel]
        prefix = rel.rstrip("/") + "/"
        inner = [k for k in self.files if k.startswith(prefix)]
        if not inner:
            raise IntegrityError(f"bundle {self.root}: {rel} is named by the manifest but has no integrity "
                                 f"record; re-export the bundle")
        return inner

    def check_path(self, rel: str) -> Path:
        """Lexical + symlink check and listing of a path the manifest names (no hashing)."""
        real = resolve_inside(self.root, rel)
        self.listed(rel)
        return real

    def verify(self, rel: str, use_cache: bool = True) -> Path:
        """Hash every file of ``rel`` against the record (a directory: also no unlisted file in it);
        returns its real path."""
        real = self.check_path(rel)
        members = self.listed(rel)
        if os.path.isdir(real):
            listed = set(members)
            for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
                for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                    sub = (Path(rel) / Path(dirpath).relative_to(real) / name).as_posix()
                    if sub not in listed:
                        raise IntegrityError(f"bundle {self.root}: {sub} is not in the manifest's integrity "
                                             f"record (a file was added to {rel}); re-copy the bundle")
        for m in members:
            self._verify_one(m, use_cache)
        if use_cache:
            flush_cache()
        return real

    def verify_all(self, use_cache: bool = True) -> None:
        """Hash every listed file against the record."""
        for rel in self.files:
            self._verify_one(rel, use_cache)
        if use_cache:
            flush_cache()

    def _verify_one(self, rel: str, use_cache: bool) -> None:
        if rel in self.verified:
            return
        ent = self.files[rel]
        p = resolve_inside(self.root, rel)
        try:
            size = os.path.getsize(p)
            if size != ent["size"]:
                raise IntegrityError(f"bundle {self.root}: {rel} is {size} bytes, the manifest records "
                                     f"{ent['size']}: the file was modified or cut short; re-copy the "
                                     f"bundle (or re-export it)")
            h, hashed = digest(p, use_cache)
        except OSError as e:
            raise IntegrityError(f"bundle {self.root}: cannot read {rel}: {e.strerror}; re-copy the "
                                 f"bundle") from None
        if h != ent["sha256"]:
            raise IntegrityError(f"bundle {self.root}: {rel} does not match the manifest (sha256 "
                                 f"{h[:12]}... != {ent['sha256'][:12]}...): the file was modified or "
                                 f"corrupted; re-copy the bundle (or re-export it)")
        if hashed:
            self.hashed_bytes += ent["size"]
        else:
            self.cached_files += 1
        self.verified.add(rel)
