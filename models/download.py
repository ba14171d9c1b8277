"""Weight download: cache, resume, sha256 check, atomic rename, progress bar.

Two paths:

* Hugging Face files (``https://huggingface.co/<repo>/resolve/<revision>/<file>``, see :func:`parse_hf_url`)
  go through ``huggingface_hub.hf_hub_download`` (:func:`hf_download`): the Hugging Face cache shared with
  transformers and open_clip (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), ``HF_ENDPOINT``
  mirrors, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``, all read when the call is made; then the registry's sha256,
  where one is pinned, is checked here.
* Everything else (Apple's CDN, OpenAI's azureedge files, user URLs) uses the toolkit's own downloader
  (:func:`download`). Its cache lives in ``$CLIPDEPLOY_CACHE`` or, by default,
  ``$XDG_CACHE_HOME/clipdeploy`` (``~/.cache/clipdeploy``). A file is only ever visible under its final name
  once complete and verified; until then it is ``<name>.part``, which a later call resumes with an HTTP Range
  request.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
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


# --- Hugging Face Hub ---------------------------------------------------------------------------------

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_HF_HOSTS = ("huggingface.co", "hf.co", "www.huggingface.co")


def _is_true(value: Optional[str]) -> bool:
    """huggingface_hub's reading of boolean environment variables."""
    return value is not None and value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hf_endpoint() -> str:
    """The Hub endpoint: ``$HF_ENDPOINT`` (a mirror) as set now, else https://huggingface.co.

    huggingface_hub reads ``HF_ENDPOINT`` once, when it is imported; it is read here on every call and passed
    to it explicitly, so setting it later (in a notebook, in tests) takes effect too."""
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).strip().rstrip("/")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved as huggingface_hub does but from the environment as it is now:
    ``$HF_HUB_CACHE``, ``$HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``,
    ``~/.cache/huggingface/hub``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.path.expanduser(os.environ[var])))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def hf_offline_var() -> Optional[str]:
    """Name of the set offline variable (``HF_HUB_OFFLINE``, or transformers' ``TRANSFORMERS_OFFLINE``), or None."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _is_true(os.environ.get(var)):
            return var
    return None


def parse_hf_url(url: str) -> Optional[tuple]:
    """``(repo_id, revision, filename)`` of a Hub file URL ``<endpoint>/<repo_id>/resolve/<revision>/<file>``
    on huggingface.co / hf.co or on the ``HF_ENDPOINT`` mirror; None for any other URL."""
    if not isinstance(url, str):
        return None
    endpoint = hf_endpoint()
    p = urllib.parse.urlparse(url)
    if (p.hostname or "").lower() in _HF_HOSTS and p.scheme in ("http", "https"):
        path = p.path
    elif url.startswith(endpoint + "/"):
        path = urllib.parse.urlparse(endpoint).path.rstrip("/")
        path = p.path[len(path):]
    else:
        return None
    parts = [urllib.parse.unquote(x) for x in path.strip("/").split("/")]
    # model repos only: <namespace>/<name>/resolve/<revision>/<file...>
    if len(parts) < 5 or parts[2] != "resolve" or not all(parts[:2]) or not parts[-1]:
        return None
    return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])


def _bar_class(name: str, enabled: bool):
    """A tqdm class for ``hf_hub_download(tqdm_class=...)``: the toolkit's own single progress bar
    (``download <file>`` on stderr, gone when done) in place of huggingface_hub's. It has
    ``update_transfer`` so that Xet downloads show one bar, not two (network bytes are not counted twice)."""
    from tqdm import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kwargs):
            for k in ("name", "position", "bar_format", "desc", "leave", "file", "disable", "unit",
                      "unit_scale", "unit_divisor"):
                kwargs.pop(k, None)
            super().__init__(*args, desc=f"download {name}", unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=False, disable=not enabled, **kwargs)

        def update_transfer(self, n=1):      # network bytes (Xet); the bar counts bytes written
            pass

        def set_transfer_postfix_str(self, s="", refresh=True):
            pass

    return _Bar


class _HubLog(logging.Handler):
    """huggingface_hub's log records during our call: its retry notices (two multi-part lines per try)
    become one line ``Hugging Face Hub: <error>; retrying in 2s (2/5)`` (only where our progress shows, so a
    long wait is not silent); other warnings are dropped (failures reach the user as one-line
    DownloadErrors); errors pass, on one line."""

    def __init__(self, progress: bool):
        super().__init__(logging.DEBUG)
        self.progress, self.last = progress, None

    def emit(self, record):
        try:
            msg = _one_line(record.getMessage())
        except Exception:  # noqa: BLE001 - a log record must never break a download
            return
        if msg.startswith("Retrying in"):
            if self.progress:
                print(f"Hugging Face Hub: {self.last or 'no answer'}; {msg[0].lower()}{msg[1:]}",
                      file=sys.stderr)
        elif "thrown while requesting" in msg:
            self.last = msg.split(" thrown while requesting", 1)[0].strip("'")
        elif record.levelno >= logging.ERROR:
            print(f"huggingface_hub: {msg[:300]}", file=sys.stderr)


@contextlib.contextmanager
def _quiet_hub(progress: bool):
    """huggingface_hub's own chatter replaced by :class:`_HubLog` for the duration of one call."""
    log = logging.getLogger("huggingface_hub")
    handlers, propagate = log.handlers[:], log.propagate   # huggingface_hub's own StreamHandler among them
    log.handlers = [_HubLog(progress)]
    log.propagate = False
    try:
        yield
    finally:
        log.handlers = handlers
        log.propagate = propagate


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _status(errors) -> Optional[int]:
    for x in errors:
        r = getattr(x, "response", None)
        code = getattr(r, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def _is_connection_error(x: BaseException) -> bool:
    if isinstance(x, (ConnectionError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(x).__mro__}    # httpx / httpx2 / requests, whichever the hub uses
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError",
                         "TransportError", "ProxyError", "RemoteProtocolError", "ConnectionError"})


