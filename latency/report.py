"""The latency report: schema (``report.schema.json``, shipped with the package), validation, host
description, loading, normalization, text tables and the PyTorch OSS benchmark v3 export.

A report is one JSON object (``schema_version`` 1, ``kind`` "clipdeploy-latency-report"); the fields
are documented in docs/latency.md. ``clip-latency run`` writes it; the apps' benchmark modes write the
same format; ``compare``, ``report`` and ``ingest`` read it.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Optional

from .stats import summarize

SCHEMA_VERSION = 1
KIND = "clipdeploy-latency-report"
SCHEMA_FILE = "report.schema.json"
MAX_REPORT_BYTES = 32 << 20          # a report is read whole; anything larger is not one
LIBRARIES = ("clipdeploy", "numpy", "torch", "onnxruntime", "executorch", "ai-edge-litert", "coremltools", "timm",
             "open_clip_torch")


class ReportError(ValueError):
    """A report that cannot be used: missing, not JSON, invalid, wrong schema version (one line)."""


# ---------------------------------------------------------------------------------------------------
# schema

_SCHEMA = None


def schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        text = resources.files("clipdeploy.latency").joinpath(SCHEMA_FILE).read_text()
        _SCHEMA = json.loads(text)
    return _SCHEMA


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "<top level>"


def validate_report(obj) -> dict:
    """Raise :class:`ReportError` (one line: where and what) unless ``obj`` is a valid report of this
    schema version; returns ``obj``. Beyond the JSON Schema: ``stats.n`` equals the number of raw
    samples, and record ids are unique."""
    import jsonschema

    if not isinstance(obj, dict):
        raise ReportError(f"not a latency report: the top level is a {type(obj).__name__}, not an object")
    ver = obj.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise ReportError(f"schema_version {ver!r} is not supported (this clip-latency reads "
                          f"schema_version {SCHEMA_VERSION})")
    bad = _non_finite(obj)
    if bad is not None:
        raise ReportError(f"invalid report at {_where(bad)}: not a finite number (NaN and infinities "
                          f"are not measurements)")
    validator = _validator_class()(schema())
    errors = list(validator.iter_errors(obj))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ReportError(f"invalid report at {_where(best.absolute_path)}: {best.message}{more}")
    seen = set()
    for i, r in enumerate(obj["records"]):
        if r["id"] in seen:
            raise ReportError(f"invalid report at records/{i}/id: duplicate record id {r['id']!r}")
        seen.add(r["id"])
        if r["status"] == "ok":
            n, got = r["steady"]["stats"]["n"], len(r["steady"]["samples_ms"])
            if n != got:
                raise ReportError(f"invalid report at records/{i}/steady/stats/n: {n} but "
                                  f"{got} raw samples")
            _check_blocks(r["steady"].get("block_ends"), got, f"records/{i}/steady/block_ends")
            for k, w in enumerate(r["steady"].get("workers") or []):
                _check_blocks(w["block_ends"], len(w["samples_ms"]), f"records/{i}/steady/workers/{k}/block_ends")
    cal = obj.get("calibration")
    if cal and cal["stats"]["n"] != len(cal["samples_ms"]):
        raise ReportError("invalid report at calibration/stats/n: does not match the raw samples")
    return obj


def _non_finite(obj, path=()):
    """The path of the first NaN / infinite number in ``obj`` (iteratively: no recursion limit), or None."""
    stack = [(obj, path)]
    while stack:
        o, p = stack.pop()
        if isinstance(o, float) and not math.isfinite(o):
            return p
        if isinstance(o, dict):
            stack.extend((v, p + (k,)) for k, v in o.items())
        elif isinstance(o, list):
            if _plain_numbers(o):            # a samples array: one pass in C, no path per element
                if not all(map(math.isfinite, o)):
                    return p + (next(i for i, v in enumerate(o) if not math.isfinite(v)),)
                continue
            stack.extend((v, p + (i,)) for i, v in enumerate(o))
    return None


def _plain_numbers(arr: list) -> bool:
    """Every element an int or a float (not a bool, not a container)."""
    return set(map(type, arr)) <= {int, float}


#: the item schemas checked in bulk (samples, block ends): numbers or integers with bounds, nothing else
_BULK_KEYS = {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_BULK_MIN_ITEMS = 64
_VALIDATOR = None


def _bulk_items_ok(items: dict, arr: list) -> bool:
    """True when every element of ``arr`` satisfies ``items`` (a bounded number / integer schema), checked
    with C-level passes; False means "not sure": the element-wise validation then runs and names the first
    bad element, so errors are exactly jsonschema's."""
    if not isinstance(items, dict) or not set(items) <= _BULK_KEYS or items.get("type") not in ("number", "integer"):
        return False
    types = set(map(type, arr))
    if not types <= ({int} if items["type"] == "integer" else {int, float}):
        return False
    lo, hi = min(arr), max(arr)
    return (("minimum" not in items or lo >= items["minimum"])
            and ("exclusiveMinimum" not in items or lo > items["exclusiveMinimum"])
            and ("maximum" not in items or hi <= items["maximum"])
            and ("exclusiveMaximum" not in items or hi < items["exclusiveMaximum"]))


