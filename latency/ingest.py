"""``clip-latency ingest``: accept reports written elsewhere (the apps' benchmark modes, other hosts),
validate them against the schema, normalize them (statistics recomputed from the raw samples with
this toolkit's definitions, derived fields filled, records sorted) and store them.

Reports are untrusted input: ``load_report`` bounds the size (32 MiB), parses strict JSON (no NaN /
Infinity; a report cut short by a copy made while it was written is refused as incomplete) and checks
the schema, whose ranges refuse negative or absurd latencies and cosines outside [-1, 1]. A stored
report is named by its content (the sha256 of the normalized report) and written atomically, so
ingesting the same report twice stores it once."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Optional

from .report import load_report, merge_process_reports, normalize_report, now_iso


def _safe(s) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(s or "unknown")).strip("-")[:60] or "unknown"


def content_digest(report: dict) -> str:
    """sha256 of the normalized report without the ``ingested`` stamp (what makes two ingests equal)."""
    body = {k: v for k, v in report.items() if k != "ingested"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def stored_name(report: dict) -> str:
    h = report["host"]
    return (f"{_safe(report['created'].replace(':', ''))}__{_safe(report['source'])}__"
            f"{_safe(h.get('device') or h.get('name'))}__{content_digest(report)[:16]}.json")


def ingest_one(path, into: Optional[str] = None) -> tuple:
    """Validate + normalize one report file; store it under ``into/<model>/`` when given.
    Returns ``(normalized report, stored path or None)``; raises ReportError."""
    return _store(normalize_report(load_report(path)), str(path), into)


def _store(rep: dict, origin: str, into: Optional[str]) -> tuple:
    """Store ``rep`` under ``into/<model>/``: atomically (a temporary file renamed into place), once
    (an existing file of the same content name is left alone). Returns ``(rep, dest)``."""
    name = stored_name(rep) if into else None
    rep["ingested"] = {"at": now_iso(), "from": origin}
    dest = None
    if into:
        dest = Path(into) / _safe(rep["bundle"]["model"]) / name
        if dest.exists():
            rep["ingested"]["already_stored"] = True
            return rep, dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=dest.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(rep, indent=1, allow_nan=False))
            try:
                os.link(tmp, dest)              # atomic and exclusive: a concurrent ingest of the same
            except FileExistsError:             # report stores it once
                rep["ingested"]["already_stored"] = True
            except OSError:                     # a file system without hard links: atomic, not exclusive
                os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return rep, dest


def ingest_merged(paths, into: Optional[str] = None) -> tuple:
    """Several single-process reports of one bundle (one app launch each) validated, merged into one
    report with a worker per launch (:func:`merge_process_reports`), normalized and stored like
    :func:`ingest_one`. Raises ReportError."""
    rep = normalize_report(merge_process_reports([load_report(p) for p in paths]))
    return _store(rep, ", ".join(str(p) for p in paths), into)
