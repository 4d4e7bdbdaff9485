"""The run's index.html: one self-contained page (inline CSS, no scripts, no server) with every
notebook's status, runtime and memory; every claim (n, mean, CI, a strip of the seed values, the
paper's number, the verdict) and, apart, every check."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .prose import fmt

__all__ = ["write_index", "format_value", "seed_strip", "verdict_counts"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0 2rem;table-layout:fixed} table.claims col.nb{width:12%} table.claims col.st{width:38%} table.claims col.n{width:4%} table.claims col.me{width:11%}
table.claims col.sp{width:14%} table.claims col.pa{width:9%} table.claims col.re{width:12%}
table.checks col.nb{width:15%} table.checks col.st{width:50%} table.checks col.me{width:12%} table.checks col.ex{width:13%} table.checks col.re{width:10%} th,td{border-bottom:1px solid #ddd;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f6;font-weight:600} td{overflow-wrap:break-word} td.num{font-variant-numeric:tabular-nums}
.ok{color:#17703a;font-weight:600} .no{color:#b3261e;font-weight:600} .fail{background:#fdecea}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.7rem;font-size:.85rem}
.badge.ok{background:#e3f4e8} .badge.no{background:#fdecea} .badge.inc{background:#fff4d6;color:#8a6d00;font-weight:600} .badge.nr{background:#eceff1;color:#555;font-weight:600} .err{font-family:monospace;font-size:.85rem;color:#b3261e;white-space:pre-wrap}
.src{color:#666;font-size:.85rem} .counts{font-size:1.1rem}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem;margin:.5rem 0 1.5rem} .gallery a{display:block;border:1px solid #ddd;border-radius:4px;padding:4px;background:#fff}
.gallery img{height:170px;max-width:360px;object-fit:contain;display:block} .gallery span{display:block;font-size:.8rem;color:#555;text-align:center}
"""


def format_value(value: Any) -> str:
    """A compact human rendering of a recorded value (floats to 4 significant digits, ranges as
    lo .. hi, long lists cut after 8 items, dicts as key: value)."""
    if isinstance(value, list) and len(value) > 8:
        return fmt(value[:8])[:-1] + ", …]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in list(value.items())[:6])
    return fmt(value)


def seed_strip(c: dict[str, Any], width: int = 150, height: int = 28) -> str:
    """An inline SVG of a claim's per-seed values (dots), their CI (bar) and the rule's threshold or
    range (red line or grey band): the reader sees the spread that the verdict rests on."""
    vals = [v for v in c.get("values", []) if isinstance(v, (int, float))]
    if not vals:
        return ""
    rule = c.get("rule", {})
    marks = [rule.get(k) for k in ("threshold", "low", "high") if isinstance(rule.get(k), (int, float))]
    ci = c.get("ci") or []
    span = vals + marks + [v for v in ci if isinstance(v, (int, float))]
    lo, hi = min(span), max(span)
    pad = (hi - lo) * 0.08 or max(abs(hi), 1.0) * 0.05
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return round(4 + (width - 8) * (v - lo) / (hi - lo), 1)

    mid = height / 2
    parts = [f"<svg class='strip' width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"]
    if rule.get("direction") == "within":
        a = x(rule["low"]) if rule.get("low") is not None else 0
        b = x(rule["high"]) if rule.get("high") is not None else width
        parts.append(f"<rect x='{a}' y='2' width='{max(b - a, 1)}' height='{height - 4}' fill='#e4e4ea'/>")
    elif rule.get("threshold") is not None:
        t = x(rule["threshold"])
        parts.append(f"<line x1='{t}' x2='{t}' y1='2' y2='{height - 2}' stroke='#b3261e' stroke-width='1.5'/>")
    if len(ci) == 2:
        parts.append(f"<line x1='{x(ci[0])}' x2='{x(ci[1])}' y1='{mid}' y2='{mid}' stroke='#333' stroke-width='2'/>")
    color = {"reproduced": "#17703a", "not reproduced": "#b3261e"}.get(c.get("verdict"), "#8a6d00")
    for v in vals:
        parts.append(f"<circle cx='{x(v)}' cy='{mid}' r='3.2' fill='{color}' fill-opacity='0.75'/>")
    parts.append("</svg>")
    return "".join(parts)