def _validator_class():
    """Draft 2020-12 with one change: a long array of numbers under a bounded number / integer ``items``
    schema (the samples, ~10^4-10^6 of them in a device report) is checked in bulk instead of one
    validator descent per element (30 s for a 3-record report of 10^6 samples); any doubt falls back to
    the element-wise check."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema
        base = jsonschema.Draft202012Validator
        default_items = base.VALIDATORS["items"]

        def items(validator, item_schema, instance, schema_):
            if (isinstance(instance, list) and len(instance) >= _BULK_MIN_ITEMS
                    and _bulk_items_ok(item_schema, instance)):
                return
            yield from default_items(validator, item_schema, instance, schema_)

        _VALIDATOR = jsonschema.validators.extend(base, {"items": items})
    return _VALIDATOR


def _check_blocks(ends, n: int, where: str) -> None:
    if ends is None:
        return
    if ends[-1] != n or any(b <= a for a, b in zip([0] + list(ends), ends)):
        raise ReportError(f"invalid report at {where}: block ends must increase and end at the number of "
                          f"samples ({n})")


def load_report(path) -> dict:
    """Read and validate a report file; :class:`ReportError` with one line on any problem."""
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{p}: no such file")
    if p.is_dir():
        raise ReportError(f"{p} is a directory, not a report file")
    from . import safejson
    try:
        obj = safejson.read(p, MAX_REPORT_BYTES)
    except OSError as e:
        raise ReportError(f"{p}: cannot read: {e.strerror}") from None
    except ValueError as e:
        cut = " (incomplete: copied while it was being written?)" if "Expecting" in str(e) or \
            "Unterminated" in str(e) else ""
        raise ReportError(f"{p}: {e}{cut}; pull the report again") from None
    try:
        return validate_report(obj)
    except ReportError as e:
        raise ReportError(f"{p}: {e}") from None


def dump_report(report: dict, path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False))
    os.replace(tmp, p)


def normalize_report(report: dict) -> dict:
    """Recompute every statistic from the raw samples with this toolkit's definitions (an app's own
    statistics may differ in percentile method), fill derived fields (achieved GFLOP/s), sort records.
    Returns a new dict; the input must be valid."""
    out = json.loads(json.dumps(report))
    peak = (out.get("settings") or {}).get("peak_gflops_per_core")
    threads = (out.get("settings") or {}).get("threads")
    for r in out["records"]:
        if r["status"] != "ok":
            continue
        r["steady"]["stats"] = summarize(r["steady"]["samples_ms"])
        for w in r["steady"].get("workers") or []:
            from .stability import block_means
            w["median_ms"] = float(summarize(block_means(w["samples_ms"], w["block_ends"]))["median"])
        if r.get("calibration"):
            r["calibration"]["median_ms"] = summarize(r["calibration"]["samples_ms"])["median"]
        fill_throughput(r, peak, threads)
    cal = out.get("calibration")
    if cal:
        cal["stats"] = summarize(cal["samples_ms"])
        cal["median_ms"] = cal["stats"]["median"]
    out["records"].sort(key=lambda r: (r["encoder"], r["artifact"], r["runtime"]))
    bad = _non_finite(out)
    if bad is not None:                       # in-range inputs whose derived figures overflow
        raise ReportError(f"invalid report at {_where(bad)}: the figures derived from it are not finite")
    return out


def fill_throughput(r: dict, peak_per_core: Optional[float], threads: Optional[int]) -> None:
    """``achieved_gflops`` = FLOPs of one inference / median latency; ``fraction_of_peak`` when the
    machine's per-core peak is given (× threads)."""
    flops = r.get("flops")
    work = (r.get("steady") or {}).get("work_factor", 1) or 1
    if r.get("status") == "ok" and flops:
        med_s = r["steady"]["stats"]["median"] / 1e3 / work
        r["achieved_gflops"] = flops / med_s / 1e9
        t = (r.get("runtime_options") or {}).get("threads") or threads
        r["fraction_of_peak"] = (r["achieved_gflops"] / (peak_per_core * t)
                                 if peak_per_core and t else None)
    else:
        r.setdefault("achieved_gflops", None)
        r.setdefault("fraction_of_peak", None)


