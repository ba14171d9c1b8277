"""``clip-reparam``: fold a checkpoint's train-time branches and write a fused checkpoint.

    clip-reparam --model mobileclip_s0 --checkpoint mobileclip_s0.pt -o fused.pt [--json]
    clip-reparam --model mobileclip_s0 --random-weights 0 -o fused.pt --runs 30

The fused file is written (atomically) only after every fold and the whole model passed verification;
``load_model(name, checkpoint="fused.pt")`` builds the inference-form module directly.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from clipdeploy.models.errors import ClipDeployError


def _parser():
    p = argparse.ArgumentParser(prog="clip-reparam", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="local file or http(s) URL (default: official weights)")
    g.add_argument("--random-weights", type=int, metavar="SEED", help="seeded test weights, offline")
    p.add_argument("-o", "--output", help="fused checkpoint to write (.pt or .safetensors)")
    p.add_argument("--runs", type=int, default=30, help="latency runs per encoder (default 30)")
    p.add_argument("--no-latency", action="store_true", help="skip the before/after latency measurement")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (
        lambda *a: print(*a, flush=True))
    try:
        from clipdeploy.models import load_model
        from clipdeploy.models.checkpoint import save_state_dict

        from .api import fused_state_dict, reparameterize
        from .core import FoldError

        if args.runs < 1:
            raise ClipDeployError("--runs must be at least 1")
        t = time.perf_counter()
        log(f"[1/4] load {args.model}")
        m = load_model(args.model, checkpoint=args.checkpoint, random_weights=args.random_weights)
        log(f"      {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        log("[2/4] fold and verify, module by module, then the whole model on the probe set")
        try:
            fused, report = reparameterize(m)
        except FoldError as e:
            print(f"error: verification failed: {e}; no fused checkpoint was written", file=sys.stderr)
            return 1
        log(f"      {len(report.folds)} folds in {time.perf_counter() - t:.1f}s")
        if not args.no_latency:
            t = time.perf_counter()
            log(f"[3/4] eager latency before/after, batch 1, {args.runs} interleaved runs each")
            from .api import measure_latency
            from clipdeploy.models.probe import probe_images
            report.latency_ms = measure_latency(m.module, fused.module,
                                                probe_images(m.spec.image_size, 1),
                                                m.tokenize(["a photo of a dog"]).long(), runs=args.runs)
            log(f"      {time.perf_counter() - t:.1f}s")
        else:
            log("[3/4] latency skipped (--no-latency)")
        if args.output:
            log(f"[4/4] write {args.output}")
            save_state_dict(fused_state_dict(fused), args.output)
        else:
            log("[4/4] no -o given: nothing written")
        if args.json:
            d = report.to_dict()
            d["output"] = args.output
            print(json.dumps(d, indent=2))
        else:
            print(report.table())
            if args.output:
                print(f"fused checkpoint: {args.output}")
        return 0
    except ClipDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
