"""``clip-models``: list the zoo, fetch official weights, load and check a model.

    clip-models list [--json]
    clip-models info mobileclip_s0 [--json]
    clip-models fetch mobileclip_s0 [--checkpoint URL] [--sha256 HEX]
    clip-models check mobileclip_s0 (--checkpoint PATH|URL | --random-weights SEED)
                      [--image FILE ...] [--labels dog,cat,...] [--save FILE [--layout native|apple|openai|tinyclip|hf]] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import ClipDeployError


def _add_weights(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="local .pt/.bin/.safetensors, a Hugging Face CLIPModel directory "
                                        "(config.json + weights), or an http(s) URL (default: the "
                                        "official weights, downloaded and cached)")
    g.add_argument("--random-weights", type=int, metavar="SEED",
                   help="seeded test weights, offline (outputs depend on inputs)")


def _parser():
    p = argparse.ArgumentParser(prog="clip-models", description="clipdeploy model zoo")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("list", help="the supported models")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("info", help="one model's spec")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("fetch", help="download (and verify) a model's weights into the cache (Hugging Face "
                                     "weights: the Hugging Face cache, honouring HF_ENDPOINT, HF_TOKEN, "
                                     "HF_HUB_OFFLINE)")
    s.add_argument("model")
    s.add_argument("--checkpoint", help="URL to fetch instead of the official one")
    s.add_argument("--sha256", help="expected sha256 of --checkpoint")
    s = sub.add_parser("check", help="load a model, embed probe inputs, zero-shot classify")
    s.add_argument("model")
    _add_weights(s)
    s.add_argument("--image", nargs="*", default=[], help="image files (default: synthetic probes)")
    s.add_argument("--labels", default=None, help="comma-separated zero-shot labels")
    s.add_argument("--save", help="write the loaded weights to this file (.pt or .safetensors)")
    s.add_argument("--layout", choices=["native", "apple", "openai", "tinyclip", "hf"], default="native",
                   help="layout of --save: native (the module's own keys) or one the model is published "
                        "in (apple: Apple's .pt; openai: OpenAI's CLIP keys; tinyclip: the TinyCLIP "
                        "fork's; hf: transformers CLIPModel keys)")
    s.add_argument("--json", action="store_true")
    return p


def _list(args):
    from .registry import REGISTRY
    rows = [s.to_dict() for s in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<16} {'image tower':<44} {'px':>4} {'dim':>4} {'mean/std':<9} layouts")
    for s in REGISTRY.values():
        print(f"{s.name:<16} {s.image_tower[:44]:<44} {s.image_size:>4} {s.embed_dim:>4} "
              f"{'openai' if s.mean else 'none':<9} {','.join(s.layouts)}")
    return 0


def _info(args):
    from .registry import get_spec
    d = get_spec(args.model).to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            print(f"{k:<18} {v}")
    return 0


def _fetch(args):
    from .api import checkpoint_sha, resolve_checkpoint
    from .registry import get_spec
    spec = get_spec(args.model)
    path = resolve_checkpoint(spec, args.checkpoint, sha256=args.sha256)
    # a Hugging Face CLIPModel checkpoint is a folder (a snapshot of the HF cache): sha256 of its weights
    print(f"{spec.name}: {path} (sha256 {checkpoint_sha(path)})")
    return 0


def _check(args):
    import torch

    from .api import load_model
    from .probe import PROBE_CAPTIONS, PROBE_LABELS, probe_images

    t0 = time.perf_counter()
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    log(f"[1/4] building {args.model} and loading "
        f"{'random weights (seed %d)' % args.random_weights if args.random_weights is not None else args.checkpoint or 'official weights'}")
    m = load_model(args.model, checkpoint=args.checkpoint, random_weights=args.random_weights)
    t_load = time.perf_counter() - t0
    r = m.spec.image_size
    if args.image:
        from PIL import Image
        names = list(args.image)
        try:
            images = torch.stack([m.preprocess(Image.open(f)) for f in names])
        except (OSError, ValueError) as e:
            raise ClipDeployError(f"cannot read image: {e}; pass PNG/JPEG files") from None
    else:
        images = probe_images(r, 6)
        names = [f"probe{i}" for i in range(len(images))]
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else PROBE_LABELS
    log(f"[2/4] encoding {len(images)} images at {r}px")
    t1 = time.perf_counter()
    img = m.encode_image(images)
    t_img = (time.perf_counter() - t1) / len(images)
    log(f"[3/4] encoding {len(PROBE_CAPTIONS)} captions")
    t1 = time.perf_counter()
    txt = m.encode_text(m.tokenize(PROBE_CAPTIONS))
    t_txt = (time.perf_counter() - t1) / len(PROBE_CAPTIONS)
    log(f"[4/4] zero-shot over {len(labels)} labels")
    probs = m.zero_shot(images, labels)
    off = ~torch.eye(len(img), dtype=torch.bool)
    offt = ~torch.eye(len(txt), dtype=torch.bool)
    result = {
        "model": m.spec.name, "source": m.source, "layout": m.layout,
        "checkpoint_sha256": m.checkpoint_sha256,
        "load_s": round(t_load, 3), "image_ms_per_item": round(t_img * 1e3, 2),
        "text_ms_per_item": round(t_txt * 1e3, 2), "embed_dim": int(img.shape[1]),
        "logit_scale": round(m.logit_scale, 4),
        "max_image_pair_cosine": round(float((img @ img.T)[off].max()), 4),
        "max_text_pair_cosine": round(float((txt @ txt.T)[offt].max()), 4),
        "zero_shot": [{"image": n, "label": labels[int(p.argmax())], "p": round(float(p.max()), 4)}
                      for n, p in zip(names, probs)],
    }
    if args.save:
        from .checkpoint import save_state_dict
        try:
            sd = m.state_dict(args.layout)
        except ValueError as e:
            raise ClipDeployError(f"cannot save: {e}") from None
        save_state_dict(sd, args.save)
        result["saved"] = {"path": args.save, "layout": args.layout}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{m.spec.name}: loaded from {m.source} in {t_load:.1f}s; embed dim {result['embed_dim']}, "
          f"logit scale {m.logit_scale:.2f}")
    print(f"  image encoder {t_img * 1e3:.1f} ms/image, text encoder {t_txt * 1e3:.1f} ms/caption "
          f"(eager, batched, {'fused' if m.fused else 'train-time form'})")
    print(f"  input dependence: max cosine between different images {result['max_image_pair_cosine']}, "
          f"between different captions {result['max_text_pair_cosine']}")
    for z in result["zero_shot"]:
        print(f"  {z['image']:<12} -> {z['label']:<10} p={z['p']:.3f}")
    if args.save:
        print(f"  saved {args.layout}-layout weights to {args.save}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"list": _list, "info": _info, "fetch": _fetch, "check": _check}[args.cmd](args)
    except ClipDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