# ---------------------------------------------------------------------------------------------------
# host

def _cpu_model() -> Optional[str]:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        import subprocess
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def _physical_cores() -> Optional[int]:
    if sys.platform.startswith("linux"):
        try:
            cores, phys = set(), None
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    cores.add((phys, line.split(":", 1)[1].strip()))
            return len(cores) or None
        except OSError:
            return None
    if sys.platform == "darwin":
        import subprocess
        try:
            return int(subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True,
                                      text=True, timeout=5).stdout.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    return None


def _memory_gb() -> Optional[float]:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 2)
    except (ValueError, OSError, AttributeError):
        return None


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def library_versions() -> dict:
    out = {}
    for d in LIBRARIES:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def host_info() -> dict:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "name": socket.gethostname() or None,
        "device": None,
        "os": platform.system(),
        "os_release": platform.release(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": _physical_cores(),
        "cpu_available": available,
        "memory_total_gb": _memory_gb(),
        "loadavg_start": _loadavg(),
        "loadavg_end": None,
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------
# text tables

def _fmt(v, spec=".2f", none="—"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def record_label(r: dict) -> str:
    return f"{r['artifact']} @ {r['runtime']}"


def _procs(r: dict) -> str:
    """``accepted/processes`` and the status when not stable, e.g. ``3/4`` or ``1/6 contended``."""
    p = r["steady"].get("processes")
    if not p:
        return "1"
    return f"{p['accepted']}/{p['processes']}" + ("" if p["status"] == "stable" else f" {p['status']}")


def table(report: dict, markdown: bool = False) -> str:
    """The per-record latency table (ms), as plain text or GitHub markdown."""
    head = ["artifact", "runtime", "status", "median", "p90", "p99", "mean±std", "trim", "n", "procs",
            "cold load", "1st inf", "peak RSS", "max abs", "cos min", "zero-shot", "GFLOP/s"]
    rows = []
    for r in report["records"]:
        if r["status"] != "ok":
            rows.append([r["artifact"], r["runtime"], r["status"]] + [""] * 13 + [r.get("reason") or ""])
            continue
        s, p = r["steady"]["stats"], r["parity"]
        rows.append([
            r["artifact"], r["runtime"], "ok", _fmt(s["median"]), _fmt(s["p90"]), _fmt(s["p99"]),
            f"{s['mean']:.2f}±{s['std']:.2f}", _fmt(s["trimmed_mean"]), str(s["n"]), _procs(r),
            _fmt(r["load"]["cold_s"] * 1e3, ".0f") + " ms", _fmt(r["first_inference_ms"], ".1f"),
            _fmt(r["memory"]["peak_rss_mb"], ".0f") + " MB", _fmt(p["max_abs"], ".1e"),
            _fmt(p["cosine_min"], ".6f"), f"{p['zero_shot_agreement']:.0%}",
            _fmt(r.get("achieved_gflops"), ".1f")])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            if row[2] != "ok":
                row = row[:3] + [row[-1]] + [""] * (len(head) - 4)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows if row[2] == "ok" or i < 3))
              if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    for row in rows:
        if row[2] != "ok":
            out.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths[:3])) + "  " + row[-1])
        else:
            out.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(out)


