"""Process-level measurement: what a worker records about the machine while it samples, and the checks
the parent runs on the workers of one artifact × runtime.

In the worker (:class:`ContentionProbe`, Linux ``/proc``; elsewhere only what ``resource`` gives), over
the steady state:

* ``steal``: the share of CPU time the hypervisor gave to other guests (``/proc/stat`` steal / total);
* ``other_cpu``: CPU used by every other process on the machine, in cores (``/proc/stat`` busy time
  minus this worker's and its parent's own CPU time, over the wall time);
* ``psi_some``: the share of wall time some runnable task waited for a CPU (``/proc/pressure/cpu``);
* ``threads_used``: threads of this process that were on a CPU at least a quarter of the time
  (``/proc/self/task/*/stat``), ``parallelism`` = process CPU time / wall time, and ``affinity``.

In the parent (:func:`assess`): a worker is **contended** when another process used more than
``CONTENDED_OTHER_CPU`` cores, steal exceeded ``CONTENDED_STEAL`` or CPU pressure ``CONTENDED_PSI``;
**bimodal** when its block means split into two groups more than ``BIMODAL_GAP`` apart (each with at
least two blocks and a fifth of them); an **outlier** when its median is more than ``OUTLIER`` off the
median of its siblings' medians (both divided by each worker's own calibration, which follows the
core's speed in the same seconds). Accepted workers are the others; the harness runs more workers while a
record has fewer than it asked for (up to ``--max-processes``).
"""
from __future__ import annotations

import math
import os
import resource
import time
from typing import Optional, Sequence

import numpy as np

BLOCK_SECONDS = 0.25          # a block closes after this much timed work ...
BLOCK_MIN_SAMPLES = 3         # ... and at least this many samples
CONTENDED_OTHER_CPU = 0.30     # cores used by other processes during the steady state
CONTENDED_STEAL = 0.05         # share of CPU time stolen by the hypervisor
CONTENDED_PSI = 0.10           # share of wall time some task waited for a CPU
BIMODAL_GAP = 1.25             # ratio between two groups of block means
OUTLIER = 1.15                 # a worker's median against the median of its siblings'
THREAD_BUSY = 0.25             # a thread "used" = on a CPU at least this share of the wall time

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat() -> Optional[list]:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    return [int(v) for v in line.split()[1:]]
    except OSError:
        return None
    return None


def _pid_cpu_s(pid) -> Optional[float]:
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _HZ
    except (OSError, IndexError, ValueError):
        return None


def _task_cpu_s() -> dict:
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = (int(fields[11]) + int(fields[12])) / _HZ
        except (OSError, IndexError, ValueError):
            continue
    return out


def _psi_some_us() -> Optional[int]:
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def affinity() -> Optional[list]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


class ContentionProbe:
    """``start()`` before the steady state, ``stop()`` after it: a dict of what the machine did."""

    def start(self) -> "ContentionProbe":
        self.t = time.perf_counter()
        self.stat = _proc_stat()
        self.self_cpu = _self_cpu_s()
        self.ppid = os.getppid()
        self.parent_cpu = _pid_cpu_s(self.ppid)
        self.tasks = _task_cpu_s()
        self.psi = _psi_some_us()
        return self

    def stop(self) -> dict:
        wall = max(time.perf_counter() - self.t, 1e-9)
        stat, self_cpu = _proc_stat(), _self_cpu_s() - self.self_cpu
        parent = _pid_cpu_s(self.ppid)
        tasks, psi = _task_cpu_s(), _psi_some_us()
        out = {"wall_s": wall, "cpu_s": self_cpu, "parallelism": self_cpu / wall,
               "affinity": affinity(), "cpus_online": os.cpu_count(),
               "steal": None, "other_cpu": None, "psi_some": None, "parent_cpu_s": None,
               "threads_used": None, "thread_cpu_s": None}
        if self.stat and stat:
            d = [b - a for a, b in zip(self.stat, stat)]
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            busy = sum(d[i] for i in (0, 1, 2, 5, 6) if i < len(d)) / _HZ
            total = sum(d[:8])
            steal = d[7] if len(d) > 7 else 0
            out["steal"] = steal / total if total > 0 else 0.0
            parent_cpu = (parent - self.parent_cpu) if parent is not None and self.parent_cpu is not None else 0.0
            out["parent_cpu_s"] = parent_cpu
            out["other_cpu"] = max(0.0, (busy - self_cpu - parent_cpu) / wall)
        if psi is not None and self.psi is not None:
            out["psi_some"] = min(1.0, (psi - self.psi) / 1e6 / wall)
        if tasks:
            per = sorted((tasks[t] - self.tasks.get(t, 0.0) for t in tasks), reverse=True)
            out["thread_cpu_s"] = [round(x, 3) for x in per[:8]]
            out["threads_used"] = sum(x >= THREAD_BUSY * wall for x in per)
        return out


