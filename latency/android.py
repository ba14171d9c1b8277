"""``clip-latency android``: drive the Android app's benchmark activity over adb.

The contract the app implements (docs/latency.md, "Android benchmark contract"):

* package ``org.clipdeploy.app``, activity ``org.clipdeploy.app.BenchmarkActivity`` (exported);
* string extra ``bundle``: path of a bundle on the device (pushed to ``/data/local/tmp/clipdeploy/<model>``);
* string extra ``runtime``: ``executorch`` (XNNPACK ``.pte``), ``onnxruntime`` (``.onnx``) or ``litert``
  (LiteRT ``.tflite`` on XNNPACK);
* int extras ``runs``, ``warmup``, ``threads`` (0 = the runtime's default), ``min_blocks``; float extra
  ``min_seconds`` (timed work per process, at least);
* string extra ``report``: where to write the report (default
  ``/sdcard/Android/data/org.clipdeploy.app/files/report.json``). The app writes ``<report>.tmp`` and
  renames it to ``<report>`` when complete, or writes ``<report>.error`` (one line) on failure;
* the report is a clipdeploy latency report (``schema_version`` 1, ``source`` "android-app").

Process-level repeats: the activity is force-stopped and started again ``processes`` times (default 3),
each start a fresh app process, and the reports are merged into one with a worker per start
(:func:`clipdeploy.latency.report.merge_process_reports`), checked like ``clip-latency run``'s workers.

The command sequence is built by :func:`build_commands` (a pure function, tested on its own) and run by
:func:`run_android`.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

PACKAGE = "org.clipdeploy.app"
ACTIVITY = ".BenchmarkActivity"
REMOTE_ROOT = "/data/local/tmp/clipdeploy"
DEFAULT_REPORT = f"/sdcard/Android/data/{PACKAGE}/files/report.json"
RUNTIMES = ("executorch", "onnxruntime", "litert")


class AndroidInputError(ValueError):
    """Bad arguments / no adb / no device (exit 2)."""


class AndroidRunError(RuntimeError):
    """The device run failed (exit 1)."""


def remote_bundle(model: str, remote_root: str = REMOTE_ROOT) -> str:
    return f"{remote_root.rstrip('/')}/{model}"


def build_commands(bundle_dir, model: str, adb: str = "adb", serial: Optional[str] = None,
                   runtime: str = "executorch", runs: int = 50, warmup: int = 10, threads: int = 0,
                   report_path: str = DEFAULT_REPORT, local_report="report.json",
                   remote_root: str = REMOTE_ROOT, min_seconds: float = 2.0, min_blocks: int = 8) -> dict:
    """The adb argv lists, by step: ``state``, ``prepare`` (list of argv), ``push``, ``clear``,
    ``stop`` (force-stop: the next start is a fresh process), ``start``, ``poll``, ``poll_error``,
    ``read_error``, ``pull``."""
    if runtime not in RUNTIMES:
        raise AndroidInputError(f"unknown runtime '{runtime}' for Android: use "
                                f"{', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}")
    base = [str(adb)] + (["-s", serial] if serial else [])
    dest = remote_bundle(model, remote_root)
    q = shlex.quote

    def shell(*args):
        return base + ["shell", " ".join(q(str(a)) for a in args)]

    return {
        "state": base + ["get-state"],
        "prepare": [shell("rm", "-rf", dest), shell("mkdir", "-p", remote_root)],
        "push": base + ["push", str(bundle_dir), dest],
        "clear": shell("rm", "-f", report_path, report_path + ".tmp", report_path + ".error"),
        "stop": shell("am", "force-stop", PACKAGE),
        "start": shell("am", "start", "-W", "-n", f"{PACKAGE}/{ACTIVITY}", "--es", "bundle", dest,
                       "--es", "runtime", runtime, "--ei", "runs", int(runs), "--ei", "warmup",
                       int(warmup), "--ei", "threads", int(threads or 0), "--ef", "min_seconds",
                       float(min_seconds), "--ei", "min_blocks", int(min_blocks), "--es", "report", report_path),
        "poll": shell("test", "-f", report_path),
        "poll_error": shell("test", "-f", report_path + ".error"),
        "read_error": shell("cat", report_path + ".error"),
        "pull": base + ["pull", report_path, str(local_report)],
    }


def _run(argv, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AndroidRunError(f"`{' '.join(argv[:4])} …` took more than {timeout:.0f} s") from None


def run_android(bundle_dir, adb: Optional[str] = None, serial: Optional[str] = None,
                runtime: str = "executorch", runs: int = 50, warmup: int = 10, threads: int = 0,
                report_path: str = DEFAULT_REPORT, timeout: float = 1800.0, poll_s: float = 2.0,
                log: Callable = print, processes: int = 3, min_seconds: float = 2.0,
                min_blocks: int = 8) -> dict:
    """Push the bundle, start the benchmark activity, wait for the report, pull it, validate it.
    Returns the (validated, normalized) report."""
    from .bundle import Bundle, BundleError
    from .report import ReportError, load_report, merge_process_reports, normalize_report

    if processes < 1 or min_seconds < 0 or min_blocks < 1:
        raise AndroidInputError("need --processes >= 1, --min-seconds >= 0, --min-blocks >= 1")

    adb_path = adb or "adb"
    resolved = shutil.which(adb_path)
    if not resolved:
        raise AndroidInputError(f"adb not found ({adb_path!r}); install Android platform-tools or pass --adb")
    try:
        bundle = Bundle(bundle_dir)
        bundle.verify_all()                     # push only what matches the manifest's digests
    except BundleError as e:
        raise AndroidInputError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="clip-latency-android-") as d:
        local = Path(d) / "report.json"
        cmds = build_commands(bundle.path, bundle.model, resolved, serial, runtime, runs, warmup, threads,
                              report_path, local, min_seconds=min_seconds, min_blocks=min_blocks)
        st = _run(cmds["state"], 30)
        if st.returncode != 0 or st.stdout.strip() != "device":
            raise AndroidInputError(f"no device ready: `adb get-state` says "
                                    f"{(st.stdout.strip() or st.stderr.strip() or 'nothing')[:200]}")
        for step in ("prepare", "push"):
            argvs = cmds[step] if step == "prepare" else [cmds[step]]
            for argv in argvs:
                log(f"$ {' '.join(shlex.quote(a) for a in argv)}")
                r = _run(argv, 1800 if step == "push" else 120)
                if r.returncode != 0:
                    raise AndroidRunError(f"{step} failed: {(r.stderr or r.stdout).strip()[:300]}")
        reports = []
        for k in range(processes):
            log(f"== process {k + 1} of {processes}")
            for step in ("clear", "stop", "start"):
                argv = cmds[step]
                log(f"$ {' '.join(shlex.quote(a) for a in argv)}")
                r = _run(argv, 120)
                if r.returncode != 0 or (step == "start" and "Error" in r.stdout + r.stderr):
                    raise AndroidRunError(f"{step} failed: {(r.stderr or r.stdout).strip()[:300]}")
            t0 = time.monotonic()
            while True:
                if _run(cmds["poll"], 60).returncode == 0:
                    break
                if _run(cmds["poll_error"], 60).returncode == 0:
                    msg = _run(cmds["read_error"], 60).stdout.strip()
                    raise AndroidRunError(f"the app reported an error: {msg[:300]}")
                if time.monotonic() - t0 > timeout:
                    raise AndroidRunError(f"no report at {report_path} after {timeout:.0f} s")
                time.sleep(poll_s)
            log(f"$ {' '.join(cmds['pull'])}")
            r = _run(cmds["pull"], 300)
            if r.returncode != 0:
                raise AndroidRunError(f"pull failed: {(r.stderr or r.stdout).strip()[:300]}")
            try:
                reports.append(load_report(local))
            except ReportError as e:
                raise AndroidRunError(f"the app's report is invalid: {e}") from None
        try:
            rep = normalize_report(merge_process_reports(reports) if processes > 1 else reports[0])
        except ReportError as e:
            raise AndroidRunError(f"the app's reports cannot be merged: {e}") from None
        if rep["bundle"]["model"] != bundle.model:
            raise AndroidRunError(f"the app's report is for {rep['bundle']['model']}, not {bundle.model}")
        return rep