def header_lines(report: dict) -> list:
    h, s, cal = report["host"], report["settings"], report.get("calibration")
    lines = [f"{report['bundle']['model']} — {report['source']} — {report['created']}",
             f"host: {h.get('device') or h.get('name') or '?'}, {h['os']} {h.get('os_release') or ''}, "
             f"{h.get('cpu_model') or '?'} ({h.get('cpu_count_logical')} logical CPUs), "
             f"load {h.get('loadavg_start')}",
             f"settings: threads {s['threads']}, warmup {s['warmup']}, runs {s['runs']}, "
             f"min {s.get('min_seconds', 0)} s, min blocks {s.get('min_blocks', 1)}, processes "
             f"{s.get('processes', 1)} (up to {s.get('max_processes', s.get('processes', 1))})"
             + (f", ONNX Runtime spinning {'on' if s['ort_spinning'] else 'off'}" if "ort_spinning" in s else "")
             + (f", work factor {s['work_factor']:g}" if s.get("work_factor", 1) != 1 else "")]
    if cal:
        lines.append(f"calibration: {cal['name']} median {cal['median_ms']:.3f} ms "
                     f"(n {cal['stats']['n']})")
    return lines


# ---------------------------------------------------------------------------------------------------
# PyTorch OSS benchmark database ("v3") records

_BACKEND = {"onnxruntime": "onnxruntime-cpu", "executorch": "xnnpack", "litert": "litert-xnnpack", "torch": "eager",
            "coreml": "coreml"}


def to_v3(report: dict) -> list:
    """One v3 record per metric per ok record (the format of
    https://github.com/pytorch/pytorch/wiki/How-to-integrate-with-PyTorch-OSS-benchmark-database:
    ``benchmark`` {name, mode, dtype, extra_info}, ``model`` {name, type, backend, origins, extra_info},
    ``metric`` {name, benchmark_values, target_value, extra_info}, ``runners`` [{name, type, cpu_info,
    cpu_count, ...}])."""
    h, s = report["host"], report["settings"]
    cal = report.get("calibration")
    runner = {"name": h.get("device") or h.get("name") or "unknown",
              "type": f"{h['os']} {h.get('os_release') or ''}".strip(),
              "cpu_info": h.get("cpu_model"), "cpu_count": h.get("cpu_count_logical"),
              "total_mem_in_gb": h.get("memory_total_gb"), "avail_mem_in_gb": None,
              "gpu_info": None, "gpu_count": 0,
              "extra_info": {"machine": h.get("machine"), "platform": h.get("platform"),
                             "libraries": h.get("libraries")}}
    out = []
    for r in report["records"]:
        if r["status"] != "ok":
            continue
        st = r["steady"]["stats"]
        metrics = [
            ("median_inference_latency(ms)", st["median"]),
            ("avg_inference_latency(ms)", st["mean"]),
            ("p90_inference_latency(ms)", st["p90"]),
            ("p99_inference_latency(ms)", st["p99"]),
            ("trimmed_mean_inference_latency(ms)", st["trimmed_mean"]),
            ("model_load_time(ms)", r["load"]["cold_s"] * 1e3),
            ("warm_load_time(ms)", r["load"]["warm_s"] * 1e3),
            ("first_inference_latency(ms)", r["first_inference_ms"]),
            ("peak_inference_mem_usage(mb)", r["memory"]["peak_rss_mb"]),
            ("parity_max_abs", r["parity"]["max_abs"]),
            ("parity_cosine_min", r["parity"]["cosine_min"]),
            ("zero_shot_agreement", r["parity"]["zero_shot_agreement"]),
            ("achieved_gflops", r.get("achieved_gflops")),
        ]
        for name, value in metrics:
            if value is None:
                continue
            out.append({
                "benchmark": {"name": "clipdeploy", "mode": "inference", "dtype": r["precision"],
                              "extra_info": {"source": report["source"], "threads": s["threads"],
                                             "warmup": s["warmup"], "runs": s["runs"],
                                             "work_factor": s.get("work_factor", 1),
                                             "calibration_median_ms": cal["median_ms"] if cal else None,
                                             "created": report["created"]}},
                "model": {"name": f"{r['model']}_{r['encoder']}_encoder", "type": "OSS model",
                          "backend": f"{r['target']}-{r['precision']}/{_BACKEND.get(r['runtime'], r['runtime'])}",
                          "origins": ["clipdeploy"],
                          "extra_info": {"artifact": r["artifact"], "runtime": r["runtime"],
                                         "runtime_options": r.get("runtime_options"),
                                         "flops": r.get("flops")}},
                "metric": {"name": name, "benchmark_values": [value], "target_value": None,
                           "extra_info": {"method": "forward", "n": st["n"]}},
                "runners": [runner],
            })
    return out


