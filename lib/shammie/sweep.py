"""Sweeps: one notebook over a grid of parameters, and its claims over seeds.

    python -m shammie sweep 02 -p seed=0..4 -p width=32,128,512 [--profile P] [--jobs N | --scheduler ADDR]

Every grid cell is validated like a `run` (every value against the notebook's parameters) before
anything starts; the cells run as tasks (see `shammie.distributed`) into
`<out>/sweeps/<time>-<notebook>-<profile>/`, one folder per cell. The sweep report (index.html,
sweep.json) shows each cell's metrics and claims, and per claim and per setting of the other
parameters, across seeds: how many cells reproduced it (k of n), the mean of its measured value
(each cell's claim mean) with a 95% t interval, and a figure of each claim's value over the grid.
"""

from __future__ import annotations

import html
import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import ShammieError
from .notebooks import find_notebooks, parse_assignment

__all__ = ["parse_axis", "SweepPlan", "plan_sweep", "execute_sweep", "aggregate", "write_sweep_report", "cmd_sweep"]

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
MAX_CELLS = 1000


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """`seed=0..4` (integers, both ends included), `width=32,128,512`, or one value (Python literals,
    else strings); a bracketed value (`widths=[32, 64]`) is one value."""
    if "=" not in text:
        raise ShammieError(f"-p expects name=values, got {text!r}")
    name, raw = text.split("=", 1)
    name = parse_assignment(f"{name}=0")[0]  # checks the name
    raw = raw.strip()
    m = _RANGE.match(raw)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise ShammieError(f"-p {text!r}: the range {lo}..{hi} is empty (write low..high)")
        return name, list(range(lo, hi + 1))
    if raw[:1] in "[({" or "," not in raw:
        return name, [parse_assignment(f"{name}={raw}")[1]]
    parts = [p.strip() for p in raw.split(",")]
    if any(not p for p in parts):
        raise ShammieError(f"-p {text!r}: an empty value in the list")
    values = [parse_assignment(f"{name}={p}")[1] for p in parts]
    if len({repr(v) for v in values}) < len(values):
        raise ShammieError(f"-p {text!r}: a value is repeated")
    return name, values


def _label(i: int, cell: dict[str, Any]) -> str:
    text = "-".join(f"{k}={v}" for k, v in cell.items())
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", f"c{i:03d}-{text}" if text else f"c{i:03d}")[:120]


@dataclass
class SweepPlan:
    """A validated grid: the notebook, the axes, and each cell's parameters."""

    notebook: Path
    profile: str
    grid: dict[str, list[Any]]
    cells: list[dict[str, Any]]  # the grid values of each cell
    labels: list[str]
    parameters: list[dict[str, Any]]  # what each cell's notebook gets (validated, out_dir set)
    out_root: Path
    sweep_dir: Path
    cell_timeout: int
    over: str = "seed"
    extra: dict[str, Any] = field(default_factory=dict)


def _resolve_notebook(arg: str, notebooks_dir: Path | None) -> Path:
    from .runner import _select

    path = Path(arg)
    if path.suffix == ".ipynb" and path.exists():
        arg = path.stem
    everything = find_notebooks(notebooks_dir)
    chosen = _select(everything, arg)
    if len(chosen) != 1:
        raise ShammieError(f"sweep runs one notebook; {arg!r} matches {len(chosen)}: "
                           f"{', '.join(nb.stem for nb in chosen)}")
    return chosen[0]


def plan_sweep(notebook: str, axes: list[str], profile: str = "quick", out: str | Path | None = None,
               notebooks_dir: Path | None = None, cell_timeout: int | None = None, over: str = "seed") -> SweepPlan:
    """Parse and validate the grid (each cell as `run` would validate it); raises ShammieError with
    the fix before anything runs."""
    from .runner import plan_run

    nb = _resolve_notebook(notebook, notebooks_dir)
    grid: dict[str, list[Any]] = {}
    for text in axes:
        name, values = parse_axis(text)
        if name in grid:
            raise ShammieError(f"-p {name} is given twice: list its values once, e.g. {name}=1,2,3")
        grid[name] = values
    if not grid:
        raise ShammieError("a sweep needs at least one axis, e.g. -p seed=0..2")
    cells = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if len(cells) > MAX_CELLS:
        raise ShammieError(f"the grid has {len(cells)} cells; at most {MAX_CELLS}")
    parameters, plan = [], None
    for cell in cells:
        plan = plan_run(profile, only=nb.stem, out=out, overrides=cell, notebooks_dir=notebooks_dir,
                        cell_timeout=cell_timeout)
        if len(plan.notebooks) != 1:  # a stem that is also a prefix of another notebook's name
            plan.parameters = {nb.stem: plan.parameters[nb.stem]}
        parameters.append(dict(plan.parameters[nb.stem]))
    assert plan is not None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_dir = plan.out_root / "sweeps" / f"{stamp}-{nb.stem}-{profile}"
    labels = [_label(i, cell) for i, cell in enumerate(cells)]
    for p, label in zip(parameters, labels):
        p["out_dir"] = str(sweep_dir / label)
    return SweepPlan(nb, profile, grid, cells, labels, parameters, plan.out_root, sweep_dir, plan.cell_timeout, over)


