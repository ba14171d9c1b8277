"""Weight download: cache, resume, sha256 check, atomic rename, progress bar.

The cache lives in ``$CLIPDEPLOY_CACHE`` or, by default, ``$XDG_CACHE_HOME/clipdeploy``
(``~/.cache/clipdeploy``). A file is only ever visible under its final name once complete and verified;
until then it is ``<name>.part``, which a later call resumes with an HTTP Range request.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .errors import DownloadError

CHUNK = 1 << 20


def cache_dir() -> Path:
    env = os.environ.get("CLIPDEPLOY_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipdeploy"


def sha256_file(path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _offline_hint() -> str:
    return ("pass --checkpoint PATH to a local copy of the weights, or --random-weights SEED for "
            "offline test weights")


def _progress(total: Optional[int], initial: int, name: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"download {name}", disable=not enabled, file=sys.stderr, leave=False)


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, name: str) -> None:
    """One HTTP request that appends to ``part`` (resuming with Range when it has bytes)."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "clipdeploy"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range past the end: the part file is already complete
            return
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:      # server ignored the range: start over
            have = 0
        length = resp.headers.get("Content-Length")
        total = (int(length) + have) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as f, _progress(total, have, name, progress) as bar:
            got = 0
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
        if length is not None and got < int(length):
            raise ConnectionError(f"connection closed after {have + got} of {total} bytes")


def download(url: str, sha256: Optional[str] = None, filename: Optional[str] = None,
             dest_dir: Optional[Path] = None, progress: bool = True, retries: int = 3,
             timeout: float = 30.0) -> Path:
    """Download ``url`` into the cache (or ``dest_dir``) and return the verified file's path.

    A cached file whose checksum matches is returned without a request. An interrupted transfer is
    resumed (up to ``retries`` attempts). A checksum mismatch removes the file and raises.
    """
    filename = filename or os.path.basename(urllib.request.urlparse(url).path) or "checkpoint"
    dest_dir = Path(dest_dir) if dest_dir else cache_dir() / (sha256[:16] if sha256 else
                                                              hashlib.sha256(url.encode()).hexdigest()[:16])
    target = dest_dir / filename
    if target.exists():
        if sha256 is None or sha256_file(target) == sha256:
            return target
        target.unlink()  # stale or corrupt cache entry: fetch again
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create cache directory {dest_dir}: {e.strerror}; set "
                            f"CLIPDEPLOY_CACHE to a writable directory") from None
    part = target.with_name(target.name + ".part")
    last_error = None
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(url, part, timeout, progress, filename)
            last_error = None
            break
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 404, 410):
                part.unlink(missing_ok=True)
                raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}; "
                                    f"{_offline_hint()}") from None
            last_error = f"HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"cannot reach {url} ({reason}); no network? {_offline_hint()}") from None
        except (ConnectionError, TimeoutError, OSError) as e:
            last_error = str(e) or type(e).__name__
        time.sleep(min(0.2 * attempt, 1.0))
    if last_error is not None:
        raise DownloadError(f"download of {url} failed after {retries} attempts ({last_error}); "
                            f"run again to resume, or {_offline_hint()}")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
                                f"the file was removed. Run again, or {_offline_hint()}")
    os.replace(part, target)
    return target