# ---------------------------------------------------------------------------------------------------
# process-level repeats of a single-process report (the apps: one activity / app launch per process)

def merge_process_reports(reports: list, source_note: str = "") -> dict:
    """One report from several valid single-process reports of the same bundle (the Android activity
    started again for each process): each record's ``steady.workers`` gets one worker per report, the
    workers are checked like ``clip-latency run``'s (:func:`clipdeploy.latency.stability.assess`) and
    the pooled samples of the accepted ones become the record's. A record that failed in any report
    is that failure."""
    from .stability import assess, block_means, record_status

    if not reports:
        raise ReportError("no reports to merge")
    models = {r["bundle"]["model"] for r in reports}
    if len(models) != 1:
        raise ReportError(f"cannot merge reports of different models: {', '.join(sorted(models))}")
    out = json.loads(json.dumps(reports[0]))
    by_id = [{r["id"]: r for r in rep["records"]} for rep in reports]
    merged = []
    for rec in out["records"]:
        copies = [m[rec["id"]] for m in by_id if rec["id"] in m]       # a record missing in one report: fewer processes
        failed = next((c for c in copies if c["status"] != "ok"), None)
        if failed is not None:
            merged.append(json.loads(json.dumps(failed)))
            continue
        workers = []
        for i, c in enumerate(copies):
            st = c["steady"]
            ends = st.get("block_ends") or [len(st["samples_ms"])]
            workers.append({"index": i, "round": i, "pid": None, "samples_ms": st["samples_ms"],
                            "block_ends": ends,
                            "median_ms": float(summarize(block_means(st["samples_ms"], ends))["median"]),
                            "seconds": st.get("seconds"), "cpu_s": st.get("cpu_s"), "inferences": None,
                            "cold_load_s": c["load"]["cold_s"], "calibration_ms": None,
                            "contention": None, "flags": [], "accepted": True})
        acc = assess(workers)
        use = acc or workers
        pooled = [x for w in use for x in w["samples_ms"]]
        rec["steady"].pop("block_ends", None)
        rec["steady"].update({"samples_ms": pooled, "stats": summarize(pooled),
                              "seconds": sum(w["seconds"] or 0.0 for w in use),
                              "processes": record_status(workers, len(workers)), "workers": workers})
        colds = sorted(w["cold_load_s"] for w in workers)
        rec["load"]["cold_s"] = colds[len(colds) // 2]
        merged.append(rec)
    out["records"] = merged
    out.setdefault("settings", {})["processes"] = len(reports)
    return validate_report(out)
