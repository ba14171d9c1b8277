"""LiteRT: each pre-conversion rewrite measured on and off (MobileCLIP-S0, seeded weights).

    .venv/bin/python benchmarks/litert_rewrites.py [--model mobileclip_s0] [--threads 1 2] [--processes 3]
                                                   [--runs 30] [--json OUT]

For each encoder, ``.tflite`` files are converted with the rewrites of
:func:`clipdeploy.export.backends.litert_backend.prepare` switched on one at a time (``none``, each alone,
``all``) and gated against the PyTorch wrapper on the probe set (max abs, which must stay at the fp32 bar).
Each file is then timed in ``--processes`` fresh processes per thread count, the variants round-robin
(one process at a time: nothing else runs beside the interpreter), ``--runs`` batch-1 calls after 5
warm-up calls; the figure is the median over processes of each process's median. Run it on an otherwise
idle machine.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_TIME = r"""
import sys, time, numpy as np
from clipdeploy.latency import litert_run as lb
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interp = lb.interpreter(path, threads)
call = lb.runner(interp)
(name, dtype), = [(k, d["dtype"]) for k, d in interp.get_signature_runner(lb.SIGNATURE).get_input_details().items()]
shape = interp.get_signature_runner(lb.SIGNATURE).get_input_details()[name]["shape"]
x = np.random.default_rng(0).random(shape).astype(dtype) if dtype == np.float32 else np.zeros(shape, dtype)
for _ in range(5):
    call(x)
ts = []
for _ in range(runs):
    t = time.perf_counter(); call(x); ts.append((time.perf_counter() - t) * 1e3)
d = lb.delegation_figures(interp)
print(float(np.median(ts)), d["partitions"], sum(d["ops_outside"].values()))
"""


def variants(encoder):
    names = ["banded-depthwise", "l2-normalize"] if encoder == "image" else ["l2-normalize"]
    return [("none", ())] + [(n, (n,)) for n in names] + ([("all", tuple(names))] if len(names) > 1 else [])


def convert(model, encoder, which, out: Path):
    import copy

    import torch

    from clipdeploy.export.backends import litert_backend as lb
    from clipdeploy.export.backends.xnnpack_modules import split_large_depthwise
    from clipdeploy.export.parity import measure
    from clipdeploy.export.wrappers import encoder as make_encoder, example_input
    from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images

    m = model
    w = make_encoder(m.module, m.spec, encoder)
    mod = split_large_depthwise(w)[0] if "banded-depthwise" in which else copy.deepcopy(w)
    sig = lb._signature_module(mod, encoder, l2="l2-normalize" in which)
    out.write_bytes(lb.convert(sig, encoder, example_input(m.spec, encoder)))
    x = probe_images(m.spec.image_size, 6) if encoder == "image" else m.tokenize(PROBE_CAPTIONS)
    with torch.no_grad():
        ref = w(x).numpy()
    got = lb.runner(lb.interpreter(out))(x.numpy())
    return measure(ref, got, ref)["max_abs"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobileclip_s0")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json")
    args = p.parse_args(argv)

    from clipdeploy.models import load_model
    from clipdeploy.reparam import reparameterize

    m = reparameterize(load_model(args.model, random_weights=0), flops=False)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="clipdeploy-litert-rw-") as d:
        files = []
        for enc in ("image", "text"):
            for name, which in variants(enc):
                f = Path(d) / f"{enc}_{name}.tflite"
                err = convert(m, enc, which, f)
                print(f"[convert] {enc} {name}: max abs {err:.1e}", file=sys.stderr, flush=True)
                files.append((enc, name, f, err))
        for t in args.threads:
            samples = {(enc, name): [] for enc, name, _, _ in files}
            meta = {}
            for _ in range(args.processes):
                for enc, name, f, _ in files:
                    r = subprocess.run([sys.executable, "-c", _TIME, str(f), str(t), str(args.runs)],
                                       capture_output=True, text=True, check=True)
                    ms, parts, outside = r.stdout.split()
                    samples[(enc, name)].append(float(ms))
                    meta[(enc, name)] = (int(parts), int(outside))
            for enc, name, f, err in files:
                s = samples[(enc, name)]
                rows.append({"encoder": enc, "rewrites": name, "threads": t, "median_ms": float(np.median(s)),
                             "process_medians_ms": s, "partitions": meta[(enc, name)][0],
                             "ops_outside": meta[(enc, name)][1], "max_abs": err})
    print("| encoder | rewrites | threads | median ms (processes) | XNNPACK partitions | ops outside | max abs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['encoder']} | {r['rewrites']} | {r['threads']} | {r['median_ms']:.1f} "
              f"({'–'.join(f'{x:.1f}' for x in (min(r['process_medians_ms']), max(r['process_medians_ms'])))}) | "
              f"{r['partitions']} | {r['ops_outside']} | {r['max_abs']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "settings": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