def _one_line(s) -> str:
    return " ".join(str(s).split())


def _hf_error(e: BaseException, repo_id: str, filename: str, revision: str, endpoint: str,
              cache: Path) -> DownloadError:
    """One-line DownloadError (problem, then fix) for what ``hf_hub_download`` raised."""
    what = f"{repo_id}/{filename}" + ("" if revision == "main" else f" (revision {revision})")
    errors = list(_chain(e))
    names = {c.__name__ for x in errors for c in type(x).__mro__}
    custom = endpoint != HF_DEFAULT_ENDPOINT
    where = f"HF_ENDPOINT={endpoint}" if custom else f"{endpoint} (set HF_ENDPOINT to use a mirror)"
    offline = hf_offline_var()
    code = _status(errors)
    if offline:
        return DownloadError(
            f"{offline} is set and {what} is not in the Hugging Face cache {cache}: unset {offline} to download "
            f"it, set HF_HUB_CACHE to a cache that has it, or {_offline_hint()}")
    if "OfflineModeIsEnabled" in names:     # huggingface_hub read HF_HUB_OFFLINE when it was imported
        return DownloadError(
            f"HF_HUB_OFFLINE was set when huggingface_hub was imported and {what} is not in the Hugging Face "
            f"cache {cache}: start again without HF_HUB_OFFLINE to download it, or {_offline_hint()}")
    if code in (401, 403) or "GatedRepoError" in names:
        token = _token_in_use()
        sent = (f"the token that was sent ({token}) has no access to it"
                if token else "no token was sent (HF_TOKEN is not set and there is no `hf auth login` token)")
        return DownloadError(
            f"cannot download {what} from {where}: HTTP {code or 401}, the repo is gated or private and {sent}; "
            f"accept its terms at https://huggingface.co/{repo_id} and set HF_TOKEN to a token with read access "
            f"(or run `hf auth login`), or {_offline_hint()}")
    if code == 404 or "RemoteEntryNotFoundError" in names or "RepositoryNotFoundError" in names \
            or "RevisionNotFoundError" in names:
        kind = ("file" if "RemoteEntryNotFoundError" in names else "revision" if "RevisionNotFoundError" in names
                else "repo" if "RepositoryNotFoundError" in names else "repo, revision or file")
        fix = ("check that the mirror HF_ENDPOINT points to carries it (or unset HF_ENDPOINT for huggingface.co)"
               if custom else "check the repo and file name")
        return DownloadError(f"cannot download {what} from {where}: HTTP 404, no such {kind}; {fix}, "
                             f"or {_offline_hint()}")
    if "FileMetadataError" in names:
        return DownloadError(
            f"{where} did not answer {what} as a Hugging Face Hub does (no X-Repo-Commit/ETag headers) and it "
            f"is not in the Hugging Face cache {cache}: point HF_ENDPOINT at a Hub mirror (or unset it), check "
            f"proxy settings, or {_offline_hint()}")
    if code is not None:
        return DownloadError(f"cannot download {what} from {where}: HTTP {code}; run again later, or "
                             f"{_offline_hint()}")
    conn = next((x for x in errors if _is_connection_error(x)), None)
    if conn is not None or "LocalEntryNotFoundError" in names:
        reason = _one_line(conn) if conn is not None else "no connection"
        return DownloadError(
            f"cannot reach the Hugging Face Hub at {where} ({reason[:160]}) and {what} is not in the Hugging "
            f"Face cache {cache}: check the network or set HF_ENDPOINT to a reachable mirror, or {_offline_hint()}")
    if isinstance(e, OSError) and getattr(e, "strerror", None) and getattr(e, "filename", None):
        return DownloadError(f"cannot write {what} into the Hugging Face cache: {e.strerror}: {e.filename}; "
                             f"set HF_HUB_CACHE to a writable directory")
    return DownloadError(f"download of {what} from {where} failed ({type(e).__name__}: "
                         f"{_one_line(e)[:200]}); run again, or {_offline_hint()}")


