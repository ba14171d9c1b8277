"""Eager latency before/after reparameterization for MobileCLIP S0, S1, S2 (seeded weights).

    .venv/bin/python benchmarks/reparam.py [--models mobileclip_s0 ...] [--runs 30] [--json OUT]

Batch 1, before and after interleaved run by run in one process (so machine noise hits both alike),
median of --runs, torch's default intra-op threads. Prints each model's report and a summary table.
"""
import argparse
import json
import sys

import torch

from clipdeploy.models import load_model
from clipdeploy.reparam import reparameterize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mobileclip_s0", "mobileclip_s1", "mobileclip_s2"])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json", help="write all reports here")
    args = p.parse_args(argv)
    reports = {}
    for name in args.models:
        print(f"== {name}", flush=True)
        _, report = reparameterize(load_model(name, random_weights=0), measure=True, runs=args.runs)
        print(report.table(), flush=True)
        reports[name] = report.to_dict()
    print(f"\nsummary (eager, batch 1, median of {args.runs}, {torch.get_num_threads()} threads)")
    print(f"{'model':<16}{'image before':>14}{'after':>9}{'speed-up':>10}{'text before':>13}{'after':>9}"
          f"{'speed-up':>10}{'BN':>9}")
    for name, r in reports.items():
        i, t = r["latency_ms"]["image"], r["latency_ms"]["text"]
        print(f"{name:<16}{i['before']:>12.1f}ms{i['after']:>7.1f}ms{i['speedup']:>9.2f}x"
              f"{t['before']:>11.1f}ms{t['after']:>7.1f}ms{t['speedup']:>9.2f}x"
              f"{r['batchnorm']['before']:>5}->{r['batchnorm']['after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