# ---------------------------------------------------------------------------------------------------
# the parent's checks

def block_means(samples: Sequence[float], ends: Optional[Sequence[int]]) -> np.ndarray:
    """Mean latency of each block ``samples[prev_end:end]`` (its timed work over its samples); one block
    when ``ends`` is empty. A block is ~0.25 s of work, so its mean is what the artifact cost over those
    seconds, extra work included (a work factor of 1.2 adds a second call to every fifth sample: the
    median sample would not see it, the block mean does); robustness against a stray slow sample comes
    from taking the median over blocks and the process level above it."""
    x = np.asarray(samples, dtype=np.float64)
    ends = [int(e) for e in (ends or [])] or [x.size]
    if ends[-1] != x.size or any(b <= a for a, b in zip([0] + ends, ends)):
        raise ValueError("block ends must be increasing and end at the number of samples")
    return np.array([np.mean(x[a:b]) for a, b in zip([0] + ends[:-1], ends)])


def contention_flags(c: Optional[dict]) -> list:
    if not c:
        return []
    why = []
    if (c.get("other_cpu") or 0) > CONTENDED_OTHER_CPU:
        why.append(f"other processes used {c['other_cpu']:.2f} cores")
    if (c.get("steal") or 0) > CONTENDED_STEAL:
        why.append(f"steal {c['steal']:.0%}")
    if (c.get("psi_some") or 0) > CONTENDED_PSI:
        why.append(f"CPU pressure {c['psi_some']:.0%}")
    return why


def is_bimodal(values: Sequence[float]) -> bool:
    """Two groups of block means more than ``BIMODAL_GAP`` apart, each with >= 2 blocks and >= 1/5."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    if n < 4:
        return False
    need = max(2, int(math.ceil(n / 5)))
    for i in range(need, n - need + 1):
        if v[i] / v[i - 1] >= BIMODAL_GAP:
            return True
    return False


def speed_normalized(w: dict) -> Optional[float]:
    """A worker's median over the median of its own calibration samples (None without them)."""
    c = w.get("calibration_ms")
    return w["median_ms"] / float(np.median(c)) if c else None


def assess(workers: list) -> list:
    """Fill each worker's ``flags`` (list of strings: ``contended: …``, ``bimodal``, ``outlier …``) and
    ``accepted`` in place; returns the accepted workers. Outliers are judged among the workers that are
    neither contended nor bimodal, against the median of their medians (needs >= 3 of them), each
    divided by the worker's calibration when every one has it."""
    for w in workers:
        flags = [f"contended: {', '.join(c)}" for c in [contention_flags(w.get("contention"))] if c]
        if is_bimodal(block_means(w["samples_ms"], w.get("block_ends"))):
            flags.append("bimodal")
        w["flags"] = flags
    clean = [w for w in workers if not w["flags"]]
    if len(clean) >= 3:
        speed = [speed_normalized(w) for w in clean]
        if any(v is None for v in speed):
            speed = [w["median_ms"] for w in clean]
        center = float(np.median(speed))
        for w, v in zip(clean, speed):
            r = v / center
            if r > OUTLIER or r < 1 / OUTLIER:
                w["flags"].append(f"outlier: median x{r:.2f} of its siblings'")
    for w in workers:
        w["accepted"] = not w["flags"]
    return [w for w in workers if w["accepted"]]


def record_status(workers: list, wanted: int) -> dict:
    """``{status, processes, accepted, flagged: {contended, bimodal, outlier}}``: "stable" when at least
    ``wanted`` workers were accepted, else "contended" when contention flagged any, else "unstable"."""
    acc = [w for w in workers if w.get("accepted")]
    count = {k: sum(any(f.startswith(k) for f in w.get("flags", [])) for w in workers)
             for k in ("contended", "bimodal", "outlier")}
    status = "stable" if len(acc) >= wanted else ("contended" if count["contended"] else "unstable")
    return {"status": status, "processes": len(workers), "accepted": len(acc), "wanted": wanted,
            "flagged": count}