def _token_in_use() -> Optional[str]:
    """Where the token huggingface_hub sends comes from ("HF_TOKEN", "the `hf auth login` token"), or None."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return "HF_TOKEN" if os.environ.get("HF_TOKEN") else "HUGGING_FACE_HUB_TOKEN"
    try:
        from huggingface_hub import get_token
        return "the `hf auth login` token" if get_token() else None
    except Exception:   # noqa: BLE001 - only used to word a message
        return None


def _evict(path: Path, cache: Path) -> Optional[str]:
    """Remove a bad file from the Hugging Face cache: its snapshot entry and the blob it points to, so no
    later load (ours, transformers', open_clip's) finds it. Returns what could not be removed, or None."""
    path = Path(path)
    blob = Path(os.path.realpath(path))
    inside = str(blob).startswith(os.path.realpath(cache) + os.sep)
    left = []
    for p in (blob, path) if inside and blob != path else (path,):
        try:
            p.unlink(missing_ok=True)
        except OSError:
            left.append(str(p))
    return " and ".join(left) or None


def hf_download(repo_id: str, filename: str, revision: str = "main", sha256: Optional[str] = None,
                progress: bool = True) -> Path:
    """``repo_id``'s ``filename`` at ``revision`` through ``huggingface_hub.hf_hub_download``, into the
    Hugging Face cache; returns its snapshot path (``.../models--org--name/snapshots/<commit>/<file>``).

    The environment is read now, not when huggingface_hub was imported: ``HF_ENDPOINT`` (mirror),
    ``HF_HUB_CACHE``/``HF_HOME`` (cache), ``HF_HUB_OFFLINE`` (cache only, no request), ``HF_TOKEN``.
    A file already in the cache is used without downloading (and, offline or with the Hub unreachable,
    without any request). With ``sha256`` the file is checked; a mismatch removes it from the cache and
    raises. Every failure is a one-line :class:`DownloadError` naming the fix.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:   # a dependency of transformers and open_clip; listed in pyproject.toml too
        raise DownloadError("huggingface_hub is not installed: pip install huggingface_hub") from None
    endpoint = hf_endpoint()
    cache = hf_cache_dir()
    offline = hf_offline_var() is not None
    try:
        with _quiet_hub(progress):
            path = hf_hub_download(repo_id=repo_id, filename=filename, revision=revision,
                                   cache_dir=str(cache), endpoint=endpoint, local_files_only=offline,
                                   tqdm_class=_bar_class(os.path.basename(filename), progress))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - every hub/network/cache failure becomes one line with the fix
        raise _hf_error(e, repo_id, filename, revision, endpoint, cache) from None
    path = Path(path)
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256.lower():
            left = _evict(path, cache)
            src = f"HF_ENDPOINT={endpoint}" if endpoint != HF_DEFAULT_ENDPOINT else endpoint
            gone = (f"could not remove {left}: delete it by hand, then run again" if left else
                    "the file was removed from the cache. Run again to download it afresh")
            raise DownloadError(
                f"checksum mismatch for {repo_id}/{filename} (from {src} or the Hugging Face cache {cache}): "
                f"expected sha256 {sha256}, got {got}; {gone} (a mirror must serve the same file), "
                f"or {_offline_hint()}")
    return path
