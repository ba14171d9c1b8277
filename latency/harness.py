"""``clip-latency run``: every artifact of a bundle on every runtime of this host, each in its own
worker process (:mod:`clipdeploy.latency.worker`) with a timeout, plus the calibration workload
(:mod:`clipdeploy.latency.calibration`) at the start and at the end of the run and around every
steady state; the result is one report (:mod:`clipdeploy.latency.report`)."""
from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import report as rep
from .bundle import Artifact, Bundle
from .runtimes import RUNTIMES, child_env
from . import calibration as calib
from .stats import summarize
from .worker import EVENT_PREFIX

DEFAULT_TIMEOUT_S = 600.0
CALIBRATION_RUNS = 40          # per block; one block at the start and one at the end of a run


class RunInputError(ValueError):
    """Bad arguments to ``run`` (one line for ``error:``)."""


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(4, n))


# ---------------------------------------------------------------------------------------------------
# one worker process

def run_worker(job: dict, timeout: float, on_event: Optional[Callable] = None,
               threads: Optional[int] = None) -> tuple:
    """Run ``job`` in a fresh ``python -m clipdeploy.latency.worker``. Returns ``(result or None,
    info)`` with info = {returncode, timed_out, peak_rss_mb (os.wait4 ru_maxrss), wall_s, tail}."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="clip-latency-") as d:
        job_path, out_path = Path(d) / "job.json", Path(d) / "result.json"
        job_path.write_text(json.dumps(job))
        argv = [sys.executable, "-m", "clipdeploy.latency.worker", str(job_path), str(out_path)]
        tail = collections.deque(maxlen=40)
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1, env=child_env(threads), errors="replace")

        def pump():
            for line in p.stdout:
                if line.startswith(EVENT_PREFIX):
                    if on_event:
                        try:
                            on_event(json.loads(line[len(EVENT_PREFIX):]))
                        except ValueError:
                            pass
                else:
                    tail.append(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out, rusage, status = False, None, None
        deadline = t0 + timeout
        if hasattr(os, "wait4"):
            while True:
                pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
                if pid != 0:
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    p.kill()
                    _, status, rusage = os.wait4(p.pid, 0)
                    break
                time.sleep(0.02)
            p.returncode = os.waitstatus_to_exitcode(status)
        else:  # pragma: no cover - no wait4 (Windows)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                p.kill()
                p.wait()
        wall = time.perf_counter() - t0
        reader.join(timeout=5)
        peak = None
        if rusage is not None:
            peak = rusage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else rusage.ru_maxrss / 1024
        result = None
        if out_path.exists():
            try:
                result = json.loads(out_path.read_text())
            except ValueError:
                result = None
        cpu = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else None
        return result, {"returncode": p.returncode, "timed_out": timed_out, "peak_rss_mb": peak,
                        "wall_s": wall, "cpu_s": cpu, "tail": list(tail)}


# ---------------------------------------------------------------------------------------------------
# progress on stderr

class Progress:
    """One line per artifact × runtime on stderr: live phase updates on a terminal, the final line
    otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.i = total, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = ""
        self.t0 = time.perf_counter()
        self._last = 0

    def start(self, label: str):
        self.i += 1
        self.label = f"[{self.i}/{self.total}] {label}"
        self.t0 = time.perf_counter()
        self._show("start")

    def _show(self, text: str):
        if not self.tty:
            return
        line = f"{self.label}  {text}  {time.perf_counter() - self.t0:.1f}s"
        pad = max(0, self._last - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._last = len(line)

    def event(self, ev: dict):
        ph = ev.get("phase", "")
        if ph == "steady" and "done" in ev:
            ph = f"steady {ev['done']}/{ev.get('runs')}"
        self._show(ph)

    def finish(self, text: str):
        if not self.enabled:
            return
        line = f"{self.label}  {text}  ({time.perf_counter() - self.t0:.1f}s)"
        if self.tty:
            pad = max(0, self._last - len(line))
            self.stream.write("\r" + line + " " * pad + "\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = 0

    def note(self, text: str):
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------------
# the run

def parse_runtimes(spec) -> list:
    names = []
    for item in (spec if isinstance(spec, (list, tuple)) else [spec or "all"]):
        for n in str(item).split(","):
            n = n.strip()
            if not n:
                continue
            if n == "all":
                names.extend(RUNTIMES)
            elif n in RUNTIMES:
                names.append(n)
            else:
                raise RunInputError(f"unknown runtime '{n}': choose from {', '.join(RUNTIMES)} or all")
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def plan(bundle: Bundle, runtimes: list, encoders=None, targets=None, options=None) -> tuple:
    """``(jobs, skipped)``: jobs = [(Artifact, runtime name)], skipped = [(Artifact, runtime, reason)]."""
    jobs, skipped = [], []
    arts = bundle.artifacts()
    if encoders:
        arts = [a for a in arts if a.encoder in encoders]
    if targets:
        arts = [a for a in arts if a.target in targets or a.path in targets]
    encs = [e for e in bundle.encoders() if not encoders or e in encoders]
    for name in runtimes:
        cls = RUNTIMES[name]
        rt = cls(bundle, options)
        mine = [Artifact("pytorch", "fp32", e, None) for e in encs] if name == "torch" else \
            [a for a in arts if rt.runs(a)]
        if name == "torch" and targets and "pytorch" not in targets and "torch" not in targets:
            mine = []
        why = cls.available()
        for a in mine:
            reason = why or rt.skip_reason(a)
            (skipped.append((a, name, reason)) if reason else jobs.append((a, name)))
    return jobs, skipped


def _identity(bundle: Bundle, art: Artifact, runtime: str) -> dict:
    return {"id": f"{art.id}@{runtime}", "model": bundle.model, "artifact": art.id,
            "target": art.target, "precision": art.precision, "encoder": art.encoder,
            "runtime": runtime}


def _calibrate(timeout: float, runs: int, progress: Progress, at: str) -> tuple:
    job = {"kind": "calibration", "warmup": 5, "runs": runs}
    progress.start(f"calibration ({at})")
    res, info = run_worker(job, timeout, progress.event, threads=1)
    if not res or not res.get("ok"):
        why = (res or {}).get("error") or (info["tail"][-1] if info["tail"] else f"exit {info['returncode']}")
        progress.finish(f"failed: {why}")
        return None, why
    med = summarize(res["samples_ms"])["median"]
    progress.finish(f"median {med:.3f} ms")
    return res["samples_ms"], None


def run_bundle(bundle_path, runtimes="all", threads: Optional[int] = None, warmup: int = 10,
               runs: int = 50, min_seconds: float = 0.0, timeout: float = DEFAULT_TIMEOUT_S,
               work_factor: int = 1, encoders=None, targets=None, checkpoint: Optional[str] = None,
               compute_units: str = "ALL", flops: bool = True, calibration: bool = True,
               peak_gflops_per_core: Optional[float] = None, verify_reparam: bool = False,
               progress: bool = True,
               stream=None) -> dict:
    """Measure and return a report (valid against the schema)."""
    if warmup < 0 or runs < 1 or min_seconds < 0 or work_factor < 1 or timeout <= 0:
        raise RunInputError("need --warmup >= 0, --runs >= 1, --min-seconds >= 0, --timeout > 0")
    threads = int(threads) if threads else default_threads()
    if threads < 1:
        raise RunInputError("--threads must be >= 1")
    names = parse_runtimes(runtimes)
    bundle = Bundle(bundle_path)
    options = {"checkpoint": checkpoint, "compute_units": compute_units, "verify_reparam": verify_reparam}
    jobs, skipped = plan(bundle, names, encoders, targets, options)
    if not jobs and not skipped:
        raise RunInputError(f"nothing to run: no artifact of {bundle.path} matches the selection")
    host = rep.host_info()
    prog = Progress(len(jobs) + (2 if calibration else 0), stream=stream, enabled=progress)

    cal_blocks = []
    if calibration:
        s, why = _calibrate(min(timeout, 300), CALIBRATION_RUNS, prog, "start")
        if s:
            cal_blocks.append(("start", s))

    records = []
    torch_flops = {}
    for art, rt_name in jobs:
        ident = _identity(bundle, art, rt_name)
        job = {"kind": "artifact", "bundle": str(bundle.path.resolve()), "artifact": art.to_dict(),
               "runtime": rt_name, "threads": threads, "warmup": warmup, "runs": runs,
               "min_seconds": min_seconds, "work_factor": work_factor, "options": options,
               "calibration": calibration}
        prog.start(f"{art.id} @ {rt_name}")
        last = {}

        def on_event(ev, _last=last):
            _last.clear()
            _last.update(ev)
            _last["t"] = time.perf_counter()
            prog.event(ev)

        res, info = run_worker(job, timeout, on_event, threads=threads)
        rec = dict(ident)
        rec["runtime_versions"] = RUNTIMES[rt_name].versions()
        man = bundle.manifest_artifact(art) if art.path else None
        exp = (man or {}).get("parity")
        rec["export_parity"] = exp if exp and exp.get("checked") == "numeric" else None
        rec["wall_s"] = info["wall_s"]
        if res and res.get("ok"):
            stats = summarize(res["samples_ms"])
            peak = info["peak_rss_mb"] if info["peak_rss_mb"] is not None else res.get("peak_rss_self_mb")
            rec.update({
                "status": "ok", "reason": None, "phase_reached": res.get("phase_reached"),
                "runtime_options": res.get("runtime_options") or {},
                "load": {"import_s": res["import_s"], "cold_s": res["cold_load_s"],
                         "warm_s": res["warm_load_s"]},
                "first_inference_ms": res["first_inference_ms"],
                "steady": {"warmup": warmup, "work_factor": work_factor, "samples_ms": res["samples_ms"],
                           "stats": stats, "seconds": res["steady_seconds"],
                           "cpu_s": res.get("steady_cpu_s")},
                "memory": {"peak_rss_mb": peak, "rss_after_load_mb": res.get("rss_after_load_mb"),
                           "source": "os.wait4 ru_maxrss of the worker process"
                           if info["peak_rss_mb"] is not None else "getrusage(RUSAGE_SELF) in the worker"},
                "parity": res["parity"],
                "flops": res.get("flops"),
            })
            if res.get("block_ends"):
                rec["steady"]["blocks"] = {"ends": res["block_ends"],
                                           "calibration_ms": res["block_calibration_ms"]}
            if res.get("calibration_blocks"):
                pooled = [x for blk in res["calibration_blocks"] for x in blk]
                blocks = zip(("before", "after"), res["calibration_blocks"])
                rec["calibration"] = {"samples_ms": pooled, "median_ms": summarize(pooled)["median"],
                                      "blocks": [{"at": at, "n": len(blk), "median_ms": summarize(blk)["median"]}
                                                 for at, blk in blocks]}
            if rt_name == "torch" and res.get("flops"):
                torch_flops[art.encoder] = res["flops"]
            p = res["parity"]
            max_abs = "—" if p["max_abs"] is None else format(p["max_abs"], ".1e")
            prog.finish(f"median {stats['median']:.2f} ms (n {stats['n']}), cold load "
                        f"{res['cold_load_s']:.2f} s, max abs {max_abs}, zero-shot {p['zero_shot_agreement']:.0%}")
        else:
            phase = (res or {}).get("phase_reached") or last.get("phase")
            if info["timed_out"]:
                where = phase or "start-up"
                if last.get("phase") == "steady" and "done" in last:
                    where += f", {last['done']} of {last.get('runs')} samples"
                status, why = "timeout", (f"killed after {timeout:.0f} s in phase {where} (CPU time "
                                          f"{info['cpu_s']:.0f} s: " + ("starved by other load?"
                                          if info["cpu_s"] < 0.25 * timeout else "busy") + ")")
            elif res and res.get("error"):
                status, why = "error", f"{res['error']} (phase {phase or '?'})"
            else:
                rc = info["returncode"]
                sig = f"signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
                last = next((ln for ln in reversed(info["tail"]) if ln.strip()), "")
                status, why = "error", f"worker died ({sig}) in phase {phase or '?'}: {last[:300]}"
            rec.update({"status": status, "reason": why, "phase_reached": phase,
                        "memory": {"peak_rss_mb": info["peak_rss_mb"], "source": "os.wait4"}})
            prog.finish(f"{status}: {why}")
        records.append(rec)

    for art, rt_name, why in skipped:
        rec = _identity(bundle, art, rt_name)
        rec.update({"status": "skipped", "reason": why, "runtime_versions": RUNTIMES[rt_name].versions()})
        records.append(rec)
        prog.note(f"skip  {art.id} @ {rt_name}: {why}")

    # FLOPs of each encoder (the same function on every runtime), from the torch reference
    want = {r["encoder"] for r in records if r["status"] == "ok"} - set(torch_flops)
    if flops and want and RUNTIMES["torch"].available() is None:
        job = {"kind": "flops", "bundle": str(bundle.path.resolve()), "encoders": sorted(want),
               "threads": threads, "options": options}
        prog.note(f"counting FLOPs of {', '.join(sorted(want))} (torch.utils.flop_counter)")
        res, info = run_worker(job, timeout, None, threads=threads)
        if res and res.get("ok"):
            torch_flops.update(res["flops"])
        else:
            prog.note(f"FLOP count failed: {(res or {}).get('error') or info['tail'][-1:]}")
    for r in records:
        if r["status"] == "ok":
            r["flops"] = r.get("flops") or torch_flops.get(r["encoder"])
            r["flops_source"] = "torch.utils.flop_counter on the reparameterized eager module (batch 1)" \
                if r["flops"] else None
            rep.fill_throughput(r, peak_gflops_per_core, threads)

    if calibration:
        s, why = _calibrate(min(timeout, 300), CALIBRATION_RUNS, prog, "end")
        if s:
            cal_blocks.append(("end", s))
    cal = None
    if cal_blocks:
        pooled = [x for _, s in cal_blocks for x in s]
        st = summarize(pooled)
        cal = {"name": calib.NAME, "description": calib.DESCRIPTION, "threads": 1,
               "flops_per_sample": calib.FLOPS_PER_SAMPLE, "samples_ms": pooled,
               "median_ms": st["median"], "stats": st,
               "blocks": [{"at": at, "n": len(s), "median_ms": summarize(s)["median"]} for at, s in cal_blocks]}
    host["loadavg_end"] = rep._loadavg()
    m = bundle.manifest
    report = {
        "schema_version": rep.SCHEMA_VERSION, "kind": rep.KIND, "created": rep.now_iso(),
        "tool": {"name": "clip-latency", "version": host["libraries"].get("clipdeploy")},
        "source": "clip-latency run",
        "bundle": {"path": str(bundle.path), "model": bundle.model, "manifest_created": m.get("created"),
                   "clipdeploy_version": m.get("clipdeploy_version"), "checkpoint": m.get("checkpoint")},
        "host": host,
        "settings": {"threads": threads, "warmup": warmup, "runs": runs, "min_seconds": min_seconds,
                     "timeout_s": timeout, "work_factor": work_factor, "runtimes": names,
                     "peak_gflops_per_core": peak_gflops_per_core},
        "calibration": cal,
        "records": records,
    }
    return rep.validate_report(report)
