"""Fidelity and speed of the Core ML reference interpreter on MobileCLIP exports (seeded weights).

    .venv/bin/python benchmarks/coreml_ref.py [--models mobileclip_s0 ... | all] [--ios 17 [16 18]]
                                              [--precisions fp32 fp16] [--no-pessimistic] [--threads 1]
                                              [--workdir DIR [--reuse]] [--json OUT]

For every model x encoder x precision x iOS target (``--models all``: every registry model; the op
coverage check for other deployment targets): export with the repo's CoreMLBackend (fused seeded
model), run the probe set through clipdeploy.latency.coreml_ref, and compare with the PyTorch
reference (normalized embeddings): max abs error, cosine (min, mean), zero-shot top-1 agreement with
the other tower, the same with pessimistic fp16 rounding, and the export parity bar (fp32: max abs <=
1e-5; fp16: max abs <= 1.5e-3 and cosine >= 0.99995). Timing: package load (parse + weights + compile,
cold), and the warm single-input run time (median of --runs). Prints a markdown table.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--encoders", nargs="+", default=["image", "text"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    p.add_argument("--ios", nargs="+", type=int, default=[17], help="deployment targets (default 17)")
    p.add_argument("--no-pessimistic", action="store_true", help="skip the pessimistic-rounding pass")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the interpreter's kernels")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workdir", help="where the exported packages go (default: a temporary directory)")
    p.add_argument("--reuse", action="store_true", help="reuse packages already in --workdir")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.models == ["all"]:
        from clipdeploy.models import list_models
        args.models = list_models()

    from clipdeploy.export.backends.coreml_backend import CoreMLBackend
    from clipdeploy.export.wrappers import encoder as make_encoder, example_input
    from clipdeploy.latency import coreml_ref as cr
    from clipdeploy.models import load_model
    from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images
    from clipdeploy.reparam import reparameterize

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        work = Path(tmp.name)
    backend = CoreMLBackend()
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        m = reparameterize(load_model(name, random_weights=0))[0]
        images = probe_images(m.spec.image_size, 6)
        ids = m.tokenize(PROBE_CAPTIONS)
        with torch.no_grad():
            ref = {"image": make_encoder(m.module, m.spec, "image")(images).numpy(),
                   "text": make_encoder(m.module, m.spec, "text")(ids).numpy()}
        inputs = {"image": images.numpy(), "text": ids.numpy()}
        print(f"# {name}: seeded + fused in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        for which in args.encoders:
            other = ref["text" if which == "image" else "image"]
            for precision, ios in [(pr, i) for pr in args.precisions for i in args.ios]:
                path = work / f"{name}_{which}_{precision}_ios{ios}.mlpackage"
                t_export = None
                if not (args.reuse and path.exists()):
                    t0 = time.perf_counter()
                    backend.export(make_encoder(m.module, m.spec, which), example_input(m.spec, which), which,
                                   precision, path, m.spec, {"ios": ios, "image_type": False})
                    t_export = time.perf_counter() - t0
                cr.clear_cache()
                t0 = time.perf_counter()
                prog = cr.load_program(path)
                t_load = time.perf_counter() - t0
                fig = cr.verify_mlpackage(prog, inputs[which], ref[which], precision, other_tower=other,
                                          check=False)
                pes = fig if args.no_pessimistic else cr.verify_mlpackage(
                    prog, inputs[which], ref[which], precision, other_tower=other, pessimistic=True, check=False)
                feed = {prog.inputs[0].name: inputs[which][:1]}
                prog.run(feed)
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    prog.run(feed)
                    times.append(time.perf_counter() - t0)
                row = {"model": name, "encoder": which, "precision": precision, "ios": ios,
                       "opset": prog.opset, "op_types": sorted(prog.diagnostics["op_types"]),
                       "max_abs": fig["max_abs"], "cosine_min": fig["cosine_min"],
                       "cosine_mean": fig["cosine_mean"], "zero_shot": fig["zero_shot_agreement"],
                       "passed": fig["passed"], "failures": fig["failures"],
                       "pessimistic_max_abs": pes["max_abs"], "pessimistic_cosine_min": pes["cosine_min"],
                       "ops": prog.diagnostics["op_count"], "overflow_warnings": len(
                           prog.diagnostics["overflow_warnings"]),
                       "first_nonfinite": prog.diagnostics["first_nonfinite"],
                       "run_ms": statistics.median(times) * 1e3, "load_s": t_load, "export_s": t_export}
                rows.append(row)
                print(f"# {name} {which} {precision} iOS{ios}: max abs {row['max_abs']:.2e} cos {row['cosine_min']:.6f} "
                      f"run {row['run_ms']:.0f} ms", file=sys.stderr, flush=True)
        del m

    print(f"Core ML reference interpreter vs PyTorch (seeded, fused; probe set: 6 images / 8 captions; "
          f"torch threads {args.threads})\n")
    print("| model | encoder | precision | target | max abs | cos min | cos mean | zero-shot | bar | "
          "pessimistic max abs / cos min | ops | warm run | load | export |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bar = "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        exp = f"{r['export_s']:.1f} s" if r["export_s"] is not None else "reused"
        print(f"| {r['model']} | {r['encoder']} | {r['precision']} | iOS{r['ios']} | {r['max_abs']:.2e} | {r['cosine_min']:.7f} | "
              f"{r['cosine_mean']:.7f} | {r['zero_shot']:.0%} | {bar} | {r['pessimistic_max_abs']:.2e} / "
              f"{r['pessimistic_cosine_min']:.6f} | {r['ops']} | {r['run_ms']:.0f} ms | {r['load_s']:.2f} s | "
              f"{exp} |")
    types = sorted({t for r in rows for t in r["op_types"]})
    print(f"\nop types seen ({len(types)}): {', '.join(types)}")
    s0 = [r for r in rows if (r["model"], r["encoder"], r["precision"]) == ("mobileclip_s0", "image", "fp32")]
    if s0:
        print(f"\nS0 image encoder, fp32 program, warm interpreter run: {s0[0]['run_ms']:.0f} ms "
              f"(goal <= 2000 ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
