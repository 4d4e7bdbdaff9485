"""Results prose rendered from the recorded numbers, so a notebook's text cannot contradict its run.

    run.md("The CNN reached {acc:.1%} on {n} seeds.", acc=0.925, n=3)     -> Markdown
    claim_sentence(record)      -> "**reproduced** · LATES lowers ECE: mean -0.012 (95% t CI ...)"
    claims_markdown(claims, checks) -> the claims and checks as two markdown tables
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["fmt", "render", "claim_sentence", "claims_markdown", "VERDICT_MARK"]

VERDICT_MARK = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced", "inconclusive": "⚠️ inconclusive"}


def fmt(value: Any, spec: str = "") -> str:
    """A number as text: `spec` if given (Python format spec), else 4 significant digits; lists and
    ranges element-wise; None as an en dash; non-finite floats (and their JSON strings) as nan/inf."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if spec:
            return format(value, spec)
        return str(value) if isinstance(value, int) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(v is None or isinstance(v, (int, float)) for v in value):
            lo, hi = value
            if lo is None:
                return f"≤ {fmt(hi, spec)}"
            if hi is None:
                return f"≥ {fmt(lo, spec)}"
            return f"{fmt(lo, spec)} .. {fmt(hi, spec)}"
        return "[" + ", ".join(fmt(v, spec) for v in value) + "]"
    return format(value, spec) if spec else str(value)


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return fmt(value, format_spec)


def render(template: str, /, **values: Any) -> str:
    """`template.format(**values)` with numbers through `fmt` (4 significant digits unless a spec is
    given). Fields may index into dicts and lists, e.g. ``{acc[mean]:.1%}``."""
    try:
        return _Formatter().format(template, **values)
    except KeyError as err:
        raise KeyError(f"render: no value named {err.args[0]!r}; pass it as a keyword") from None


def _paper(c: Mapping[str, Any]) -> str:
    paper = c.get("paper")
    return "–" if paper is None else fmt(paper)


def claim_sentence(c: Mapping[str, Any]) -> str:
    """One markdown sentence for a recorded claim (a dict as in metrics.json): verdict, statement, the
    values' mean with its interval and n, the rule, and the paper's number."""
    unit = c.get("unit", "seed")
    n = c.get("n", 0)
    if not n:
        return f"**{VERDICT_MARK[c['verdict']]}** · {c['statement']}: {c.get('reason', '')}."
    if c.get("ci"):
        stat = f"mean {fmt(c['mean'])} ({c.get('ci_method', '')} CI {fmt(c['ci'][0])} to {fmt(c['ci'][1])}, n = {n} {unit}s)"
    else:
        stat = f"{fmt(c['mean'])}" + (f" (n = {n})" if n > 1 else "")
    if c.get("p_value") is not None:
        stat += f", p = {fmt(c['p_value'], '.2g')}"
    text = f"**{VERDICT_MARK[c['verdict']]}** · {c['statement']}: {stat}; rule: {c['rule']['text']}"
    if c.get("paper") is not None:
        text += f"; paper: {_paper(c)}"
    if c["verdict"] == "inconclusive":
        text += f". *{c.get('reason', '')}*"
    return text + "."


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_markdown(claims: Sequence[Mapping[str, Any]], checks: Sequence[Mapping[str, Any]] = ()) -> str:
    """The claims table (n, mean, CI, rule, paper, verdict) and, apart, the checks table."""
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICT_MARK}
    lines = [f"**Claims** (tests of the paper): {counts['reproduced']} reproduced, {counts['not reproduced']} "
             f"not reproduced, {counts['inconclusive']} inconclusive.", "",
             "| claim | n | mean | CI | rule | paper | verdict |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        ci = f"{fmt(c['ci'][0])} .. {fmt(c['ci'][1])}" if c.get("ci") else "–"
        verdict = VERDICT_MARK[c["verdict"]] + (f": {c.get('reason', '')}" if c["verdict"] == "inconclusive" else "")
        lines.append("| " + " | ".join(_cell(x) for x in (c["statement"], c.get("n", 0), fmt(c.get("mean")), ci,
                                                            c["rule"]["text"], _paper(c), verdict)) + " |")
    if checks:
        ok = sum(bool(c["ok"]) for c in checks)
        lines += ["", f"**Checks** (identities of correct code, not reproductions): {ok} of {len(checks)} hold.", "",
                  "| check | value | expected | holds |", "|---|---|---|---|"]
        for c in checks:
            exp = fmt(c.get("expected")) if c.get("expected") is not None else "–"
            lines.append("| " + " | ".join(_cell(x) for x in (c["statement"], fmt(c.get("value")), exp,
                                                                "yes" if c["ok"] else "**FAILED**")) + " |")
    return "\n".join(lines)
