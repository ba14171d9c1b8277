"""A zero-shot classifier artifact against the image encoder + the class matrix as data (issue 23): file
size, load time, resident memory after load, steady latency at batch 1, and the top-1 agreement and logits
max abs between the two on the probe images and the generated validation images.

Each figure comes from its own process (a fresh interpreter and runtime); the two ways alternate, process by
process, ``--procs`` times per runtime, so a drift of the machine lands on both. Run it with the machine
otherwise idle:

    python benchmarks/classifier_cost.py out/mobileclip_s0 --procs 3 --runs 100 --threads 2 [--json cost.json]

"image encoder + matrix" is the app's other path: the image artifact's embedding times the class matrix
(``classifier/class_embeddings.npy``) and logit_scale in NumPy, float32, as the apps' cores do it in Java or
Swift. Core ML artifacts cannot run off macOS: their sizes are listed, no times.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
from clipdeploy.latency.bundle import Artifact, Bundle
from clipdeploy.latency.runtimes import get_runtime

path, runtime, way, threads, runs, warmup, images = (sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                                     int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
target = {"onnxruntime": "onnx", "executorch": "executorch", "litert": "litert"}[runtime]
b = Bundle(path)
c = b.classifier()
enc = "classifier" if way == "classifier" else "image"
a = next(x for x in b.manifest["artifacts"] if x["target"] == target and x["encoder"] == enc and x.get("default", True))
art = Artifact(a["target"], a["precision"], a["encoder"], a["path"])
b.verify_artifact(art)
rt = get_runtime(runtime, b)
rt.configure(threads)
t = time.perf_counter(); h = rt.load(art); load_s = time.perf_counter() - t
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024
ct = np.ascontiguousarray(c["class_embeddings"].T)
s = np.float32(c["logit_scale"])
infer = rt.infer
if way == "classifier":
    call = lambda x: np.asarray(infer(h, x), np.float32).reshape(1, -1)
else:
    call = lambda x: (np.asarray(infer(h, x), np.float32).reshape(1, -1) @ ct) * s
probe = b.probe()["image"]
x1 = np.ascontiguousarray(probe[:1])
for _ in range(warmup):
    call(x1)
samples = []
for _ in range(runs):
    t = time.perf_counter_ns(); call(x1); samples.append((time.perf_counter_ns() - t) / 1e6)
imgs = np.concatenate([probe, np.load(images)])
logits = np.concatenate([call(np.ascontiguousarray(imgs[i:i + 1])) for i in range(len(imgs))])
print(json.dumps({"artifact": a["path"], "precision": a["precision"], "load_s": load_s, "rss_after_load_mb": rss,
                  "samples_ms": samples, "logits": logits.tolist()}))
"""


def _child(bundle: Path, runtime: str, way: str, threads: int, runs: int, warmup: int, images: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(bundle), runtime, way, str(threads), str(runs), str(warmup),
                        str(images)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: {runtime} {way}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    import numpy as np
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--procs", type=int, default=3, help="processes per runtime and way (default 3)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runtime", action="append", choices=["onnxruntime", "executorch", "litert"])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    man_path = a.bundle / "manifest.json"
    if not man_path.is_file():
        print(f"error: {a.bundle} has no manifest.json: pass a bundle written by clip-export --classifier",
              file=sys.stderr)
        return 2
    man = json.loads(man_path.read_text())
    if not man.get("classifier"):
        print(f"error: {a.bundle} has no classifier: export it with clip-export --classifier LABELS.txt",
              file=sys.stderr)
        return 2
    c = man["classifier"]
    matrix = (a.bundle / c["class_embeddings"]).stat().st_size
    print(f"{a.bundle}: {len(c['labels'])} labels x {len(c['templates'])} templates; class matrix {matrix} bytes; "
          f"{a.procs} processes per figure, {a.runs} runs after {a.warmup} warm-up calls, {a.threads} threads, batch 1")
    sizes = []
    for cl in (x for x in man["artifacts"] if x["encoder"] == "classifier" and x.get("default", True)):
        img = next(x for x in man["artifacts"] if x["target"] == cl["target"] and x["encoder"] == "image"
                   and x.get("default", True))
        sizes.append({"target": cl["target"], "precision": cl["precision"], "classifier_bytes": cl["size_bytes"],
                      "image_encoder_bytes": img["size_bytes"], "image_encoder_plus_matrix_bytes": img["size_bytes"] + matrix})
        print(f"  {cl['target']:10s} {cl['precision']}: classifier {cl['size_bytes'] / 1e6:.2f} MB, image encoder + "
              f"matrix {(img['size_bytes'] + matrix) / 1e6:.2f} MB")
    # the validation images (32, what the export gate uses) made here, so that no child imports torch for them
    import tempfile
    from clipdeploy.models import validation as vset
    tmpd = tempfile.TemporaryDirectory()
    images = Path(tmpd.name) / "validation_images.npy"
    np.save(images, vset.validation_set(int(man["preprocessing"]["image_size"]), 32, 1)[0])
    have = {x["target"] for x in man["artifacts"] if x["encoder"] == "classifier"}
    rows = []
    for rt in a.runtime or ["onnxruntime", "executorch", "litert"]:
        if {"onnxruntime": "onnx"}.get(rt, rt) not in have:
            print(f"  {rt:12s} no classifier artifact for it in the bundle")
            continue
        runs = {"classifier": [], "encoder+matrix": []}
        for k in range(a.procs):
            order = ("classifier", "encoder+matrix") if k % 2 == 0 else ("encoder+matrix", "classifier")
            for way in order:
                runs[way].append(_child(a.bundle, rt, way, a.threads, a.runs, a.warmup, images))
        lc = np.asarray(runs["classifier"][0]["logits"], np.float64)
        le = np.asarray(runs["encoder+matrix"][0]["logits"], np.float64)
        row = {"runtime": rt, "processes": a.procs, "images": int(len(lc)),
               "top1_agreement": float(np.mean(lc.argmax(-1) == le.argmax(-1))),
               "logits_max_abs": float(np.abs(lc - le).max()),
               "reference_top1_labels": int(len(set(le.argmax(-1).tolist())))}
        for way, rs in runs.items():
            med = [statistics.median(r["samples_ms"]) for r in rs]
            row[way] = {"artifact": rs[0]["artifact"], "median_ms_per_process": med,
                        "median_ms": statistics.median(med),
                        "load_s": statistics.median(r["load_s"] for r in rs),
                        "rss_after_load_mb": statistics.median(r["rss_after_load_mb"] for r in rs)}
        rows.append(row)
        c_, e_ = row["classifier"], row["encoder+matrix"]
        print(f"  {rt:12s} classifier {c_['median_ms']:7.2f} ms ({', '.join(f'{m:.2f}' for m in c_['median_ms_per_process'])}), "
              f"load {c_['load_s'] * 1e3:.0f} ms, RSS {c_['rss_after_load_mb']:.0f} MB | encoder + matrix "
              f"{e_['median_ms']:7.2f} ms ({', '.join(f'{m:.2f}' for m in e_['median_ms_per_process'])}), load "
              f"{e_['load_s'] * 1e3:.0f} ms, RSS {e_['rss_after_load_mb']:.0f} MB | top-1 agreement "
              f"{row['top1_agreement']:.1%} of {row['images']} images, logits max abs {row['logits_max_abs']:.1e}")
    if a.json:
        a.json.write_text(json.dumps({"bundle": str(a.bundle), "sizes": sizes, "runtimes": rows,
                                      "settings": {"procs": a.procs, "runs": a.runs, "warmup": a.warmup,
                                                   "threads": a.threads}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
