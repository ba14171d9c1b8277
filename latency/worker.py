"""The subprocess that measures one artifact on one runtime (or counts FLOPs).

    python -m clipdeploy.latency.worker JOB.json RESULT.json

A fresh process per job keeps the cold load cold and the peak RSS about this job only. Phases, in this
order: ``import`` (the runtime's libraries), ``configure`` (threads, before anything is loaded),
``cold_load`` (first load in the process), ``first_inference`` (first call on that handle), the first
handle is released, ``warm_load`` (second load), ``steady`` (``warmup`` untimed calls, a calibration
block, timed calls in blocks until ``runs`` samples, ``min_seconds`` of timed work and ``min_blocks``
blocks are reached — after each block a few calibration samples — with the machine's contention
probed over them (:mod:`.stability`), a last calibration block), ``parity`` (the probe set through the artifact vs the bundle's reference
embeddings), ``flops`` (torch only).

Progress goes to stderr as lines ``@@clipdeploy-latency {json}`` (the parent filters them); the result is
written as JSON to RESULT.json. Anything else on stdout/stderr is library noise the parent keeps a tail of
for error messages.
"""
from __future__ import annotations

import gc
import json
import math
import os
import resource
import sys
import time
import traceback

EVENT_PREFIX = "@@clipdeploy-latency "


