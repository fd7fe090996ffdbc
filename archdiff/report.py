"""The self-contained HTML report: for each figure, the paper's statement, our images (embedded),
the measured numbers and whether each claim held."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-top:1px solid #ccc;padding-top:.8em;font-size:1.2em}
.paper{background:#f4f4f8;border-left:4px solid #88a;padding:.5em 1em;font-style:italic}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#eee} .ok{color:#070;font-weight:bold} .no{color:#b00;font-weight:bold}
img{max-width:100%;margin:.4em 0;border:1px solid #ddd} code{background:#f2f2f2}
details{margin:.4em 0}
"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v[:12]) + (", ..." if len(v) > 12 else "") + "]"
    return html.escape(str(v))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are HTML already (escape text before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _claims_table(claims: list[dict]) -> str:
    verdict = {True: "<span class=ok>holds</span>", False: "<span class=no>does not hold</span>"}
    return _table(["claim", "statement", "measured", "threshold", "result"], [
        [f"<code>{html.escape(c['id'])}</code>", html.escape(c["statement"]), _fmt(c["measured"]),
         _fmt(c["threshold"]), verdict[bool(c["holds"])]] for c in claims])


def _metrics_table(metrics: dict) -> str:
    rows = [[html.escape(k), _fmt(v)] for k, v in metrics.items()]
    return f"<details><summary>all measured numbers</summary>{_table(['metric', 'value'], rows)}</details>"


def _contents(records: list[dict]) -> str:
    return _table(["experiment", "what it tests", "claims holding", "run time"], [
        [f"<a href='#{html.escape(r['experiment'])}'>{html.escape(r['experiment'])}</a>",
         html.escape(r["title"]), f"{sum(c['holds'] for c in r['claims'])} of {len(r['claims'])}",
         f"{r['seconds']:.1f} s"] for r in records])


def write_report(records: list[dict], root: Path, summary: dict) -> str:
    """The report's HTML text, with every figure of every record embedded as base64 PNG."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>archdiff report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>archdiff: denoiser architecture and what diffusion models generate</h1>",
             f"<p>Scale <b>{html.escape(summary['scale'])}</b>, seed {summary['seed']}, archdiff "
             f"{html.escape(summary['archdiff_version'])}. Claims holding: "
             f"<b>{summary['claims_holding']} of {summary['claims_total']}</b>. "
             "A claim that does not hold is a finding, not an error.</p>", _contents(records)]
    for r in records:
        run_dir = root / r["experiment"]
        parts.append(f"<h2 id='{html.escape(r['experiment'])}'>{html.escape(r['experiment'])}: "
                     f"{html.escape(r['title'])}</h2>")
        parts.append(f"<p class='paper'>{html.escape(r['paper'])}</p>")
        for name in r.get("figures", []):
            if (run_dir / name).exists():
                parts.append(_img(run_dir / name))
        parts.append(_claims_table(r["claims"]))
        parts.append(f"<p>Run time {r['seconds']:.1f} s on {html.escape(r['device'])}.</p>")
        parts.append(_metrics_table(r["metrics"]))
    parts.append(f"<details><summary>summary.json</summary><pre>"
                 f"{html.escape(json.dumps(summary, indent=2))}</pre></details></body></html>")
    return "\n".join(parts)