# -- aggregation -------------------------------------------------------------------------------

def _group_label(group: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in group) or "all cells"


def aggregate(cells: list[dict[str, Any]], over: str = "seed", level: float = 0.95) -> list[dict[str, Any]]:
    """Per claim and per setting of the parameters other than `over`: across the cells (seeds), the
    count reproduced (k of n judged), the mean of the claim's measured value (each cell's claim
    mean) and its two-sided t interval at `level` (None with fewer than two values).

    `cells`: results as in sweep.json, each with "cell" (its grid values) and "claims"."""
    from . import stats

    groups: dict[tuple, list[dict[str, Any]]] = {}
    names: dict[str, dict[str, Any]] = {}
    for r in cells:
        key = tuple((k, v) for k, v in r.get("cell", {}).items() if k != over)
        groups.setdefault(key, []).append(r)
        for c in r.get("claims", []):
            names.setdefault(c["name"], c)
    out = []
    for name, first in names.items():
        for key, members in groups.items():
            seeds, judged, not_run = [], [], 0
            for r in members:
                c = next((c for c in r.get("claims", []) if c["name"] == name), None)
                if c is None or c.get("verdict") in (None, "not run"):
                    not_run += 1
                    continue
                judged.append(c)
                seeds.append({over: r.get("cell", {}).get(over), "mean": c.get("mean"), "verdict": c["verdict"]})
            values = [s["mean"] for s in seeds if isinstance(s["mean"], (int, float))]
            ci = list(stats.t_interval(values, level)) if len(values) >= 2 else None
            out.append({
                "claim": name, "statement": first.get("statement", ""), "rule": first.get("rule", {}),
                "paper": first.get("paper"), "group": dict(key), "group_label": _group_label(key),
                "k": sum(c["verdict"] == "reproduced" for c in judged), "n": len(judged),
                "inconclusive": sum(c["verdict"] == "inconclusive" for c in judged), "not_run": not_run,
                "mean": sum(values) / len(values) if values else None, "ci": ci, "level": level, "seeds": seeds,
            })
    return out


# -- report --------------------------------------------------------------------------------------