_BADGE = {"reproduced": "ok", "not reproduced": "no", "inconclusive": "inc", "not run": "nr"}


def _notebook_link(result: dict[str, Any]) -> str:
    """The notebook's name (breakable after underscores), linked to its HTML when there is one."""
    name = html.escape(result["notebook"]).replace("_", "_<wbr>")
    return f"<a href='{html.escape(result['html'])}'>{name}</a>" if result.get("html") else name


def _claim_rows(claims: list[tuple[dict, dict]]) -> list[str]:
    e = html.escape
    rows = []
    for r, c in claims:
        verdict = c.get("verdict", "reproduced" if c.get("reproduced") else "not reproduced")
        extra = [f"rule: {c['rule']['text']}"] if c.get("rule") else []
        extra += [f"paper: {c['source']}"] if c.get("source") else []
        extra += [f"precondition: {p['statement']} ({'holds' if p['holds'] else 'FAILS'}: {fmt(p['measured'])})"
                  for p in c.get("preconditions", [])]
        extra += [c["note"]] if c.get("note") else []
        if verdict in ("inconclusive", "not run") and c.get("reason") and not c["reason"].startswith("precondition"):
            extra.append(c["reason"])  # a failed precondition is already shown, with its values, above
        details = "".join(f"<div class='src'>{e(t)}</div>" for t in extra)
        ci = f"<div class='src'>CI {e(fmt(c['ci'][0]))} .. {e(fmt(c['ci'][1]))}</div>" if c.get("ci") else ""
        p = f"<div class='src'>p = {e(fmt(c['p_value'], '.2g'))}</div>" if c.get("p_value") is not None else ""
        rows.append(
            f"<tr><td>{_notebook_link(r)}</td><td>{e(c['statement'])}{details}</td><td class='num'>{c.get('n', '')}</td>"
            f"<td class='num'>{e(fmt(c.get('mean')))}{ci}{p}</td><td>{seed_strip(c)}</td>"
            f"<td class='num'>{e(format_value(c.get('paper')))}</td>"
            f"<td><span class='badge {_BADGE[verdict]}'>{e(verdict)}</span></td></tr>")
    return rows


def _check_rows(checks: list[tuple[dict, dict]]) -> list[str]:
    e = html.escape
    return [f"<tr class='{'' if c['ok'] else 'fail'}'><td>{_notebook_link(r)}</td><td>{e(c['statement'])}"
            + (f"<div class='src'>{e(c['note'])}</div>" if c.get("note") else "")
            + f"</td><td class='num'>{e(format_value(c.get('value')))}</td>"
            f"<td class='num'>{e(format_value(c.get('expected')))}</td>"
            f"<td><span class='badge {'ok' if c['ok'] else 'no'}'>{'holds' if c['ok'] else 'FAILED'}</span></td></tr>"
            for r, c in checks]


def verdict_counts(notebooks: list[dict[str, Any]]) -> dict[str, int]:
    """How many claims of the run got each verdict, plus checks held/failed."""
    claims = [c for r in notebooks for c in r.get("claims", [])]
    checks = [c for r in notebooks for c in r.get("checks", [])]
    out = {v: sum(c.get("verdict") == v for c in claims) for v in _BADGE}
    out["claims"] = len(claims)
    out["checks"] = len(checks)
    out["checks_failed"] = sum(not c["ok"] for c in checks)
    return out


