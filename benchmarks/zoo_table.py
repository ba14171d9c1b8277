"""The README's supported-model table, from the registry and from bundles written here.

    python benchmarks/zoo_table.py [--bundles DIR ...] [--json]

Per model: input size, parameter counts of the image and text towers (the module built on the meta
device in its default architecture, train-time form; for TinyCLIP's pruned "auto" models the seeded
stand-in widths, which are sized to the published counts), the checkpoint formats it loads, and the
export targets whose artifacts passed the parity gate in a ``clip-export --target all`` bundle found under
``--bundles`` (one sub-folder per model, as ``clip-export --out DIR/<model>`` writes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

FORMATS = {"apple": "Apple `.pt`", "native": "open_clip", "open_clip": "open_clip",
           "openai": "OpenAI `.pt` (TorchScript)", "hf": "HF `CLIPModel` dir", "tinyclip": "TinyCLIP fork `.pt`"}


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


def main(argv=None):
    from clipdeploy.models import REGISTRY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", nargs="*", default=[], type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for spec in REGISTRY.values():
        img, txt = params(spec)
        found = [v for d in args.bundles for v in verified(d / spec.name)]
        formats = []
        for layout in spec.layouts:
            if FORMATS[layout] not in formats:
                formats.append(FORMATS[layout])
        rows.append({"model": spec.name, "px": spec.image_size, "image_params": img, "text_params": txt,
                     "formats": formats, "verified": sorted(set(found)), "pruned": spec.pruned})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| model | px | params image + text | checkpoint formats | targets verified here (seeded weights) |")
    print("|---|---|---|---|---|")
    for r in rows:
        p = f"{r['image_params'] / 1e6:.1f}M + {r['text_params'] / 1e6:.1f}M" + (" ¹" if r["pruned"] else "")
        print(f"| `{r['model']}` | {r['px']} | {p} | {', '.join(r['formats'])} | "
              f"{', '.join(r['verified']) or '—'} |")


if __name__ == "__main__":
    main()
