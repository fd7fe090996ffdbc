"""The self-contained HTML report: for each figure, the paper's statement, our images (embedded),
the measured numbers and whether each claim held."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from archdiff.plots import PAGE_PX

STYLE = """
body{font-family:system-ui,sans-serif;max-width:PAGE_PXpx;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-top:1px solid #ccc;padding-top:.8em;font-size:1.2em}
.paper{background:#f4f4f8;border-left:4px solid #88a;padding:.5em 1em;font-style:italic}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#eee} .ok{color:#070;font-weight:bold} .no{color:#b00;font-weight:bold}
img{max-width:100%;margin:.4em 0;border:1px solid #ddd} code{background:#f2f2f2}
details{margin:.4em 0} .about{color:#444;font-size:.9em}
""".replace("PAGE_PX", str(PAGE_PX))  # figures are drawn at most PAGE_PX wide: shown at their own size


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


def _result_table(t: dict) -> str:
    """An experiment's table of measured numbers, under its caption."""
    rows = [[_fmt(cell) for cell in row] for row in t["rows"]]
    return f"<p>{html.escape(t['caption'])}</p>" + _table([html.escape(h) for h in t["headers"]], rows)


def _holds_when(comparison: str, thresholds: list[float]) -> str:
    """The condition a claim holds under, e.g. '&le; 0.5'."""
    sign = {"<=": "&le;", ">=": "&ge;"}.get(comparison, html.escape(comparison))
    return f"{sign} " + ", ".join(_fmt(t) for t in thresholds)


def _claims_table(claims: list[dict]) -> str:
    verdict = {True: "<span class=ok>holds</span>", False: "<span class=no>does not hold</span>"}
    return _table(["claim", "statement", "measured", "holds when measured", "result"], [
        [f"<code>{html.escape(c['id'])}</code>", html.escape(c["statement"]), _fmt(c["measured"]),
         _holds_when(c["comparison"], [c["threshold"]]), verdict[bool(c["holds"])]] for c in claims])


def _metrics_table(metrics: dict) -> str:
    rows = [[html.escape(k), _fmt(v)] for k, v in metrics.items()]
    return f"<details><summary>all measured numbers</summary>{_table(['metric', 'value'], rows)}</details>"


def _about(r: dict) -> str:
    """One line per experiment: which data, scale, seed(s), device and time, so a reader knows whether a
    figure is the miniature or the paper's scale."""
    d = r.get("data", {})
    shape = "x".join(map(str, d.get("data_shape", []))) or "?"
    n = d.get("n_train", "?")
    source = html.escape(str(d.get("data_source", "?")))
    data = f"{source}, {n} training item{'' if n == 1 else 's'} of shape {shape}"
    seeds = r.get("seeds", [r.get("seed")])
    seconds = r["seconds"] if isinstance(r["seconds"], list) else [r["seconds"]]
    return (f"<p class='about'>Training data: {data}; scale <b>{html.escape(r['scale'])}</b>; "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; "
            f"{html.escape(str(r.get('device', '?')))}, {r.get('threads', '?')} CPU "
            f"thread{'' if r.get('threads') == 1 else 's'}; "
            f"run time {', '.join(f'{t:.1f}' for t in seconds)} s.{_changed(r.get('overrides'))}</p>")


def _changed(overrides: dict | None) -> str:
    """The settings a run changed from its scale's defaults, for the header line."""
    if not overrides:
        return ""
    items = ", ".join(f"{html.escape(str(k))} = {html.escape(repr(v))}" for k, v in overrides.items())
    return f" <b>Settings changed</b>: {items}."


def _contents(rows: list[tuple[str, str, str, str]]) -> str:
    return _table(["experiment", "what it tests", "claims", "run time"], [
        [f"<a href='#{html.escape(i)}'>{html.escape(i)}</a>", html.escape(title), verdict, time]
        for i, title, verdict, time in rows])


def _page(title: str, intro: str, contents: str, sections: list[str], summary: dict) -> str:
    return "\n".join([
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        "<h1>archdiff: denoiser architecture and what diffusion models generate</h1>", intro, contents,
        *sections,
        f"<details><summary>summary.json</summary><pre>{html.escape(json.dumps(summary, indent=2))}</pre>"
        "</details></body></html>"])


def _section(r: dict, run_dir: Path, claims_html: str, metrics: dict, note: str = "") -> str:
    parts = [f"<h2 id='{html.escape(r['experiment'])}'>{html.escape(r['experiment'])}: "
             f"{html.escape(r['title'])}</h2>", f"<p class='paper'>{html.escape(r['paper'])}</p>", _about(r)]
    if note:
        parts.append(f"<p>{note}</p>")
    parts += [_img(run_dir / name) for name in r.get("figures", []) if (run_dir / name).exists()]
    parts += [_result_table(t) for t in r.get("tables", [])]
    parts += [claims_html, _metrics_table(metrics)]
    return "\n".join(parts)


def write_report(records: list[dict], root: Path, summary: dict) -> str:
    """One seed's report: every figure of every record embedded as base64 PNG, claims and numbers."""
    intro = (f"<p>Scale <b>{html.escape(summary['scale'])}</b>, seed {summary['seed']}, archdiff "
             f"{html.escape(summary['archdiff_version'])}. Claims holding: "
             f"<b>{summary['claims_holding']} of {summary['claims_total']}</b>. "
             "A claim that does not hold is a finding, not an error.</p>")
    rows = [(r["experiment"], r["title"], f"{sum(c['holds'] for c in r['claims'])} of {len(r['claims'])}",
             f"{r['seconds']:.1f} s") for r in records]
    sections = [_section(r, root / r["experiment"], _claims_table(r["claims"]), r["metrics"])
                for r in records]
    return _page("archdiff report", intro, _contents(rows), sections, summary)


def _seeds_claims_table(claims: list[dict], seeds: list[int]) -> str:
    verdict = {True: "<span class=ok>reproduced</span>", False: "<span class=no>not reproduced</span>"}
    heads = ["claim", "statement", *[f"seed {s}" for s in seeds], "mean &plusmn; SD", "holds when measured",
             "holds in", "result"]
    rows = []
    for c in claims:
        cells = ["not made &#10007;" if v is None else f"{_fmt(v)} {'' if h else '&#10007;'}"
                 for v, h in zip(c["measured"], c["holds"])]
        thresholds = {t for t in c["threshold"] if t is not None}
        rows.append([f"<code>{html.escape(c['id'])}</code>", html.escape(c["statement"]), *cells,
                     f"{_fmt(c['mean'])} &plusmn; {_fmt(c['sd'])}",
                     _holds_when(c["comparison"], sorted(thresholds)),
                     f"{c['holds_in']} of {c['of']}", verdict[c["reproduced"]]])
    return _table(heads, rows)


def write_seeds_report(per_seed: dict[int, list[dict]], root: Path, summary: dict) -> str:
    """The report over seeds: each claim's value in every seed and whether it holds in all of them; the
    figures and numbers of the first seed."""
    seeds = summary["seeds"]
    first = seeds[0]
    intro = (f"<p>Scale <b>{html.escape(summary['scale'])}</b>, seeds {', '.join(map(str, seeds))}, archdiff "
             f"{html.escape(summary['archdiff_version'])}. Claims reproduced (holding in every seed): "
             f"<b>{summary['claims_reproduced']} of {summary['claims_total']}</b>. A claim that fails in "
             f"any seed is not reproduced; ✗ marks the failing seeds. Each seed's own report is in "
             f"<code>seed-N/report.html</code>.</p>")
    rows, sections = [], []
    for agg, r in zip(summary["experiments"], per_seed[first]):
        ok = sum(c["reproduced"] for c in agg["claims"])
        rows.append((agg["experiment"], agg["title"], f"{ok} of {len(agg['claims'])} reproduced",
                     f"{sum(agg['seconds']):.1f} s in all"))
        about = {**r, "seeds": seeds, "seconds": agg["seconds"]}
        sections.append(_section(about, root / f"seed-{first}" / r["experiment"],
                                 _seeds_claims_table(agg["claims"], seeds), r["metrics"],
                                 note=f"Figures and the numbers below: seed {first}."))
    return _page("archdiff report over seeds", intro, _contents(rows), sections, summary)
