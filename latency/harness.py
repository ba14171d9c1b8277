"""``clip-latency run``: every artifact of a bundle on every runtime of this host, each in several fresh
worker processes (:mod:`clipdeploy.latency.worker`, round-robin across the artifacts, each with a
timeout); workers the machine disturbed are flagged and re-run (:mod:`clipdeploy.latency.stability`);
the result is one report (:mod:`clipdeploy.latency.report`)."""
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
DEFAULT_PROCESSES = 3          # worker processes per artifact x runtime
DEFAULT_MIN_SECONDS = 2.0      # timed work per worker, at least ...
DEFAULT_MIN_BLOCKS = 8         # ... and this many blocks (stability.BLOCK_SECONDS each)


class RunInputError(ValueError):
    """Bad arguments to ``run`` (one line for ``error:``)."""


def default_threads() -> int:
    """One core is left to the rest of the machine: 1 thread on 1-2 available CPUs, else
    min(4, CPUs - 1). A runtime that splits work statically over all cores (XNNPACK) falls to its
    one-thread speed as soon as anything else runs on one of them; on a 2-vCPU shared runner only
    the one-thread setting gives a gate without false alarms (docs/latency.md)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return 1 if n <= 2 else min(4, n - 1)


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


def verify_bundle_files(bundle: Bundle) -> dict:
    """Digests of every file of the bundle (the artifacts the run loads, the probe set, and the rest: a
    bundle with one damaged file is not the bundle the export gate passed), then the probe arrays'
    shapes; :class:`BundleError` on a mismatch. Figures of the check."""
    t = time.perf_counter()
    figs = bundle.verify_all()
    bundle.probe()
    return {**figs, "seconds": time.perf_counter() - t}


def _identity(bundle: Bundle, art: Artifact, runtime: str) -> dict:
    return {"id": f"{art.id}@{runtime}", "model": bundle.model, "artifact": art.id,
            "target": art.target, "precision": art.precision, "encoder": art.encoder,
            "runtime": runtime}


def _worker_failure(res, info, last, timeout) -> tuple:
    """``(status, reason, phase)`` of a worker that did not finish."""
    phase = (res or {}).get("phase_reached") or last.get("phase")
    if info["timed_out"]:
        where = phase or "start-up"
        if last.get("phase") == "steady" and "done" in last:
            where += f", {last['done']} samples"
        return "timeout", (f"killed after {timeout:.0f} s in phase {where} (CPU time {info['cpu_s']:.0f} s: "
                           + ("starved by other load?" if info["cpu_s"] < 0.25 * timeout else "busy") + ")"), phase
    if res and res.get("error"):
        return "error", f"{res['error']} (phase {phase or '?'})", phase
    rc = info["returncode"]
    sig = f"signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
    tail = next((ln for ln in reversed(info["tail"]) if ln.strip()), "")
    return "error", f"worker died ({sig}) in phase {phase or '?'}: {tail[:300]}", phase


def _worker_entry(index: int, round_: int, res: dict, info: dict) -> dict:
    from .stability import block_means
    samples = res["samples_ms"]
    cal = [x for blk in (res.get("calibration_blocks") or []) for x in blk] or None
    return {"index": index, "round": round_, "pid": res.get("pid"), "samples_ms": samples,
            "block_ends": res["block_ends"],
            "median_ms": float(summarize(block_means(samples, res["block_ends"]))["median"]),
            "seconds": res["steady_seconds"], "cpu_s": res.get("steady_cpu_s"),
            "inferences": res.get("inferences"),
            "cold_load_s": res["cold_load_s"], "warm_load_s": res["warm_load_s"],
            "first_inference_ms": res["first_inference_ms"], "import_s": res["import_s"],
            "peak_rss_mb": info["peak_rss_mb"] if info["peak_rss_mb"] is not None else res.get("peak_rss_self_mb"),
            "wall_s": info["wall_s"], "calibration_ms": cal, "contention": res.get("contention"),
            "flags": [], "accepted": True}


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(summarize(xs)["median"]) if xs else None


def run_bundle(bundle_path, runtimes="all", threads: Optional[int] = None, warmup: int = 10,
               runs: int = 50, min_seconds: float = DEFAULT_MIN_SECONDS, min_blocks: int = DEFAULT_MIN_BLOCKS,
               processes: int = DEFAULT_PROCESSES, max_processes: Optional[int] = None,
               timeout: float = DEFAULT_TIMEOUT_S, work_factor: float = 1.0, encoders=None, targets=None,
               checkpoint: Optional[str] = None, compute_units: str = "ALL", flops: bool = True,
               calibration: bool = True, peak_gflops_per_core: Optional[float] = None,
               verify_reparam: bool = False, ort_spinning: bool = True, progress: bool = True,
               stream=None) -> dict:
    """Measure and return a report (valid against the schema).

    Every artifact × runtime is measured in ``processes`` fresh worker processes, round-robin across
    the artifacts (round 1: every artifact once, then round 2 …), so that a drift of the machine hits
    every artifact alike. Workers flagged contended, bimodal or outlying (:mod:`.stability`) do not
    count: more rounds run for the records that have fewer than ``processes`` accepted workers, up to
    ``max_processes`` workers each (default 2 × processes)."""
    from .stability import assess, record_status

    max_processes = max_processes if max_processes is not None else 2 * processes
    if (warmup < 0 or runs < 1 or min_seconds < 0 or min_blocks < 1 or not work_factor >= 1 or timeout <= 0
            or processes < 1 or max_processes < processes):
        raise RunInputError("need --warmup >= 0, --runs >= 1, --min-seconds >= 0, --min-blocks >= 1, "
                            "--work-factor >= 1, --processes >= 1, --max-processes >= --processes, "
                            "--timeout > 0")
    threads = int(threads) if threads else default_threads()
    if threads < 1:
        raise RunInputError("--threads must be >= 1")
    names = parse_runtimes(runtimes)
    bundle = Bundle(bundle_path)
    # nothing is loaded or measured before every file it needs matched the manifest's digests
    check = verify_bundle_files(bundle)
    if progress:
        (stream or sys.stderr).write(f"[integrity] {check['files']} files ({check['bytes'] / 2 ** 20:.1f} MB) "
                                     f"match the manifest: {check['hashed_bytes'] / 2 ** 20:.1f} MB hashed, "
                                     f"{check['cached_files']} from the digest cache, {check['seconds']:.2f} s\n")
    options = {"checkpoint": checkpoint, "compute_units": compute_units, "verify_reparam": verify_reparam,
               "ort_spinning": bool(ort_spinning)}
    jobs, skipped = plan(bundle, names, encoders, targets, options)
    if not jobs and not skipped:
        raise RunInputError(f"nothing to run: no artifact of {bundle.path} matches the selection")
    host = rep.host_info()
    prog = Progress(len(jobs) * processes, stream=stream, enabled=progress)

    state = [{"workers": [], "failed": None, "versions": RUNTIMES[rt].versions(), "flops": None}
             for _, rt in jobs]

    def run_one(j: int, round_: int):
        art, rt_name = jobs[j]
        st = state[j]
        k = len(st["workers"])
        job = {"kind": "artifact", "bundle": str(bundle.path.resolve()), "artifact": art.to_dict(),
               "runtime": rt_name, "threads": threads, "warmup": warmup, "runs": runs,
               "min_seconds": min_seconds, "min_blocks": min_blocks, "work_factor": work_factor,
               "options": options, "calibration": calibration,
               "count_flops": flops and rt_name == "torch" and st["flops"] is None}
        if prog.i >= prog.total:
            prog.total += 1
        prog.start(f"{art.id} @ {rt_name}  (process {k + 1})")
        last = {}

        def on_event(ev, _last=last):
            _last.clear()
            _last.update(ev)
            prog.event(ev)

        res, info = run_worker(job, timeout, on_event, threads=threads)
        if res and res.get("ok"):
            w = _worker_entry(k, round_, res, info)
            st["workers"].append(w)
            st.setdefault("first", res)
            if res.get("flops"):
                st["flops"] = res["flops"]
            c = w["contention"] or {}
            other = "" if c.get("other_cpu") is None else f", other load {c['other_cpu']:.2f} cores"
            prog.finish(f"median {w['median_ms']:.2f} ms ({len(w['samples_ms'])} samples, "
                        f"{len(w['block_ends'])} blocks){other}")
        else:
            st["failed"] = _worker_failure(res, info, last, timeout) + (info,)
            prog.finish(f"{st['failed'][0]}: {st['failed'][1]}")

    for round_ in range(processes):
        for j in range(len(jobs)):
            if state[j]["failed"] is None:
                run_one(j, round_)
    round_ = processes
    while True:
        need = []
        for j, st in enumerate(state):
            if st["failed"] is None:
                acc = assess(st["workers"])
                if len(acc) < processes and len(st["workers"]) < max_processes:
                    need.append(j)
        if not need:
            break
        last = [w for st in state for w in st["workers"] if w["round"] == round_ - 1]
        if last and all(any(f.startswith("contended") for f in w["flags"]) for w in last):
            # every worker of the last round saw other load: the machine is busy, not disturbed for
            # a moment; more workers would only be contended too
            prog.note(f"not re-running: all {len(last)} workers of the last round were contended (the "
                      f"machine is busy); the affected records are reported as contended")
            break
        flagged = ", ".join(f"{jobs[j][0].id} @ {jobs[j][1]}" for j in need)
        prog.note(f"re-running flagged or disagreeing workers: {flagged}")
        for j in need:
            run_one(j, round_)
        round_ += 1

    records = []
    torch_flops = {}
    for (art, rt_name), st in zip(jobs, state):
        rec = dict(_identity(bundle, art, rt_name))
        rec["runtime_versions"] = st["versions"]
        man = bundle.manifest_artifact(art) if art.path else None
        exp = (man or {}).get("parity")
        rec["export_parity"] = exp if exp and exp.get("checked") == "numeric" else None
        ws = st["workers"]
        if st["failed"] is not None:
            status, why, phase, info = st["failed"]
            rec.update({"status": status, "reason": why, "phase_reached": phase,
                        "memory": {"peak_rss_mb": info["peak_rss_mb"], "source": "os.wait4"},
                        "wall_s": info["wall_s"]})
            records.append(rec)
            continue
        acc = assess(ws)
        use = acc or ws
        first = st["first"]
        pooled = [x for w in use for x in w["samples_ms"]]
        stats = summarize(pooled)
        status = record_status(ws, processes)
        peak_w = [w["peak_rss_mb"] for w in ws if w["peak_rss_mb"] is not None]
        rec.update({
            "status": "ok", "reason": None, "phase_reached": first.get("phase_reached"),
            "runtime_options": first.get("runtime_options") or {},
            "load": {"import_s": _median([w["import_s"] for w in ws]),
                     "cold_s": _median([w["cold_load_s"] for w in ws]),
                     "warm_s": _median([w["warm_load_s"] for w in ws])},
            "first_inference_ms": _median([w["first_inference_ms"] for w in ws]),
            "steady": {"warmup": warmup, "work_factor": work_factor, "samples_ms": pooled, "stats": stats,
                       "seconds": sum(w["seconds"] for w in use),
                       "cpu_s": sum(w["cpu_s"] or 0.0 for w in use), "processes": status, "workers": ws},
            "memory": {"peak_rss_mb": max(peak_w) if peak_w else None,
                       "rss_after_load_mb": first.get("rss_after_load_mb"),
                       "source": "os.wait4 ru_maxrss of each worker process (the largest)"},
            "parity": first["parity"],
            "flops": st["flops"],
            "wall_s": sum(w["wall_s"] for w in ws),
        })
        cal = [x for w in use for x in (w["calibration_ms"] or [])]
        if cal:
            rec["calibration"] = {"samples_ms": cal, "median_ms": summarize(cal)["median"],
                                  "blocks": [{"at": f"worker {w['index']}", "n": len(w["calibration_ms"]),
                                              "median_ms": summarize(w["calibration_ms"])["median"]}
                                             for w in use if w["calibration_ms"]]}
        if rt_name == "torch" and st["flops"]:
            torch_flops[art.encoder] = st["flops"]
        records.append(rec)

    for art, rt_name, why in skipped:
        rec = _identity(bundle, art, rt_name)
        rec.update({"status": "skipped", "reason": why, "runtime_versions": RUNTIMES[rt_name].versions()})
        records.append(rec)
        prog.note(f"skip  {art.id} @ {rt_name}: {why}")

    # FLOPs of each encoder (the same function on every runtime), from the torch reference
    # a classifier is the image tower plus its class matrix: 2 x N x D more multiply-adds
    tower = {"classifier": "image"}
    want = {tower.get(r["encoder"], r["encoder"]) for r in records if r["status"] == "ok"} - set(torch_flops)
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
            if r["encoder"] == "classifier" and not r["flops"] and torch_flops.get("image"):
                c = bundle.manifest["classifier"]
                r["flops"] = torch_flops["image"] + 2 * len(c["labels"]) * int(c.get("embedding_dim") or 0)
            r["flops_source"] = "torch.utils.flop_counter on the reparameterized eager module (batch 1)" \
                if r["flops"] else None
            rep.fill_throughput(r, peak_gflops_per_core, threads)

    cal = None
    pooled_cal = [(r["id"], r["calibration"]["samples_ms"]) for r in records
                  if r["status"] == "ok" and r.get("calibration")]
    if pooled_cal:
        allc = [x for _, s in pooled_cal for x in s]
        st = summarize(allc)
        cal = {"name": calib.NAME, "description": calib.DESCRIPTION, "threads": 1,
               "flops_per_sample": calib.FLOPS_PER_SAMPLE, "samples_ms": allc,
               "median_ms": st["median"], "stats": st,
               "blocks": [{"at": rid, "n": len(s), "median_ms": summarize(s)["median"]} for rid, s in pooled_cal]}
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
                     "min_blocks": min_blocks, "processes": processes, "max_processes": max_processes,
                     "timeout_s": timeout, "work_factor": work_factor, "runtimes": names,
                     "ort_spinning": bool(ort_spinning), "peak_gflops_per_core": peak_gflops_per_core},
        "calibration": cal,
        "records": records,
    }
    return rep.validate_report(report)
