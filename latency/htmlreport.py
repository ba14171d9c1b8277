"""``clip-latency report``: a self-contained HTML page (tables + PNG figures embedded as base64) and a
markdown summary for PR comments, from one or more reports. With two or more reports, the first is
the baseline and the last the current run, compared as ``clip-latency compare`` does."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Optional

from . import plots
from .compare import format_table, summary_lines
from .report import header_lines, table

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.bad td{background:#fde8e8}tr.skip td{color:#888}
.meta{font-size:12px;color:#444}img{max-width:100%;border:1px solid #eee;margin:6px 0}
code{background:#f4f4f4;padding:1px 3px}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _f(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _records_table(rep: dict) -> str:
    head = ["artifact", "runtime", "status", "median ms", "p90", "p95", "p99", "min", "max", "mean",
            "std", "trimmed", "n", "cold load s", "warm load s", "first inf ms", "peak RSS MB",
            "max abs", "cos min", "cos mean", "zero-shot", "GFLOP/s", "export max abs"]
    out = ["<table><tr>" + "".join(f'<th class="{"l" if i < 3 else ""}">{_e(h)}</th>'
                                   for i, h in enumerate(head)) + "</tr>"]
    for r in rep["records"]:
        if r["status"] != "ok":
            out.append(f'<tr class="{"skip" if r["status"] == "skipped" else "bad"}"><td class="l">'
                       f'{_e(r["artifact"])}</td><td class="l">{_e(r["runtime"])}</td><td class="l">'
                       f'{_e(r["status"])}</td><td class="l" colspan="{len(head) - 3}">'
                       f'{_e(r.get("reason"))}</td></tr>')
            continue
        s, p = r["steady"]["stats"], r["parity"]
        ep = (r.get("export_parity") or {}).get("max_abs")
        cells = [_f(s["median"]), _f(s["p90"]), _f(s["p95"]), _f(s["p99"]), _f(s["min"]), _f(s["max"]),
                 _f(s["mean"]), _f(s["std"]), _f(s["trimmed_mean"]), str(s["n"]),
                 _f(r["load"]["cold_s"], ".3f"), _f(r["load"]["warm_s"], ".3f"),
                 _f(r["first_inference_ms"], ".1f"), _f(r["memory"]["peak_rss_mb"], ".0f"),
                 _f(p["max_abs"], ".2e"), _f(p["cosine_min"], ".7f"), _f(p["cosine_mean"], ".7f"),
                 f"{p['zero_shot_agreement']:.0%}", _f(r.get("achieved_gflops"), ".1f"), _f(ep, ".2e")]
        out.append(f'<tr><td class="l">{_e(r["artifact"])}</td><td class="l">{_e(r["runtime"])}</td>'
                   f'<td class="l">ok</td>' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _meta(rep: dict) -> str:
    h, s = rep["host"], rep["settings"]
    libs = ", ".join(f"{k} {v}" for k, v in (h.get("libraries") or {}).items() if v)
    cal = rep.get("calibration")
    rows = [("model", rep["bundle"]["model"]), ("bundle", rep["bundle"].get("path")),
            ("source", rep["source"]), ("created", rep["created"]),
            ("host", f"{h.get('device') or h.get('name') or '?'} — {h['os']} {h.get('os_release') or ''} "
                     f"({h.get('machine')})"),
            ("CPU", f"{h.get('cpu_model')} — {h.get('cpu_count_logical')} logical, "
                    f"{h.get('cpu_count_physical')} physical, {h.get('cpu_available')} available"),
            ("load average", f"start {h.get('loadavg_start')}, end {h.get('loadavg_end')}"),
            ("libraries", libs),
            ("settings", f"threads {s['threads']}, warmup {s['warmup']}, runs {s['runs']}, min seconds "
                         f"{s.get('min_seconds', 0)}, work factor {s.get('work_factor', 1)}, runtimes "
                         f"{', '.join(s.get('runtimes') or [])}"),
            ("calibration", f"{cal['name']}: median {cal['median_ms']:.3f} ms, n {cal['stats']['n']}, "
                            f"blocks " + ", ".join(f"{b['at']} {b['median_ms']:.3f} ms"
                                                   for b in cal.get("blocks", [])) if cal else "none")]
    return '<table class="meta">' + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                                            for k, v in rows) + "</table>"


def figures(reports: list, result: Optional[dict] = None) -> dict:
    """{name: PNG bytes}."""
    figs = {"distribution": plots.distribution_png(reports),
            "latency_vs_parity": plots.parity_scatter_png(reports)}
    if result is not None:
        figs["baseline_vs_current"] = plots.comparison_png(result)
    return figs


def build_html(reports: list, result: Optional[dict] = None, png_dir=None) -> str:
    figs = figures(reports, result)
    if png_dir:
        d = Path(png_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, png in figs.items():
            (d / f"{name}.png").write_bytes(png)
    model = ", ".join(sorted({r["bundle"]["model"] for r in reports}))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clipdeploy latency — {_e(model)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>clipdeploy latency — {_e(model)}</h1>",
             f"<p class='meta'>{len(reports)} report(s). Latencies are per steady-state sample, in ms; "
             f"statistics are computed from the raw samples. Parity compares each artifact's embeddings of the "
             f"bundle's probe inputs with the PyTorch reference embeddings stored in the bundle.</p>"]
    if result is not None:
        bad = result["regressions"]
        parts.append("<h2>Baseline vs current</h2>")
        parts.append(f"<p><b>{'REGRESSION: ' + str(len(bad)) + ' record(s)' if bad else 'no regression'}"
                     f"</b> — baseline: {_e(reports[0]['created'])}, current: {_e(reports[-1]['created'])}</p>")
        parts.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in summary_lines(result)) + "</ul>")
        head = ["artifact", "runtime", "baseline ms", "current ms", "ratio", "95% CI", "verdict", "note"]
        rows = ["<table><tr>" + "".join(f"<th class='l'>{h}</th>" for h in head) + "</tr>"]
        for r in result["rows"]:
            ci = "—" if r["ci_low"] is None else f"{r['ci_low']:.3f}–{r['ci_high']:.3f}"
            cls = "bad" if r in bad else ""
            rows.append(f"<tr class='{cls}'>" + "".join(
                f"<td class='l'>{_e(c)}</td>" for c in
                [r["artifact"], r["runtime"], _f(r["baseline_median"]), _f(r["current_median"]),
                 _f(r["ratio"], ".3f"), ci, r["verdict"], r["why"]]) + "</tr>")
        rows.append("</table>")
        parts.append("\n".join(rows))
        parts.append(_img(figs["baseline_vs_current"], "baseline vs current"))
    parts.append("<h2>Latency distribution</h2>" + _img(figs["distribution"], "latency distribution"))
    parts.append("<h2>Latency vs parity</h2>" + _img(figs["latency_vs_parity"], "latency vs parity"))
    for i, rep in enumerate(reports):
        parts.append(f"<h2>Report {i + 1}: {_e(rep['source'])}, {_e(rep['created'])}</h2>")
        parts.append(_meta(rep))
        parts.append(_records_table(rep))
    parts.append("</body></html>")
    return "\n".join(parts)


def build_markdown(reports: list, result: Optional[dict] = None) -> str:
    out = []
    if result is not None:
        bad = result["regressions"]
        out.append(f"### clip-latency: {'❌ ' + str(len(bad)) + ' regression(s)' if bad else '✅ no regression'}")
        out.append("")
        out += [f"- {x}" for x in summary_lines(result)]
        out.append("")
        out.append(format_table(result, markdown=True))
        out.append("")
    for rep in reports[-1:] if result is not None else reports:
        lines = header_lines(rep)
        out.append(f"#### {lines[0]}")
        out += [f"- {x}" for x in lines[1:]]
        out.append("")
        out.append(table(rep, markdown=True))
        out.append("")
    return "\n".join(out)