def write_index(summary: dict[str, Any], path: Path) -> None:
    """Render `summary` (as in summary.json) to the HTML file at `path`."""
    e = html.escape
    nbs = summary.get("notebooks", [])
    claims = [(r, c) for r in nbs for c in r.get("claims", [])]
    checks = [(r, c) for r in nbs for c in r.get("checks", [])]
    k = verdict_counts(nbs)
    status = summary.get("status", "running")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>shammie report: {e(summary.get('run', ''))}</title><style>{_CSS}</style></head><body>",
        "<h1>shammie: what reproduced</h1>",
        f"<p class='sub'>run {e(summary.get('run', ''))} · profile <b>{e(summary.get('profile', ''))}</b> · "
        f"started {e(summary.get('started', ''))} · {summary.get('elapsed_s', 0):.0f} s · status "
        f"<span class='{'ok' if status == 'ok' else 'no'}'>{e(status)}</span></p>",
        f"<p class='counts'>Of <b>{k['claims']}</b> claims of the papers tested across {len(nbs)} notebook(s): "
        f"<b>{k['reproduced']}</b> reproduced, <b>{k['not reproduced']}</b> not reproduced, "
        f"<b>{k['inconclusive']}</b> inconclusive"
        + (f", <b>{k['not run']}</b> not run (notebook failed)" if k["not run"] else "") + ". Checks (identities of correct code, not counted as "
        f"reproductions): <b>{k['checks'] - k['checks_failed']}</b> of <b>{k['checks']}</b> hold.</p>",
        "<p class='src'>A claim is judged over seeds (or pairs) by a rule fixed before the run; the strip shows "
        "each seed (dots), the confidence interval (bar) and the rule's threshold (red line) or range (grey).</p>",
        "<h2>Claims</h2><table class='claims'><colgroup><col class='nb'><col class='st'><col class='n'><col class='me'>"
        "<col class='sp'><col class='pa'><col class='re'></colgroup>"
        "<tr><th>notebook</th><th>claim</th><th>n</th><th>mean</th><th>seeds</th><th>paper</th><th>verdict</th></tr>",
    ]
    parts += _claim_rows(claims) or ["<tr><td colspan='7'>No claims recorded.</td></tr>"]
    parts.append("</table><h2>Checks</h2><table class='checks'><colgroup><col class='nb'><col class='st'>"
                 "<col class='me'><col class='ex'><col class='re'></colgroup>"
                 "<tr><th>notebook</th><th>check</th><th>value</th><th>expected</th><th>holds</th></tr>")
    parts += _check_rows(checks) or ["<tr><td colspan='5'>No checks recorded.</td></tr>"]
    parts.append("</table><h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>runtime</th>"
                 "<th>peak memory</th><th>claims reproduced</th><th>checks</th><th>parameters</th></tr>")
    for r in nbs:
        link = _notebook_link(r)
        ok = r["status"] == "ok"
        err = f"<div class='err'>{e(r['error'])}</div>" if r.get("error") else ""
        mem = f"{r['peak_memory_mb']:.0f} MiB" if r.get("peak_memory_mb") else "–"
        rk = verdict_counts([r])
        params = ", ".join(f"{k}={v!r}" for k, v in r.get("parameters", {}).items() if k != "out_dir")
        parts.append(
            f"<tr class='{'' if ok else 'fail'}'><td>{link}</td><td><span class='{'ok' if ok else 'no'}'>{e(r['status'])}</span>{err}</td>"
            f"<td class='num'>{r.get('runtime_s', 0):.0f} s</td><td class='num'>{mem}</td>"
            f"<td class='num'>{rk['reproduced']}/{rk['claims']}</td>"
            f"<td class='num'>{rk['checks'] - rk['checks_failed']}/{rk['checks']}</td><td class='src'>{e(params)}</td></tr>"
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
                parts.append(f"<a href='{e(fig)}'><img src='{e(fig)}' alt='{e(name)}'><span>{e(name)}</span></a>")
            parts.append("</div>")
    parts.append("<p class='src'>Each notebook's folder holds the executed notebook, its HTML, its figures "
                 "(PNG), metrics.json and run_info.json; summary.json holds this page's data.</p></body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