def plot_sweep(rows: list[dict[str, Any]], path: Path, over: str = "seed") -> Path | None:
    """One panel per claim: each cell's measured value (dots) per setting of the other parameters,
    the mean and its 95% interval (bar), and the rule's threshold (red line) or range (grey)."""
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    claims = list(dict.fromkeys(r["claim"] for r in rows))
    ncols = min(3, len(claims))
    nrows = -(-len(claims) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.3 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(claims):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mine = [r for r in rows if r["claim"] == name]
        for x, r in enumerate(mine):
            ys = [s["mean"] for s in r["seeds"] if isinstance(s["mean"], (int, float))]
            colors = ["#17703a" if s["verdict"] == "reproduced" else "#b3261e" if s["verdict"] == "not reproduced"
                      else "#8a6d00" for s in r["seeds"] if isinstance(s["mean"], (int, float))]
            ax.scatter([x] * len(ys), ys, c=colors, s=22, alpha=0.8, zorder=3)
            if r["mean"] is not None:
                lo, hi = r["ci"] if r["ci"] else (r["mean"], r["mean"])
                ax.errorbar([x + 0.15], [r["mean"]], yerr=[[r["mean"] - lo], [hi - r["mean"]]], fmt="o", color="#222",
                            capsize=4, ms=4, zorder=4)
        rule = mine[0]["rule"] or {}
        if rule.get("direction") == "within":
            ax.axhspan(rule.get("low", ax.get_ylim()[0]) if rule.get("low") is not None else ax.get_ylim()[0],
                       rule.get("high") if rule.get("high") is not None else ax.get_ylim()[1],
                       color="#e4e4ea", zorder=1)
        elif rule.get("threshold") is not None:
            ax.axhline(rule["threshold"], color="#b3261e", lw=1.2, zorder=2)
        ax.set_xticks(range(len(mine)), [r["group_label"] for r in mine], rotation=20 if len(mine) > 3 else 0,
                      fontsize=8)
        ks = ", ".join(f"{r['k']}/{r['n']}" for r in mine)
        ax.set_title(f"{name}\nreproduced over {over}s: {ks}", fontsize=9)
        ax.set_ylabel("measured value", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"each claim's measured value: dots one per {over} (green reproduced, red not, amber inconclusive); "
                 "black the mean and its 95% t interval; red line or grey band the rule", fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def write_sweep_report(summary: dict[str, Any], path: Path, figure: str | None = None) -> None:
    """The sweep's index.html: claims over seeds per setting, then every grid cell."""
    from .prose import fmt
    from .report import _CSS, format_value, seed_strip, verdict_counts

    e = html.escape
    over = summary.get("over", "seed")
    rows = summary.get("aggregate", [])
    cells = summary.get("notebooks", [])
    grid = ", ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in summary.get("grid", {}).items())
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>shammie sweep: {e(summary.get('notebook', ''))}</title><style>{_CSS}</style></head><body>",
        f"<h1>shammie sweep: {e(summary.get('notebook', ''))}</h1>",
        f"<p class='sub'>{e(summary.get('sweep', ''))} · profile <b>{e(summary.get('profile', ''))}</b> · "
        f"{len(cells)} cell(s): {e(grid)} · {summary.get('elapsed_s', 0):.0f} s · "
        f"{e(summary.get('workers', ''))} · status <span class='{'ok' if summary.get('status') == 'ok' else 'no'}'>"
        f"{e(summary.get('status', 'running'))}</span></p>",
        f"<h2>Claims over {e(over)}s</h2>",
        f"<p class='src'>Per claim and per setting of the other parameters: how many {e(over)}s reproduced it "
        "(k of n judged), the mean of its measured value over them and the 95% t interval of that mean; the strip "
        f"shows each {e(over)}'s value (dots), the interval (bar) and the rule's threshold (red) or range (grey).</p>",
    ]
    if figure:
        parts.append(f"<div class='gallery'><a href='{e(figure)}'><img src='{e(figure)}' alt='claims over the grid' "
                     "style='height:auto;max-width:100%'></a></div>")
    parts.append("<table class='claims'><tr><th>claim</th><th>setting</th><th>reproduced</th><th>mean</th>"
                 f"<th>{e(over)}s</th><th>paper</th></tr>")
    for r in rows:
        verdict = "reproduced" if r["n"] and r["k"] == r["n"] else "not reproduced" if r["k"] == 0 else "inconclusive"
        strip = seed_strip({"values": [s["mean"] for s in r["seeds"] if isinstance(s["mean"], (int, float))],
                            "rule": r["rule"], "ci": r["ci"], "verdict": verdict})
        ci = f"<div class='src'>95% CI {e(fmt(r['ci'][0]))} .. {e(fmt(r['ci'][1]))}</div>" if r["ci"] else ""
        extra = f"<div class='src'>rule: {e(r['rule'].get('text', ''))}</div>" if r["rule"].get("text") else ""
        missing = f"; {r['not_run']} not run" if r["not_run"] else ""
        inc = f"; {r['inconclusive']} inconclusive" if r["inconclusive"] else ""
        parts.append(f"<tr><td>{e(r['statement'] or r['claim'])}{extra}</td><td>{e(r['group_label'])}</td>"
                     f"<td class='num'><b>{r['k']} of {r['n']}</b>{e(inc + missing)}</td>"
                     f"<td class='num'>{e(fmt(r['mean']))}{ci}</td><td>{strip}</td>"
                     f"<td class='num'>{e(format_value(r.get('paper')))}</td></tr>")
    if not rows:
        parts.append("<tr><td colspan='6'>No claims recorded.</td></tr>")
    parts.append("</table><h2>Grid cells</h2><table><tr><th>cell</th><th>parameters</th><th>status</th><th>runtime</th>"
                 "<th>claims reproduced</th><th>metrics</th></tr>")
    for r in cells:
        name = e(r.get("key", r["notebook"]))
        link = f"<a href='{e(r['html'])}'>{name}</a>" if r.get("html") else name
        ok = r["status"] == "ok"
        err = f"<div class='err'>{e(r['error'])}</div>" if r.get("error") else ""
        k = verdict_counts([r])
        params = ", ".join(f"{a}={b!r}" for a, b in r.get("cell", {}).items())
        parts.append(f"<tr class='{'' if ok else 'fail'}'><td>{link}</td><td class='src'>{e(params)}</td>"
                     f"<td><span class='{'ok' if ok else 'no'}'>{e(r['status'])}</span>{err}</td>"
                     f"<td class='num'>{r.get('runtime_s', 0):.0f} s</td><td class='num'>{k['reproduced']}/{k['claims']}</td>"
                     f"<td class='src'>{e(format_value(r.get('metrics', {})))}</td></tr>")
    parts.append("</table><p class='src'>Each cell's folder holds the executed notebook, its HTML, figures and "
                 "metrics.json; sweep.json holds this page's data.</p></body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")


# -- running -------------------------------------------------------------------------------------

def execute_sweep(plan: SweepPlan, echo=print, *, jobs: int | None = None, scheduler: str | None = None,
                  cluster: str | None = None, cluster_config: str | Path | None = None) -> dict[str, Any]:
    """Run every cell of `plan`; write sweep.json, index.html and the figure. Raises KeyboardInterrupt
    after marking the sweep interrupted."""
    from .distributed import Task
    from .results import write_json_atomic
    from .runner import open_backend, run_tasks

    started, backend, sweep_dir = open_backend(plan.sweep_dir, len(plan.cells), echo, jobs=jobs,
                                               scheduler=scheduler, cluster=cluster, cluster_config=cluster_config)
    if sweep_dir != plan.sweep_dir:
        for p, label in zip(plan.parameters, plan.labels):
            p["out_dir"] = str(sweep_dir / label)
        plan.sweep_dir = sweep_dir
    summary: dict[str, Any] = {"kind": "sweep", "notebook": plan.notebook.stem, "profile": plan.profile,
                               "sweep": plan.sweep_dir.name, "grid": plan.grid, "over": plan.over,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running", "notebooks": []}
    cell_of = dict(zip(plan.labels, plan.cells))

    def write(figure: str | None = None) -> None:
        summary["aggregate"] = aggregate(summary["notebooks"], plan.over)
        write_json_atomic(plan.sweep_dir / "sweep.json", summary)
        write_sweep_report(summary, plan.sweep_dir / "index.html", figure)

    def tag(task, result) -> None:
        result["key"] = task.key
        result["cell"] = cell_of[task.key]

    echo(f"shammie: sweep of {plan.notebook.stem} over {len(plan.cells)} cell(s) at profile {plan.profile!r} into "
         f"{plan.sweep_dir}, {backend.description}", flush=True)
    write()
    tasks = [Task(label, plan.notebook, params) for label, params in zip(plan.labels, plan.parameters)]
    run_tasks(tasks, plan.sweep_dir, summary, plan.cell_timeout, echo=echo, backend=backend, write=write,
              on_result=tag, started=started)
    failed = [r for r in summary["notebooks"] if r["status"] != "ok"]
    summary["status"] = "failed" if failed else "ok"
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["aggregate"] = aggregate(summary["notebooks"], plan.over)
    figure = plot_sweep(summary["aggregate"], plan.sweep_dir / "claims_over_grid.png", plan.over)
    write(figure.name if figure else None)
    return summary


def cmd_sweep(args) -> int:
    """`python -m shammie sweep ...` (see the module docstring)."""
    from .runner import _interrupted, _parallel_text

    plan = plan_sweep(args.notebook, args.param, args.profile, args.out, cell_timeout=args.cell_timeout)
    try:
        summary = execute_sweep(plan, jobs=args.jobs, scheduler=args.scheduler, cluster=args.cluster,
                                cluster_config=args.cluster_config)
    except KeyboardInterrupt as err:
        return _interrupted(err, plan.sweep_dir)
    lines = [f"{r['claim']} [{r['group_label']}]: reproduced {r['k']} of {r['n']}, mean {r['mean']:.4g}"
             + (f" (95% CI {r['ci'][0]:.4g} .. {r['ci'][1]:.4g})" if r["ci"] else "")
             for r in summary["aggregate"] if r["mean"] is not None]
    for line in lines:
        print(f"    {line}")
    print(f"shammie: sweep {summary['status']} in {summary['elapsed_s']:.0f} s{_parallel_text(summary)}; "
          f"report: {plan.sweep_dir / 'index.html'}")
    return 0 if summary["status"] == "ok" else 1
