"""Figures of latency reports (matplotlib, Agg backend): PNG bytes, embedded by the HTML report.

* :func:`distribution_png` — steady-state latency per artifact × runtime (box plot with the raw samples
  overlaid), one colour per report;
* :func:`parity_scatter_png` — median latency vs parity max abs error, one point per artifact × runtime;
* :func:`comparison_png` — baseline vs current: calibration-normalized median ratio with its bootstrap
  CI per artifact × runtime, threshold marked.
"""
from __future__ import annotations

import io

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
MARKERS = {"onnxruntime": "o", "executorch": "s", "litert": "v", "torch": "^", "coreml": "D"}


def _horizontal() -> dict:
    import matplotlib
    major, minor = (int(v) for v in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10,
                         "figure.dpi": 110})
    return plt


def short_label(r: dict) -> str:
    tgt = "pytorch eager" if r["target"] == "pytorch" else f"{r['target']}-{r['precision']}"
    return f"{r['encoder']} · {tgt} @ {r['runtime']}"


def _plain_log_ticks(axis) -> None:
    """Readable tick labels on a log axis: 20, 50, 100, 200, ... instead of 10^2 only."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _report_name(rep: dict, i: int) -> str:
    return rep.get("_label") or f"#{i + 1} {rep['source']} {rep['created'][:16]}"


def distribution_png(reports: list) -> bytes:
    plt = _plt()
    horizontal = _horizontal()
    labels = []
    for rep in reports:
        for r in rep["records"]:
            if r["status"] == "ok" and short_label(r) not in labels:
                labels.append(short_label(r))
    labels.sort()
    if not labels:
        fig, ax = plt.subplots(figsize=(7, 1.5))
        ax.text(0.5, 0.5, "no successful records", ha="center", va="center")
        ax.axis("off")
        return _png(fig)
    k = len(reports)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) * max(1, k * 0.8) + 1.4))
    step = 0.8 / k
    all_vals = []
    for i, rep in enumerate(reports):
        by = {short_label(r): r for r in rep["records"] if r["status"] == "ok"}
        pos, data = [], []
        for j, lab in enumerate(labels):
            if lab in by:
                pos.append(j - 0.4 + step * (i + 0.5))
                data.append(np.asarray(by[lab]["steady"]["samples_ms"], float))
        if not data:
            continue
        all_vals.extend(np.concatenate(data).tolist())
        c = COLORS[i % len(COLORS)]
        ax.boxplot(data, positions=pos, widths=step * 0.8, showfliers=False, **horizontal,
                   patch_artist=True, boxprops={"facecolor": c + "33", "edgecolor": c},
                   medianprops={"color": c, "linewidth": 2}, whiskerprops={"color": c},
                   capprops={"color": c})
        rng = np.random.default_rng(0)
        for p, d in zip(pos, data):
            ax.scatter(d, p + rng.uniform(-step * 0.25, step * 0.25, len(d)), s=6, color=c, alpha=0.5,
                       zorder=3)
        ax.plot([], [], color=c, linewidth=6, alpha=0.5, label=_report_name(rep, i))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    if all_vals and max(all_vals) / max(min(all_vals), 1e-9) > 20:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("steady-state latency per sample (ms)")
    ax.set_title("Latency distribution per artifact × runtime")
    ax.grid(axis="x", alpha=0.3, which="both")
    if k > 1:
        ax.legend(loc="best", fontsize=8)
    return _png(fig)


def parity_scatter_png(reports: list) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    floor = 1e-9
    points = []                                   # (x, y, label) of the last report, for the labels
    for i, rep in enumerate(reports):
        c = COLORS[i % len(COLORS)]
        for r in rep["records"]:
            if r["status"] != "ok":
                continue
            x = r["steady"]["stats"]["median"]
            ma = r["parity"]["max_abs"]
            y = max(ma, floor) if ma is not None else 1.0
            ax.scatter([x], [y], s=60, color=c, marker=MARKERS.get(r["runtime"], "o"),
                       edgecolor="black" if r["encoder"] == "image" else c, linewidth=1, zorder=3,
                       alpha=1.0 if i == len(reports) - 1 else 0.6)
            if i == len(reports) - 1:
                points.append((x, y, short_label(r)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.axhline(1e-5, color="gray", linestyle="--", linewidth=1)
    ax.text(0.01, 1e-5, "fp32 gate 1e-5", transform=ax.get_yaxis_transform(), va="bottom", ha="left",
            fontsize=8, color="gray")
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.set_xlim(min(xs) / 1.3, max(xs) * 2.2)           # room for the labels on the right
        ax.set_ylim(min(ys + [1e-5]) / 5, max(ys + [1e-5]) * 5)
        fig.canvas.draw()
        placed = []                                          # label boxes in display coordinates
        for x, y, text in sorted(points, key=lambda p: (-p[1], p[0])):
            px, py = ax.transData.transform((x, y))
            w, h = 5.6 * len(text), 11.0
            dy = 4.0
            while any(abs((py + dy) - qy) < h and (px + 6) < qx + qw and qx < (px + 6) + w
                      for qx, qy, qw in placed):
                dy -= h
            placed.append((px + 6, py + dy, w))
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, dy * 72 / fig.dpi),
                        fontsize=8, arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5}
                        if dy < 0 else None)
    ax.set_xlabel("median latency (ms, log)")
    ax.set_ylabel(f"parity: max abs error vs reference (log; 0 shown at {floor:g})")
    ax.set_title("Latency vs parity (marker: runtime; black edge: image encoder)")
    ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="gray", label=n)
               for n, m in MARKERS.items()]
    if len(reports) > 1:
        handles += [plt.Line2D([], [], marker="o", linestyle="", color=COLORS[i % len(COLORS)],
                               label=_report_name(rep, i) + (" (labelled)" if i == len(reports) - 1 else ""))
                    for i, rep in enumerate(reports)]
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    if not points:
        ax.text(0.5, 0.5, "no successful records", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def comparison_png(result: dict) -> bytes:
    plt = _plt()
    rows = [r for r in result["rows"] if r["ratio"] is not None]
    rows.sort(key=lambda r: (r["encoder"], r["artifact"], r["runtime"]))
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(1, len(rows)) + 1.6))
    thr = 1.0 + result["max_slowdown"]
    for j, r in enumerate(rows):
        bad = "REGRESSION" in r["verdict"] or "PARITY" in r["verdict"]
        c = "#d62728" if bad else ("#2ca02c" if r["verdict"] == "faster" else "#1f77b4")
        ax.errorbar([r["ratio"]], [j], xerr=[[r["ratio"] - r["ci_low"]], [r["ci_high"] - r["ratio"]]],
                    fmt="o", color=c, capsize=4, markersize=6)
        ax.annotate(r["verdict"], (r["ci_high"], j), textcoords="offset points", xytext=(6, -3),
                    fontsize=8, color=c)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(thr, color="#d62728", linestyle="--", linewidth=1)
    ax.text(thr, 0.0, f" +{result['max_slowdown'] * 100:g}%", transform=ax.get_xaxis_transform(),
            color="#d62728", fontsize=8, va="bottom", ha="left")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['encoder']} · {r['artifact'].split('/')[0]} @ {r['runtime']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("current / baseline median latency" +
                  (" (normalized by calibration)" if result["normalized"] else "") +
                  f", {result['confidence'] * 100:g}% bootstrap CI")
    ax.set_title("Baseline vs current")
    ax.grid(axis="x", alpha=0.3)
    lo = min([r["ci_low"] for r in rows] + [0.9])
    hi = max([r["ci_high"] for r in rows] + [thr + 0.05])
    ax.set_xlim(lo - 0.05, hi + 0.12 * (hi - lo + 0.1))
    return _png(fig)
