"""The README's supported-model table, from the registry and from bundles written here.

    python benchmarks/zoo_table.py [--bundles DIR ...] [--json]
    python benchmarks/zoo_table.py --export MODEL [MODEL ...] --out DIR [--json-out FILE]
                                   [--timeout-min 45] [--mem-limit-gb 20] [--stop-after-min 110]

Per model: input size, parameter counts of the image and text towers (the module built on the meta
device in its default architecture, train-time form; for TinyCLIP's pruned "auto" models the seeded
stand-in widths, which are sized to the published counts), the checkpoint formats it loads, and the
export targets whose artifacts passed the parity gate in a ``clip-export --target all`` bundle found under
``--bundles`` (one sub-folder per model, as ``clip-export --out DIR/<model>`` writes; a model whose
``all`` job failed has one bundle per target under ``DIR/per_target/<target>/<model>``, read as well).

``--export`` runs, one model at a time and each in its own child process,
``clip-export --model M --target all --random-weights 0 --out DIR/M`` (seeded weights in the exact
layouts, the default precisions of ``all``, the exporter's default validation set) and records per
model x target: export and gate seconds (manifest ``export_seconds``, the gate seconds the exporter logs),
the job's wall time, its CPU seconds (user + sys, ``os.wait4``) and peak RSS (``ru_maxrss``; plus the
RSS of the child's process tree sampled from ``/proc`` every 2 s, also per target stage), artifact sizes
(manifest ``size_bytes``) and the gate figures (max abs, min cosine, zero-shot; validation set min
cosine and agreement). Where ``--target all`` fails (exit 1, timeout, killed) each target of
``clipdeploy.export.targets.ALL`` is re-run on its own (``DIR/per_target/<target>/<model>``) so that one
failure loses nothing else; each failure keeps its one-line reason (the child's last ``error:`` line, else
its last stderr line) and its peak RSS. A job is killed past ``--timeout-min`` or once its process tree's
RSS exceeds ``--mem-limit-gb`` (recorded as "exceeded N GB"), or when the host's MemAvailable falls
below ``--min-available-gb`` (so that the kernel's OOM killer never picks other work). No RLIMIT_AS:
torch reserves far more virtual memory than it uses. Before a large model (``--large``) the job waits,
polling every 60 s for up to ``--wait-mem-min``, until MemAvailable is at least ``--wait-mem-gb``.
Results go to ``--json-out`` (rewritten after every job) and two tables are printed: the README's and
model | target | precision | export s | size MB | peak RSS GB | gate | status.
Wall times on a shared machine are not idle figures: the CPU seconds are the more robust figure.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

FORMATS = {"apple": "Apple `.pt`", "native": "open_clip", "open_clip": "open_clip",
           "openai": "OpenAI `.pt` (TorchScript)", "hf": "HF `CLIPModel` dir", "tinyclip": "TinyCLIP fork `.pt`"}
GB = 1024 ** 3
LARGE = ("mobileclip2_s3", "mobileclip2_s4", "mobileclip2_l14")


def params(spec) -> tuple:
    from clipdeploy.models.build import build_module
    with torch.device("meta"):
        module = build_module(spec)
    total = sum(p.numel() for p in module.parameters())
    image = sum(p.numel() for p in module.visual.parameters())
    return image, total - image - 1          # minus logit_scale


def verified(bundle: Path) -> list:
    man = bundle / "manifest.json"
    if not man.exists():
        return []
    arts = json.loads(man.read_text())["artifacts"]
    out = []
    for target, precision in sorted({(a["target"], a["precision"]) for a in arts}):
        if all(a["parity"].get("passed") for a in arts if (a["target"], a["precision"]) == (target, precision)):
            out.append(f"{target} {precision}")
    return out


def bundle_dirs(dirs) -> list:
    """``dirs`` and, for each, the per-target bundle folders ``--export`` writes where ``all`` failed."""
    out = []
    for d in dirs:
        out.append(d)
        out.extend(sorted(p for p in (d / "per_target").glob("*") if p.is_dir()))
    return out


def zoo_rows(bundles) -> list:
    from clipdeploy.models import REGISTRY
    rows = []
    dirs = bundle_dirs(bundles)
    for spec in REGISTRY.values():
        img, txt = params(spec)
        found = [v for d in dirs for v in verified(d / spec.name)]
        formats = []
        for layout in spec.layouts:
            if FORMATS[layout] not in formats:
                formats.append(FORMATS[layout])
        rows.append({"model": spec.name, "px": spec.image_size, "image_params": img, "text_params": txt,
                     "formats": formats, "verified": sorted(set(found)), "pruned": spec.pruned})
    return rows


def zoo_table(rows) -> str:
    lines = ["| model | px | params image + text | checkpoint formats | targets verified here (seeded weights) |",
             "|---|---|---|---|---|"]
    for r in rows:
        p = f"{r['image_params'] / 1e6:.1f}M + {r['text_params'] / 1e6:.1f}M" + (" ¹" if r["pruned"] else "")
        lines.append(f"| `{r['model']}` | {r['px']} | {p} | {', '.join(r['formats'])} | "
                     f"{', '.join(r['verified']) or '—'} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- export mode

def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree_rss(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, bytes."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        todo += _children(p)
    return total


_GATE = re.compile(r"^\s+([\d.]+)s export, ([\d.]+)s gate")
_STAGE = re.compile(r"^\[([a-z0-9-]+)-(fp32|fp16|int8)\] export (image|text)_encoder")


def run_job(cmd, env, log_base: Path, timeout_s: float, mem_limit: int, min_available: int,
            poll_s: float = 2.0) -> dict:
    """Run ``cmd`` in its own process group; watch it; return wall/CPU/RSS figures, status, stdout lines
    with their times (seconds since start) and the RSS samples."""
    log_base.parent.mkdir(parents=True, exist_ok=True)
    err_path = log_base.with_suffix(".stderr.txt")
    out_path = log_base.with_suffix(".stdout.txt")
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    lines, samples, state = [], [], {"killed": None, "peak_tree": 0, "min_avail": mem_available()}

    def reader():
        with open(out_path, "w") as f:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                t = time.perf_counter() - t0
                lines.append((round(t, 1), line))
                f.write(f"[{t:8.1f}s] {line}\n")
                f.flush()

    def watch():
        while not done.wait(poll_s):
            t = time.perf_counter() - t0
            rss, avail = tree_rss(proc.pid), mem_available()
            samples.append((round(t, 1), rss, avail))
            state["peak_tree"] = max(state["peak_tree"], rss)
            state["min_avail"] = min(state["min_avail"], avail)
            why = None
            if rss > mem_limit:
                why = f"exceeded {mem_limit / GB:g} GB (process tree RSS {rss / GB:.1f} GB at {t:.0f} s)"
            elif avail < min_available:
                why = (f"host MemAvailable fell to {avail / GB:.1f} GB (< {min_available / GB:g} GB; "
                       f"process tree RSS {rss / GB:.1f} GB at {t:.0f} s)")
            elif t > timeout_s:
                why = f"timeout after {timeout_s / 60:g} min"
            if why:
                state["killed"] = why
                try:
                    os.killpg(proc.pid, signal.SIGKILL)      # the group this job started, nothing else
                except ProcessLookupError:
                    pass
                return

    done = threading.Event()
    rt, wt = threading.Thread(target=reader, daemon=True), threading.Thread(target=watch, daemon=True)
    rt.start()
    wt.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    done.set()
    wt.join()
    rt.join(timeout=30)
    try:                                   # anything the child left in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    err_lines = [l for l in err_path.read_text(errors="replace").splitlines() if l.strip()]
    rc = proc.returncode
    if state["killed"]:
        status_s, reason = "killed", state["killed"]
    elif rc == 0:
        status_s, reason = "ok", None
    else:
        status_s = "failed" if rc > 0 else "killed"
        errs = [l for l in err_lines if l.startswith("error:")]
        reason = (errs[-1] if errs else err_lines[-1] if err_lines else f"exit {rc}")
        if rc < 0:
            reason = f"killed by {signal.Signals(-rc).name} (not by this script: kernel OOM killer?); " + reason
    return {"cmd": cmd, "started": started, "rc": rc, "status": status_s, "reason": reason,
            "wall_s": round(wall, 1), "cpu_user_s": round(usage.ru_utime, 1),
            "cpu_sys_s": round(usage.ru_stime, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_bytes": usage.ru_maxrss * 1024, "peak_tree_rss_sampled_bytes": state["peak_tree"],
            "min_mem_available_bytes": state["min_avail"],
            "stdout_log": str(out_path), "stderr_log": str(err_path),
            "stderr_tail": err_lines[-3:], "_lines": lines, "_samples": samples}


def stage_windows(lines) -> dict:
    """(target, precision) -> [t_first_stage_line, t_next_other_stage_line]; gate seconds per encoder."""
    order, gates, cur, cur_enc = [], {}, None, None
    for t, line in lines:
        m = _STAGE.match(line)
        if m:
            key, cur_enc = (m.group(1), m.group(2)), m.group(3)
            if key != cur:
                if order:
                    order[-1][2] = t
                order.append([key, t, None])
                cur = key
            continue
        g = _GATE.match(line)
        if g and cur:
            gates.setdefault(cur, {})[cur_enc] = {"export_s_logged": float(g.group(1)),
                                                  "gate_s": float(g.group(2))}
        if cur and (line.startswith("[done]") or re.match(r"^\[[a-z-]+\] (image|text): default", line)):
            if order and order[-1][2] is None:
                order[-1][2] = t
    return {tuple(k): {"start_s": s, "end_s": e, "gates": gates.get(tuple(k), {})} for k, s, e in order}


def target_rows(model: str, manifest: dict, job: dict, source: str) -> list:
    wins = stage_windows(job["_lines"])
    rows = []
    keys = list(dict.fromkeys((a["target"], a["precision"]) for a in manifest["artifacts"]))
    for key in keys:
        arts = [a for a in manifest["artifacts"] if (a["target"], a["precision"]) == key]
        w = wins.get(key, {})
        enc = {}
        for a in arts:
            p, v = a["parity"], a["parity"].get("validation") or {}
            g = w.get("gates", {}).get(a["encoder"], {})
            enc[a["encoder"]] = {
                "path": a["path"], "size_bytes": a["size_bytes"], "export_seconds": a["export_seconds"],
                "gate_seconds": g.get("gate_s"), "checked": p.get("checked"), "runtime": p.get("runtime"),
                "max_abs": p.get("max_abs"), "cosine_min": p.get("cosine_min"),
                "zero_shot_agreement": p.get("zero_shot_agreement"), "passed": p.get("passed"),
                "validation": {k: v.get(k) for k in ("n", "cosine_min", "cosine_mean", "rows_below_cosine",
                                                     "zero_shot_agreement", "retrieval_agreement", "max_abs",
                                                     "seconds", "passed", "checked")} if v else None,
                "default": a.get("default")}
        peak_stage = None
        if w.get("start_s") is not None:
            end = w["end_s"] if w.get("end_s") is not None else float("inf")
            inside = [s[1] for s in job["_samples"] if w["start_s"] <= s[0] <= end]
            peak_stage = max(inside) if inside else None
        vals = list(enc.values())
        num = lambda k, f: (f(x[k] for x in vals if x.get(k) is not None)  # noqa: E731
                            if any(x.get(k) is not None for x in vals) else None)
        vnum = lambda k, f: (f(x["validation"][k] for x in vals if x["validation"] and x["validation"].get(k) is not None)  # noqa: E731
                             if any(x["validation"] and x["validation"].get(k) is not None for x in vals) else None)
        passed = all(x.get("passed") for x in vals) and all((x["validation"] or {}).get("passed", True) for x in vals)
        rows.append({
            "model": model, "target": key[0], "precision": key[1], "source": source,
            "status": "passed" if passed else "written, gate missed (--accept-degraded?)",
            "export_s": round(sum(x["export_seconds"] for x in vals), 2),
            "gate_s": (round(sum(x["gate_seconds"] for x in vals), 2)
                       if all(x["gate_seconds"] is not None for x in vals) else None),
            "stage_wall_s": (round(w["end_s"] - w["start_s"], 1)
                             if w.get("end_s") is not None and w.get("start_s") is not None else None),
            "size_bytes": sum(x["size_bytes"] for x in vals),
            "max_abs": num("max_abs", max), "cosine_min": num("cosine_min", min),
            "zero_shot_agreement": num("zero_shot_agreement", min),
            "validation_cosine_min": vnum("cosine_min", min),
            "validation_agreement_min": min([a for a in (vnum("zero_shot_agreement", min),
                                                         vnum("retrieval_agreement", min)) if a is not None],
                                            default=None),
            "checked": sorted({x["checked"] for x in vals if x.get("checked")}),
            "peak_rss_stage_sampled_bytes": peak_stage,
            "job_peak_rss_bytes": job["peak_rss_bytes"], "job_cpu_s": job["cpu_s"], "job_wall_s": job["wall_s"],
            "encoders": enc})
    return rows


def gate_failure(job: dict):
    """(target, precision, figures) of a ParityError exit (clip-export prints ``error: <target>-<precision>/…
    failed the parity gate: …`` and then the figures as one JSON line), else None."""
    if job["rc"] != 1:
        return None
    try:
        err = [l for l in Path(job["stderr_log"]).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return None
    for i in range(len(err) - 1, -1, -1):
        m = re.match(r"^error: ([a-z0-9-]+)-(fp32|fp16|int8)/\S+ .*failed the parity gate", err[i])
        if m:
            figures = None
            if i + 1 < len(err):
                try:
                    figures = json.loads(err[i + 1])
                except ValueError:
                    pass
            return m.group(1), m.group(2), figures
    return None


def failed_row(model: str, target: str, precision: str, job: dict, source: str, figures=None) -> dict:
    wins = stage_windows(job["_lines"])
    seen = [f"{k[0]}-{k[1]}" for k in wins]
    w = wins.get((target, precision), {})
    peak = job["peak_tree_rss_sampled_bytes"]
    if w.get("start_s") is not None:
        end = w["end_s"] if w.get("end_s") is not None else float("inf")
        inside = [s[1] for s in job["_samples"] if w["start_s"] <= s[0] <= end]
        peak = max(inside) if inside else peak
    return {"model": model, "target": target, "precision": precision, "source": source,
            "status": job["status"] if figures is None else "gate failed", "reason": job["reason"],
            "export_s": None, "gate_s": None,
            "size_bytes": None, "max_abs": None, "cosine_min": None, "zero_shot_agreement": None,
            "failure_figures": figures, "encoders_logged": w.get("gates"),
            "stages_reached": seen, "last_stdout": [l for _, l in job["_lines"][-3:]],
            "peak_rss_stage_sampled_bytes": peak,
            "job_peak_rss_bytes": job["peak_rss_bytes"], "job_cpu_s": job["cpu_s"], "job_wall_s": job["wall_s"]}


def wait_for_memory(need: int, max_wait_s: float, log) -> dict:
    t0, polls = time.perf_counter(), []
    while True:
        avail = mem_available()
        polls.append(round(avail / GB, 1))
        if avail >= need:
            return {"waited_s": round(time.perf_counter() - t0), "available_gb": polls}
        if time.perf_counter() - t0 + 60 > max_wait_s:
            log(f"  MemAvailable {avail / GB:.1f} GB < {need / GB:g} GB after {max_wait_s / 60:g} min of waiting: "
                f"starting anyway")
            return {"waited_s": round(time.perf_counter() - t0), "available_gb": polls, "gave_up": True}
        log(f"  MemAvailable {avail / GB:.1f} GB < {need / GB:g} GB: waiting 60 s")
        time.sleep(60)


def host_info() -> dict:
    import platform
    import clipdeploy.export.pipeline as pipeline
    clone = Path(pipeline.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        commit, dirty = None, None
    return {"pipeline_module": pipeline.__file__, "source_tree": str(clone), "commit": commit,
            "source_tree_dirty": bool(dirty), "python": sys.executable, "platform": platform.platform(),
            "cpus": os.cpu_count(), "niceness": os.nice(0),
            "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB, 1),
            "loadavg_at_start": os.getloadavg()}


def export_mode(args) -> int:
    from clipdeploy.export.targets import ALL, TARGETS
    from clipdeploy.models import get_spec
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    t_begin = time.time() if args.started_at is None else args.started_at
    deadline = t_begin + args.stop_after_min * 60
    info = host_info()
    if not args.allow_any_tree and "/work/main/" in str(Path(info["pipeline_module"]).resolve()):
        raise SystemExit(f"clipdeploy.export resolves to {info['pipeline_module']} (the shared working tree): "
                         f"set PYTHONPATH to a clone (or pass --allow-any-tree)")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_out = args.json_out or out / "zoo_export.json"
    env = dict(os.environ)
    result = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": (args.note or "") + ("; " if args.note else "") +
                f"wall times were taken on a shared {info['cpus']}-CPU machine (other work running; this job "
                f"at niceness {info['niceness']}), so they are not idle figures: CPU seconds (user + sys of the "
                f"child, os.wait4) are the more robust figure",
        "host": info, "command": {"targets_all": list(ALL), "random_weights": 0,
                                  "precision": "defaults of --target all: " +
                                               ", ".join(f"{t} {TARGETS[t][2]}" for t in ALL),
                                  "validation_set": "exporter default"},
        "limits": {"timeout_min": args.timeout_min, "mem_limit_gb": args.mem_limit_gb,
                   "min_available_gb": args.min_available_gb, "wait_mem_gb": args.wait_mem_gb,
                   "stop_after_min": args.stop_after_min, "started_at_epoch": t_begin},
        "models": [], "rows": [], "not_started": []}

    done_models = set()
    if args.resume and Path(json_out).exists():
        prev = json.loads(Path(json_out).read_text())
        result["models"], result["rows"] = prev["models"], prev["rows"]
        result["resumed"] = prev.get("resumed", []) + [{"at": result["created"], "host": info}]
        result["created"] = prev["created"]
        done_models = {m["model"] for m in prev["models"]}
        log(f"resuming {json_out}: {', '.join(sorted(done_models)) or 'nothing'} done")

    def save():
        Path(json_out).write_text(json.dumps(result, indent=2, default=str))

    def base_cmd(model, target, dest):
        return [sys.executable, "-m", "clipdeploy.export.cli", "--model", model, "--target", target,
                "--random-weights", "0", "--out", str(dest), "--force"]

    def job(model, target, dest, tag):
        mem = None
        if model in args.large:
            mem = wait_for_memory(int(args.wait_mem_gb * GB), args.wait_mem_min * 60, log)
        avail = mem_available()
        log(f"[{time.strftime('%H:%M:%S')}] {model} --target {target}: MemAvailable {avail / GB:.1f} GB, "
            f"load {os.getloadavg()[0]:.2f}")
        j = run_job(base_cmd(model, target, dest), env, out / "logs" / f"{model}__{tag}",
                    args.timeout_min * 60, int(args.mem_limit_gb * GB), int(args.min_available_gb * GB))
        j.update(target=target, out=str(dest), mem_available_at_start_gb=round(avail / GB, 1),
                 memory_wait=mem)
        log(f"    {j['status']} in {j['wall_s']:.0f} s wall, {j['cpu_s']:.0f} s CPU, peak RSS "
            f"{j['peak_rss_bytes'] / GB:.2f} GB" + (f": {j['reason']}" if j["reason"] else ""))
        return j

    def public(j):
        return {k: v for k, v in j.items() if not k.startswith("_")} | {
            "rss_samples": [(t, round(r / GB, 2), round(a / GB, 1)) for t, r, a in j["_samples"]]}

    for model in args.export:
        get_spec(model)
        if model in done_models:
            continue
        if time.time() > deadline:
            log(f"{model}: not started ({args.stop_after_min:g} min after the start)")
            result["not_started"].append(model)
            save()
            continue
        entry = {"model": model, "jobs": []}
        result["models"].append(entry)
        j = job(model, "all", out / model, "all")
        entry["jobs"].append(public(j))
        if j["status"] == "ok":
            try:
                manifest = json.loads((out / model / "manifest.json").read_text())
                result["rows"] += target_rows(model, manifest, j, "all")
            except Exception as e:                 # a bug here must not stop the remaining models
                entry["rows_error"] = repr(e)
                log(f"    could not tabulate {model}: {e!r}")
            save()
            continue
        # the all job failed: keep what it reached, then every target on its own
        entry["all_failure"] = {"reason": j["reason"], "stages_reached": [f"{a}-{b}" for a, b in stage_windows(j["_lines"])],
                                "peak_rss_bytes": j["peak_rss_bytes"], "wall_s": j["wall_s"], "cpu_s": j["cpu_s"]}
        gf = gate_failure(j)
        if gf:
            entry["all_failure"]["gate_figures"] = gf[2]
        save()
        for target in ALL:
            if gf and gf[0] == target and not args.rerun_gate_failures:
                # seeded weights, fixed probe/validation sets, deterministic gate: the same figures again
                log(f"{model} --target {target}: not re-run (its parity gate failed in the all job; "
                    f"deterministic)")
                result["rows"].append(failed_row(model, target, gf[1], j, "all", gf[2]))
                save()
                continue
            if args.retry_deadline and time.time() > deadline:
                log(f"{model} --target {target}: not started (past the deadline)")
                result["not_started"].append(f"{model} --target {target}")
                continue
            dest = out / "per_target" / target / model
            jt = job(model, target, dest, target)
            entry["jobs"].append(public(jt))
            if jt["status"] == "ok":
                try:
                    manifest = json.loads((dest / "manifest.json").read_text())
                    result["rows"] += target_rows(model, manifest, jt, f"--target {target}")
                except Exception as e:
                    entry.setdefault("rows_error", []).append(repr(e))
                    log(f"    could not tabulate {model} {target}: {e!r}")
            else:
                result["rows"].append(failed_row(model, target, TARGETS[target][2], jt, f"--target {target}"))
            save()
    enrich(result)
    result["zoo"] = zoo_rows([out])
    result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save()
    print(zoo_table(result["zoo"]))
    print()
    print(export_table(result))
    log(f"json: {json_out}")
    return 0


def _read_stdout_log(path) -> list:
    """[(seconds, line)] back from a ``run_job`` stdout log (``[   12.3s] line``)."""
    out = []
    for raw in Path(path).read_text(errors="replace").splitlines():
        m = re.match(r"^\[\s*([\d.]+)s\] (.*)$", raw)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def enrich(result: dict) -> bool:
    """Fill the figures of failed rows that lack them (rows written by an earlier version of this script)
    from their job's logs: the failing encoder's gate figures (stderr) and the encoders that passed
    before it (stdout). Returns whether anything changed."""
    changed = False
    for r in result["rows"]:
        if r.get("size_bytes") is not None or r["status"] == "passed":
            continue
        jobs = [j for m in result["models"] if m["model"] == r["model"] for j in m["jobs"]
                if j["target"] == (r["target"] if r["source"] != "all" else "all")]
        if not jobs:
            continue
        j = jobs[-1]
        if r.get("failure_figures") is None:
            gf = gate_failure({"rc": j["rc"], "stderr_log": j["stderr_log"]})
            if gf and (gf[0], gf[1]) == (r["target"], r["precision"]):
                r["failure_figures"], r["status"] = gf[2], "gate failed"
                r["filled_from_logs"] = True
                changed = True
        if r.get("encoders_logged") is None and Path(j["stdout_log"]).exists():
            w = stage_windows(_read_stdout_log(j["stdout_log"])).get((r["target"], r["precision"]), {})
            r["encoders_logged"] = w.get("gates")
            r["filled_from_logs"] = True
            changed = True
    return changed


def _gb(b):
    return "—" if b is None else f"{b / GB:.1f}"


def export_table(result: dict) -> str:
    cap = (f"Export per model × target (`clip-export --target all --random-weights 0`, seeded weights, "
           f"commit {str(result['host']['commit'])[:7]}; {result['note']}). export s: image + text "
           f"`export_seconds` (gate s after the slash: probe gate + validation set); job: the whole "
           f"`clip-export` process, wall / CPU (user+sys) seconds; peak RSS: sampled process-tree RSS during "
           f"that target's stage (job peak `ru_maxrss` where the job ran one target).")
    lines = [cap, "",
             "| model | target | precision | export s (gate s) | size MB | peak RSS GB | gate (max abs / min cos) "
             "| zero-shot / validation min cos | job wall / CPU s | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["status"] == "passed" or r.get("size_bytes") is not None:
            ex = f"{r['export_s']:.1f}" + (f" ({r['gate_s']:.1f})" if r.get("gate_s") is not None else "")
            size = f"{r['size_bytes'] / 2 ** 20:.1f}"
            gate = f"{r['max_abs']:.1e} / {r['cosine_min']:.6f}" if r["max_abs"] is not None else "structural"
            zs = (f"{r['zero_shot_agreement']:.0%}" if r["zero_shot_agreement"] is not None else "—") + (
                f" / {r['validation_cosine_min']:.6f}" if r.get("validation_cosine_min") is not None else "")
            rss = r["peak_rss_stage_sampled_bytes"] if r["source"] == "all" else r["job_peak_rss_bytes"]
            status = r["status"] + ("" if r["source"] == "all" else f" ({r['source']})")
        else:
            ex, size, gate, zs = "—", "—", "—", "—"
            f = r.get("failure_figures") or {}
            if f.get("max_abs") is not None:
                gate = f"{f['max_abs']:.1e} / {f['cosine_min']:.6f} (failing encoder)"
            rss = (r["peak_rss_stage_sampled_bytes"] if r["source"] == "all" else
                   max(r["job_peak_rss_bytes"], r["peak_rss_stage_sampled_bytes"] or 0))
            passed_enc = ", ".join(f"{e}_encoder passed (export {g['export_s_logged']:.1f} s, gate "
                                   f"{g['gate_s']:.1f} s)" for e, g in (r.get("encoders_logged") or {}).items())
            status = (f"{r['status']} ({r['source']}): {r['reason']}"
                      + (f"; before it {passed_enc}" if passed_enc else ""))
        lines.append(f"| `{r['model']}` | {r['target']} | {r['precision']} | {ex} | {size} | {_gb(rss)} | {gate} | "
                     f"{zs} | {r['job_wall_s']:.0f} / {r['job_cpu_s']:.0f} | {status} |")
    fails = [m for m in result["models"] if "all_failure" in m]
    for m in fails:
        f = m["all_failure"]
        lines.append(f"\n`{m['model']}` `--target all` failed after {f['wall_s']:.0f} s wall / {f['cpu_s']:.0f} s "
                     f"CPU, peak RSS {f['peak_rss_bytes'] / GB:.1f} GB, in "
                     f"{(f['stages_reached'] or ['load'])[-1]}: {f['reason']}; its targets were re-run one by one.")
    if result.get("not_started"):
        lines.append(f"\nNot started ({result['limits']['stop_after_min']:g} min budget): "
                     + ", ".join(result["not_started"]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="*", default=[], type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--export", nargs="+", metavar="MODEL", help="export these models (one child process each)")
    ap.add_argument("--out", type=Path, help="--export: bundles go to OUT/<model>")
    ap.add_argument("--json-out", type=Path, help="--export: results (default OUT/zoo_export.json)")
    ap.add_argument("--timeout-min", type=float, default=45.0, help="per clip-export job")
    ap.add_argument("--mem-limit-gb", type=float, default=20.0, help="kill a job whose process tree RSS exceeds it")
    ap.add_argument("--min-available-gb", type=float, default=1.0,
                    help="kill a job when the host's MemAvailable falls below it (protects other work)")
    ap.add_argument("--large", nargs="*", default=list(LARGE), help="models that wait for memory first")
    ap.add_argument("--wait-mem-gb", type=float, default=14.0)
    ap.add_argument("--wait-mem-min", type=float, default=10.0)
    ap.add_argument("--stop-after-min", type=float, default=110.0,
                    help="start no new model this many minutes after --started-at (default: now)")
    ap.add_argument("--started-at", type=float, help="epoch seconds the time budget counts from")
    ap.add_argument("--retry-deadline", action="store_true",
                    help="also start no per-target re-run past the deadline")
    ap.add_argument("--rerun-gate-failures", action="store_true",
                    help="re-run alone the target whose parity gate failed the all job too (by default its "
                         "failure is taken from the all job: the seeded export and its gate are deterministic)")
    ap.add_argument("--resume", action="store_true",
                    help="--export: keep the models already in --json-out and run the others")
    ap.add_argument("--note", help="added to the JSON's and the caption's note")
    ap.add_argument("--allow-any-tree", action="store_true",
                    help="export even where clipdeploy resolves to /work/main's working tree")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier --export run")
    ap.add_argument("--update-json", action="store_true",
                    help="--from-json: write the figures filled from the job logs back into the file")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        if enrich(result) and args.update_json:
            args.from_json.write_text(json.dumps(result, indent=2, default=str))
        print(zoo_table(result["zoo"]) if "zoo" in result else "")
        print()
        print(export_table(result))
        return 0
    if args.export:
        if not args.out:
            ap.error("--export needs --out DIR")
        return export_mode(args)
    rows = zoo_rows(args.bundles)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(zoo_table(rows))


if __name__ == "__main__":
    sys.exit(main())