def _event(**kw):
    sys.stderr.write(EVENT_PREFIX + json.dumps(kw) + "\n")
    sys.stderr.flush()


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def _clean(x):
    """JSON-safe floats (inf/nan -> None)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------------

def work_schedule(factor):
    """Inferences per sample for a work factor ``factor`` (>= 1, fractions allowed): sample i runs
    floor(i*f) - floor((i-1)*f) of them, so n samples run floor(n*f) inferences in all. Exact for
    decimal factors (1.2 = 6/5: one extra inference every fifth sample)."""
    from fractions import Fraction
    f = Fraction(str(factor)).limit_denominator(1000)
    if f < 1:
        raise ValueError(f"work factor {factor} is below 1")
    i, done = 0, 0
    while True:
        i += 1
        k = math.floor(i * f) - done
        done += k
        yield k


# ---------------------------------------------------------------------------------------------------

def measure(job: dict, res: dict) -> dict:
    import numpy as np

    from .bundle import Artifact, Bundle
    from .parity import measure as parity_measure
    from .runtimes import get_runtime

    res["phase_reached"] = "start"

    def phase(name, **kw):
        res["phase_reached"] = name
        _event(phase=name, **kw)

    bundle = Bundle(job["bundle"])
    art = Artifact(**job["artifact"])
    bundle.verify_artifact(art)            # the parent checked it; the digest cache answers unless it changed
    probe = bundle.probe()
    inputs, ref, other = bundle.reference_for(art.encoder, probe)
    x = np.ascontiguousarray(inputs[:1])
    work = float(job.get("work_factor", 1))

    phase("import")
    t = time.perf_counter()
    rt = get_runtime(job["runtime"], bundle, job.get("options"))
    if rt.name == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif rt.name == "executorch":
        import executorch.runtime  # noqa: F401
    elif rt.name == "litert":
        from .litert_run import quiet_fds
        with quiet_fds():
            import ai_edge_litert.interpreter  # noqa: F401
    elif rt.name == "torch":
        import torch  # noqa: F401

        import clipdeploy.models  # noqa: F401
        import clipdeploy.reparam  # noqa: F401
    elif rt.name == "coreml":
        import coremltools  # noqa: F401
    res["import_s"] = time.perf_counter() - t

    phase("configure")
    rt.configure(job.get("threads"))
    res["runtime_options"] = rt.describe_options()

    phase("cold_load")
    t = time.perf_counter()
    h = rt.load(art)
    res["cold_load_s"] = time.perf_counter() - t
    res["rss_after_load_mb"] = _maxrss_mb()

    phase("first_inference")
    t = time.perf_counter()
    y = rt.infer(h, x)
    res["first_inference_ms"] = (time.perf_counter() - t) * 1e3
    res["output_shape"] = list(np.shape(y))
    rt.release(h)
    del h
    gc.collect()

    phase("warm_load")
    t = time.perf_counter()
    h = rt.load(art)
    res["warm_load_s"] = time.perf_counter() - t

    warmup, runs = int(job["warmup"]), int(job["runs"])
    min_s, min_blocks = float(job.get("min_seconds", 0.0)), int(job.get("min_blocks", 1))
    phase("warmup", n=warmup)
    for _ in range(warmup):
        rt.infer(h, x)
    cal = None
    if job.get("calibration", True):
        from .calibration import INTERLEAVED, RECORD_BLOCK, Workload
        cal = Workload()
        cal_pre = cal.block(RECORD_BLOCK)
    phase("steady", runs=runs, min_seconds=min_s)
    # Blocks of consecutive samples (>= BLOCK_SECONDS of timed work and >= BLOCK_MIN_SAMPLES): the unit
    # the gate resamples within a process. Sampling goes on until ``runs`` samples, ``min_seconds`` of
    # timed work and ``min_blocks`` closed blocks. A fractional work factor f runs
    # floor(i*f) - floor((i-1)*f) inferences in sample i (1.2: one extra call every fifth sample).
    from .stability import BLOCK_MIN_SAMPLES, BLOCK_SECONDS, ContentionProbe
    schedule = work_schedule(work)
    samples, block_ends, cal_inter = [], [], []
    total, block_t, block_n, calls = 0.0, 0.0, 0, 0
    perf_ns = time.perf_counter_ns
    infer = rt.infer
    probe_c = ContentionProbe().start()
    while len(samples) < runs or total < min_s or len(block_ends) < min_blocks:
        k = next(schedule)
        t0 = perf_ns()
        for _ in range(k):
            infer(h, x)
        dt = (perf_ns() - t0) / 1e6
        calls += k
        samples.append(dt)
        total += dt / 1e3
        block_t += dt / 1e3
        block_n += 1
        if block_t >= BLOCK_SECONDS and block_n >= BLOCK_MIN_SAMPLES:
            block_ends.append(len(samples))
            block_t, block_n = 0.0, 0
            if cal is not None:                          # the machine's speed in the same seconds
                cal_inter += cal.block(INTERLEAVED, warmup=0)
        if len(samples) % 10 == 0:
            _event(phase="steady", done=len(samples), runs=runs)
    if block_n:                                          # the last, partial block
        block_ends.append(len(samples))
    res["contention"] = probe_c.stop()
    res["contention"]["threads_configured"] = rt.describe_options().get("threads")
    res["steady_cpu_s"] = res["contention"]["cpu_s"]
    res["samples_ms"] = samples
    res["steady_seconds"] = total
    res["block_ends"] = block_ends
    res["inferences"] = calls
    if cal is not None:
        cal_post = cal.block(RECORD_BLOCK, warmup=0)
        res["calibration_blocks"] = [cal_pre, cal_inter, cal_post]

    phase("parity")
    got = rt.embed(h, inputs)
    res["parity"] = _clean(parity_measure(ref, got, other))
    if art.encoder == "classifier":     # logits: zero-shot agreement above is their top-1 agreement
        from .parity import ZERO_SHOT_TIE
        scale = bundle.classifier()["logit_scale"]
        res["parity"].update(top1_agreement=res["parity"]["zero_shot_agreement"],
                             max_abs_cosine_units=res["parity"]["max_abs"] / scale, tie=ZERO_SHOT_TIE)

    if rt.name == "torch" and job.get("count_flops", True):
        phase("flops")
        res["flops"] = rt.flops(h, x)
    res["peak_rss_self_mb"] = _maxrss_mb()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["cpu_user_s"], res["cpu_sys_s"] = ru.ru_utime, ru.ru_stime
    phase("done")
    return res


def flops_only(job: dict) -> dict:
    """FLOPs of each encoder (batch 1) of the model in inference form, when torch is not benchmarked."""
    import torch

    from .bundle import Bundle
    from .runtimes import structural_flops

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    bundle = Bundle(job["bundle"])
    probe = bundle.probe()
    _event(phase="flops")
    return {"flops": structural_flops(bundle.model, {e: probe[e][:1] for e in job["encoders"]})}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_path, out_path = argv
    with open(job_path) as f:
        job = json.load(f)
    kind = job.get("kind", "artifact")
    res = {}
    try:
        if kind == "flops":
            res.update(flops_only(job))
        else:
            measure(job, res)
        res["ok"] = True
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which decides
        res.update({"ok": False, "error": f"{type(e).__name__}: {e}".strip(),
                    "traceback": traceback.format_exc()[-4000:]})
    res["pid"] = os.getpid()
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.replace(tmp, out_path)
    return 0 if res["ok"] else 3


if __name__ == "__main__":
    sys.exit(main())
