"""``clip-export``: write a verified artifact bundle.

    clip-export --model mobileclip_s0 --target coreml|onnx|executorch|executorch-coreml|all
                [--checkpoint PATH|URL] [--random-weights SEED] [--precision fp32|fp16|int8]
                [--accept-degraded] [--ort-offline off|auto|never] [--ios 16|17|18] [--out DIR] [--force] [--json]
                [--classifier LABELS.txt [--templates openai|cifar10|simple|FILE]]

``--precision int8`` writes each target's float artifact and its int8 variant (calibrated on the probe
set), compares them (size, latency here, parity) in the manifest's ``precision_tradeoffs`` and marks
the int8 one ``default`` only where it passed its bars and ran faster.

``--classifier LABELS.txt`` (one label per line) also writes, per target and precision, a zero-shot
classifier (``image`` -> ``logits`` [1, N]: the image encoder, the prompt-ensemble class matrix and
logit_scale in one artifact) gated on its logits, and the class matrix as data
(``classifier/class_embeddings.npy``, ``classifier/labels.json``). ``--templates``: the CLIP paper's 80
ImageNet templates (``openai``, the default), its 18 CIFAR-10 ones (``cifar10``), ``a photo of a {}.``
(``simple``) or a file with one template per line, each with ``{}``.
"""
from __future__ import annotations

import argparse
import json
import sys

from clipdeploy.models.errors import ClipDeployError


def _parser():
    p = argparse.ArgumentParser(prog="clip-export", description="export CLIP encoders for on-device runtimes")
    p.add_argument("--model", required=True)
    p.add_argument("--target", action="append", required=True,
                   help="coreml, onnx, executorch, executorch-coreml or all (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="local file or http(s) URL (default: official weights)")
    g.add_argument("--random-weights", type=int, metavar="SEED", help="seeded test weights, offline")
    p.add_argument("--precision", help="fp32, fp16 or int8 (default per target: Core ML fp16, others "
                                       "fp32; int8 also writes the float artifact it is compared with)")
    p.add_argument("--accept-degraded", action="store_true",
                   help="write an int8 artifact that misses its parity bars (cosine >= 0.999, zero-shot "
                        ">= 99%%) anyway, with a warning; it is never the default")
    p.add_argument("--ort-offline", choices=["off", "auto", "never"], default="off",
                   help="ONNX fp32: evaluate ONNX Runtime's offline-optimized (EXTENDED) graph and keep it "
                        "where it loads faster without running slower (auto), only report (never), or skip "
                        "the evaluation (off, the default: it was not kept on the x86 build host)")
    p.add_argument("--ios", type=int, default=17, help="Core ML minimum deployment target: 16, 17, 18")
    p.add_argument("--out", help="bundle directory (default out/<model>)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    p.add_argument("--classifier", metavar="LABELS.txt",
                   help="also write a zero-shot classifier per target (image -> logits over these labels, one "
                        "per line) and the class embeddings as data")
    p.add_argument("--templates", metavar="openai|cifar10|simple|FILE",
                   help="prompt templates of the classifier (default openai: the CLIP paper's 80 ImageNet "
                        "templates; a FILE has one template per line with {})")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (
        lambda *a: print(*a, flush=True))
    try:
        from .backends.base import BackendUnavailable
        from .parity import ParityError
        from .pipeline import export_bundle
        from .targets import ExportInputError
        from clipdeploy.models import get_spec

        get_spec(args.model)
        if args.precision not in (None, "fp32", "fp16", "int8"):
            raise ExportInputError(f"unknown precision '{args.precision}': use fp32, fp16 or int8")
        if args.ios not in (16, 17, 18):
            raise ExportInputError(f"--ios {args.ios} is not supported: use 16, 17 or 18")
        if args.templates and not args.classifier:
            raise ExportInputError("--templates needs --classifier LABELS.txt (the labels to write into them)")
        classifier = {"labels": args.classifier, "templates": args.templates} if args.classifier else None
        try:
            manifest = export_bundle(args.model, args.target, args.precision, args.checkpoint,
                                     args.random_weights, args.out, args.force, args.ios, log,
                                     accept_degraded=args.accept_degraded,
                                     backend_options={"ort_offline": args.ort_offline}, classifier=classifier)
        except BackendUnavailable as e:
            raise ExportInputError(str(e)) from None
        except ParityError as e:
            print(f"error: {e}; nothing was written", file=sys.stderr)
            print(json.dumps(e.figures), file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(manifest, indent=2, default=str))
        else:
            print(f"bundle: {manifest['bundle']} ({len(manifest['artifacts'])} artifacts)")
        return 0
    except ClipDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
