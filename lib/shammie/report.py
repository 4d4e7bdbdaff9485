"""The run's index.html: one self-contained page (inline CSS, no scripts, no server) with every
notebook's status, runtime and memory, and every claim: statement, measured, expected, reproduced."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["write_index", "format_value"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0 2rem;table-layout:fixed} table.claims col.nb{width:15%} table.claims col.st{width:45%}
table.claims col.me{width:16%} table.claims col.ex{width:14%} table.claims col.re{width:10%} th,td{border-bottom:1px solid #ddd;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f6;font-weight:600} td{overflow-wrap:break-word} td.num{font-variant-numeric:tabular-nums}
.ok{color:#17703a;font-weight:600} .no{color:#b3261e;font-weight:600} .fail{background:#fdecea}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.7rem;font-size:.85rem}
.badge.ok{background:#e3f4e8} .badge.no{background:#fdecea} .err{font-family:monospace;font-size:.85rem;color:#b3261e;white-space:pre-wrap}
.src{color:#666;font-size:.85rem} .counts{font-size:1.1rem}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem;margin:.5rem 0 1.5rem} .gallery a{display:block;border:1px solid #ddd;border-radius:4px;padding:4px;background:#fff}
.gallery img{height:170px;max-width:360px;object-fit:contain;display:block} .gallery span{display:block;font-size:.8rem;color:#555;text-align:center}
"""


def format_value(value: Any) -> str:
    """A compact human rendering of a recorded value (floats to 4 significant digits, ranges as lo .. hi)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) == 2 and all(v is None or isinstance(v, (int, float)) for v in value):
        lo, hi = value
        if lo is None:
            return f"≤ {format_value(hi)}"
        if hi is None:
            return f"≥ {format_value(lo)}"
        return f"{format_value(lo)} .. {format_value(hi)}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value[:8]) + (", …" if len(value) > 8 else "") + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in list(value.items())[:6])
    return str(value)


def _notebook_link(result: dict[str, Any]) -> str:
    """The notebook's name (breakable after underscores), linked to its HTML when there is one."""
    name = html.escape(result["notebook"]).replace("_", "_<wbr>")
    return f"<a href='{html.escape(result['html'])}'>{name}</a>" if result.get("html") else name


def write_index(summary: dict[str, Any], path: Path) -> None:
    """Render `summary` (as in summary.json) to the HTML file at `path`."""
    e = html.escape
    nbs = summary.get("notebooks", [])
    claims = [(r, c) for r in nbs for c in r.get("claims", [])]
    n_ok = sum(c["reproduced"] for _, c in claims)
    status = summary.get("status", "running")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>shammie report: {e(summary.get('run', ''))}</title><style>{_CSS}</style></head><body>",
        "<h1>shammie: what reproduced</h1>",
        f"<p class='sub'>run {e(summary.get('run', ''))} · profile <b>{e(summary.get('profile', ''))}</b> · "
        f"started {e(summary.get('started', ''))} · {summary.get('elapsed_s', 0):.0f} s · status "
        f"<span class='{'ok' if status == 'ok' else 'no'}'>{e(status)}</span></p>",
        f"<p class='counts'><b>{n_ok}</b> of <b>{len(claims)}</b> claims reproduced at this scale "
        f"across {len(nbs)} notebook(s). A claim that did not reproduce is shown as such, with its number.</p>",
        "<h2>Claims</h2><table class='claims'><colgroup><col class='nb'><col class='st'><col class='me'><col class='ex'><col class='re'></colgroup>"
        "<tr><th>notebook</th><th>claim</th><th>measured</th><th>expected</th><th>reproduced</th></tr>",
    ]
    for r, c in claims:
        link = _notebook_link(r)
        ok = c["reproduced"]
        src = f"<div class='src'>{e(c.get('source', ''))}</div>" if c.get("source") else ""
        note = f"<div class='src'>{e(c.get('note', ''))}</div>" if c.get("note") else ""
        parts.append(
            f"<tr><td>{link}</td><td>{e(c['statement'])}{src}{note}</td><td class='num'>{e(format_value(c['measured']))}</td>"
            f"<td class='num'>{e(format_value(c['expected']))}</td>"
            f"<td><span class='badge {'ok' if ok else 'no'}'>{'yes' if ok else 'no'}</span></td></tr>"
        )
    if not claims:
        parts.append("<tr><td colspan='5'>No claims recorded.</td></tr>")
    parts.append("</table><h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>runtime</th>"
                 "<th>peak memory</th><th>claims</th><th>parameters</th></tr>")
    for r in nbs:
        link = _notebook_link(r)
        ok = r["status"] == "ok"
        err = f"<div class='err'>{e(r['error'])}</div>" if r.get("error") else ""
        mem = f"{r['peak_memory_mb']:.0f} MiB" if r.get("peak_memory_mb") else "–"
        rc = r.get("claims", [])
        params = ", ".join(f"{k}={v!r}" for k, v in r.get("parameters", {}).items() if k != "out_dir")
        parts.append(
            f"<tr class='{'' if ok else 'fail'}'><td>{link}</td><td><span class='{'ok' if ok else 'no'}'>{e(r['status'])}</span>{err}</td>"
            f"<td class='num'>{r.get('runtime_s', 0):.0f} s</td><td class='num'>{mem}</td>"
            f"<td class='num'>{sum(c['reproduced'] for c in rc)}/{len(rc)}</td><td class='src'>{e(params)}</td></tr>"
        )
    parts.append("</table>")
    if any(r.get("figures") for r in nbs):
        parts.append("<h2>Figures</h2>")
        for r in nbs:
            if not r.get("figures"):
                continue
            parts.append(f"<h3>{e(r['notebook'])}</h3><div class='gallery'>")
            for fig in r["figures"]:
                name = Path(fig).stem.replace("_", " ")
                parts.append(f"<a href='{e(fig)}'><img src='{e(fig)}' alt='{e(name)}' loading='lazy'><span>{e(name)}</span></a>")
            parts.append("</div>")
    parts.append("<p class='src'>Each notebook's folder holds the executed notebook, its HTML, its figures "
                 "(PNG), metrics.json and run_info.json; summary.json holds this page's data.</p></body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
