"""``clip-latency ingest``: accept reports written elsewhere (the apps' benchmark modes, other hosts),
validate them against the schema, normalize them (statistics recomputed from the raw samples with
this toolkit's definitions, derived fields filled, records sorted) and store them."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .report import dump_report, load_report, merge_process_reports, normalize_report, now_iso


def _safe(s) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(s or "unknown")).strip("-")[:60] or "unknown"


def stored_name(report: dict) -> str:
    h = report["host"]
    return (f"{_safe(report['created'].replace(':', ''))}__{_safe(report['source'])}__"
            f"{_safe(h.get('device') or h.get('name'))}.json")


def ingest_one(path, into: Optional[str] = None) -> tuple:
    """Validate + normalize one report file; store it under ``into/<model>/`` when given.
    Returns ``(normalized report, stored path or None)``; raises ReportError."""
    return _store(normalize_report(load_report(path)), str(path), into)


def _store(rep: dict, origin: str, into: Optional[str]) -> tuple:
    rep["ingested"] = {"at": now_iso(), "from": origin}
    dest = None
    if into:
        dest = Path(into) / _safe(rep["bundle"]["model"]) / stored_name(rep)
        dump_report(rep, dest)
    return rep, dest


def ingest_merged(paths, into: Optional[str] = None) -> tuple:
    """Several single-process reports of one bundle (one app launch each) validated, merged into one
    report with a worker per launch (:func:`merge_process_reports`), normalized and stored like
    :func:`ingest_one`. Raises ReportError."""
    rep = normalize_report(merge_process_reports([load_report(p) for p in paths]))
    return _store(rep, ", ".join(str(p) for p in paths), into)
