"""Run the workbook: papermill every notebook at a profile, render HTML, gather metrics and claims.

    python -m shammie run --profile quick [--only PATTERN] [--out DIR] [-p name=value ...]
    python -m shammie list
    python -m shammie strip [--check] [NOTEBOOK ...]

Everything the user typed is checked before anything runs. Each run writes a new folder
`<out>/runs/<time>-<profile>/`; one notebook failing does not stop the others, and the command then
exits 1. `<out>/latest-<profile>` moves to a run only when every notebook in it succeeded, and
`<out>/latest` too when that run was a complete `quick` or `full` run.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PROFILE_NAMES
from .core import ShammieError, repo_root, reports_dir
from .notebooks import (
    REQUIRED_PARAMETERS,
    check_value,
    find_notebooks,
    parse_assignment,
    read_parameters,
    strip_notebook,
)
from .results import read_json, write_json_atomic

__all__ = ["RunPlan", "plan_run", "execute_plan", "main", "DEFAULT_CELL_TIMEOUT"]

DEFAULT_CELL_TIMEOUT = {"smoke": 300, "quick": 900, "full": 6 * 3600}


@dataclass
class RunPlan:
    """What a run will do: which notebooks, with which parameters, into which folder."""

    profile: str
    notebooks: list[Path]
    parameters: dict[str, dict[str, Any]]  # notebook stem -> injected parameters
    out_root: Path
    run_dir: Path
    cell_timeout: int
    complete: bool  # every notebook of the workbook is in the run
    overrides: dict[str, Any] = field(default_factory=dict)


def _select(notebooks: list[Path], only: str | None) -> list[Path]:
    if not only:
        return notebooks
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [nb for nb in notebooks if any(fnmatch.fnmatch(nb.stem, f"*{p}*") or fnmatch.fnmatch(nb.name, p) for p in patterns)]
    if not chosen:
        names = ", ".join(nb.stem for nb in notebooks)
        raise ShammieError(f"--only {only!r} matches no notebook; the notebooks are: {names}")
    return chosen


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ShammieError(f"cannot write reports to {folder}: {err.strerror or err}. "
                           f"Choose a writable folder with --out DIR.") from err


def plan_run(
    profile: str = "quick",
    only: str | None = None,
    out: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    seed: int | None = None,
    cell_timeout: int | None = None,
) -> RunPlan:
    """Validate everything the user asked for and return the plan; raises ShammieError with the fix."""
    if profile not in PROFILE_NAMES:
        raise ShammieError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILE_NAMES)}")
    everything = find_notebooks(notebooks_dir)
    if not everything:
        raise ShammieError(f"no notebooks found in {notebooks_dir or repo_root() / 'notebooks'}")
    chosen = _select(everything, only)
    overrides = dict(overrides or {})
    for reserved in ("profile", "out_dir"):
        if reserved in overrides:
            flag = "--profile" if reserved == "profile" else "--out"
            raise ShammieError(f"set {reserved} with {flag}, not -p")
    if seed is not None:
        overrides["seed"] = seed
    declared = {nb.stem: read_parameters(nb) for nb in chosen}
    for stem, params in declared.items():
        missing = [p for p in REQUIRED_PARAMETERS if p not in params]
        if missing:
            raise ShammieError(f"{stem}: its parameters cell lacks {', '.join(missing)}")
    for name, value in overrides.items():
        holders = [stem for stem, params in declared.items() if name in params]
        if not holders:
            import difflib

            known = sorted({p for params in declared.values() for p in params})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ShammieError(f"unknown parameter {name!r}{hint}; the selected notebooks take: {', '.join(known)}")
        for stem in holders:
            check_value(declared[stem][name], value)
    out_root = Path(out).resolve() if out else reports_dir()
    _check_writable(out_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out_root / "runs" / f"{stamp}-{profile}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_root / "runs" / f"{stamp}-{profile}-{n}"
    params = {}
    for nb in chosen:
        p = {"profile": profile, "out_dir": str(run_dir / nb.stem)}
        p.update({k: check_value(declared[nb.stem][k], v) for k, v in overrides.items() if k in declared[nb.stem]})
        params[nb.stem] = p
    return RunPlan(profile, chosen, params, out_root, run_dir,
                   cell_timeout or DEFAULT_CELL_TIMEOUT[profile], len(chosen) == len(everything), overrides)


def _kernel_env() -> None:
    """Environment the notebook kernels inherit: batch mode, inline figures, this venv's kernelspec first."""
    os.environ["SHAMMIE_BATCH"] = "1"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if os.environ.get("MPLBACKEND", "").lower() in ("agg", "module://matplotlib.backends.backend_agg"):
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # Agg would drop every figure
    share = Path(sys.prefix) / "share" / "jupyter"
    if (share / "kernels" / "python3").exists():
        paths = [str(share)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(paths))


def _render_html(ipynb: Path, html: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    html.write_text(body, encoding="utf-8")


def _error_summary(err: BaseException) -> str:
    ename = getattr(err, "ename", None)
    if ename:
        return f"{ename}: {getattr(err, 'evalue', '')}".strip()
    name = type(err).__name__
    if "DeadKernel" in name:
        return f"{name}: the kernel died (out of memory?)"
    return f"{name}: {err}"


def run_notebook(nb: Path, params: dict[str, Any], out_dir: Path, cell_timeout: int) -> dict[str, Any]:
    """Execute one notebook with papermill into `out_dir`, render its HTML; never raises."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb.name
    html = out_dir / f"{nb.stem}.html"
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        pm.execute_notebook(str(nb.resolve()), str(executed), parameters=params, kernel_name="python3",
                            cwd=str(nb.parent.resolve()), execution_timeout=cell_timeout,
                            progress_bar=False, log_output=False, report_mode=False,
                            # the kernel's own log (e.g. ipykernel's note on TCP transport) stays out of the
                            # runner's output; cell errors and output still go into the executed notebook
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except BaseException as err:  # noqa: BLE001 - a failed notebook is reported, never fatal
        if isinstance(err, KeyboardInterrupt):
            raise
        status, error = "failed", _error_summary(err)
        (out_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
    runtime = time.perf_counter() - t0
    if executed.exists():
        try:
            _render_html(executed, html)
        except Exception as err:  # noqa: BLE001
            (out_dir / "html-error.txt").write_text(str(err))
    metrics = read_json(out_dir / "metrics.json") if (out_dir / "metrics.json").exists() else {}
    info = read_json(out_dir / "run_info.json") if (out_dir / "run_info.json").exists() else {}
    if status == "ok" and info.get("status") != "finished":
        status, error = "failed", "the notebook did not call run.finish()"
    return {
        "notebook": nb.stem,
        "status": status,
        "error": error,
        "runtime_s": round(runtime, 1),
        "peak_memory_mb": info.get("peak_memory_mb"),
        "html": f"{nb.stem}/{html.name}" if html.exists() else None,
        "ipynb": f"{nb.stem}/{nb.name}" if executed.exists() else None,
        "parameters": params,
        "metrics": metrics.get("metrics", {}),
        "claims": metrics.get("claims", []),
        "checks": metrics.get("checks", []),
        "figures": [f"{nb.stem}/{f}" for f in metrics.get("figures", [])],
    }


def _counts_text(results: list[dict[str, Any]]) -> str:
    """'claims: 3 reproduced, 1 not reproduced, 0 inconclusive (of 4); checks 5/5 hold'."""
    from .report import verdict_counts

    k = verdict_counts(results)
    return (f"claims: {k['reproduced']} reproduced, {k['not reproduced']} not reproduced, {k['inconclusive']} "
            f"inconclusive (of {k['claims']}); checks {k['checks'] - k['checks_failed']}/{k['checks']} hold")


def _point_link(link: Path, target: Path) -> None:
    """Atomically point symlink `link` at `target` (relative)."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def execute_plan(plan: RunPlan, echo=print) -> dict[str, Any]:
    """Run every notebook of `plan`, write summary.json and index.html, move the latest links on success."""
    from .report import write_index

    _kernel_env()
    plan.run_dir.mkdir(parents=True, exist_ok=False)
    summary: dict[str, Any] = {
        "profile": plan.profile,
        "run": plan.run_dir.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "overrides": plan.overrides,
        "status": "running",
        "notebooks": [],
    }
    t0 = time.perf_counter()
    for i, nb in enumerate(plan.notebooks, 1):
        echo(f"[{i}/{len(plan.notebooks)}] {nb.stem} ({plan.profile}) ...", flush=True)
        result = run_notebook(nb, plan.parameters[nb.stem], plan.run_dir / nb.stem, plan.cell_timeout)
        summary["notebooks"].append(result)
        line = f"    {result['status']} in {result['runtime_s']:.0f} s; {_counts_text([result])}"
        if result["peak_memory_mb"]:
            line += f"; peak memory {result['peak_memory_mb']:.0f} MiB"
        if result["error"]:
            line += f"\n    error: {result['error']}"
        echo(line, flush=True)
        summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(plan.run_dir / "summary.json", summary)
        write_index(summary, plan.run_dir / "index.html")
    failed = [r["notebook"] for r in summary["notebooks"] if r["status"] != "ok"]
    summary["status"] = "failed" if failed else "ok"
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
    write_json_atomic(plan.run_dir / "summary.json", summary)
    write_index(summary, plan.run_dir / "index.html")
    if not failed:
        _point_link(plan.out_root / f"latest-{plan.profile}", plan.run_dir)
        if plan.complete and plan.profile != "smoke":
            _point_link(plan.out_root / "latest", plan.run_dir)
    return summary


def _cmd_list(args) -> int:
    for nb in find_notebooks():
        params = read_parameters(nb)
        print(nb.stem)
        for p in params.values():
            ann = f": {p.annotation}" if p.annotation else ""
            note = f"  # {p.comment}" if p.comment else ""
            print(f"    {p.name}{ann} = {p.default!r}{note}")
    return 0


def _cmd_strip(args) -> int:
    paths = [Path(p) for p in args.paths] or find_notebooks()
    changed = [p for p in paths if strip_notebook(p)]
    for p in changed:
        print(f"stripped {p}")
    if args.check and changed:
        print("shammie: notebooks had outputs or metadata; they are stripped now: commit them again", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args) -> int:
    overrides = dict(parse_assignment(a) for a in args.param)
    plan = plan_run(args.profile, args.only, args.out, overrides, seed=args.seed, cell_timeout=args.cell_timeout)
    print(f"shammie: running {len(plan.notebooks)} notebook(s) at profile {plan.profile!r} into {plan.run_dir}")
    summary = execute_plan(plan)
    print(f"shammie: {summary['status']} in {summary['elapsed_s']:.0f} s; {_counts_text(summary['notebooks'])}; "
          f"report: {plan.run_dir / 'index.html'}")
    if summary["status"] != "ok":
        failed = ", ".join(r["notebook"] for r in summary["notebooks"] if r["status"] != "ok")
        print(f"shammie: FAILED notebooks: {failed}. The last good report was left as it was.", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shammie", description="Run the shammie workbook's notebooks and build the report.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run notebooks with papermill and write a report")
    run.add_argument("--profile", default="quick", help="smoke (seconds), quick (default; minutes on a CPU) or full (GPU, paper scale)")
    run.add_argument("--only", default=None, help="comma-separated patterns of notebook names, e.g. 00,calibration")
    run.add_argument("--out", default=None, help="reports folder (default: reports/ in the checkout)")
    run.add_argument("--seed", type=int, default=None, help="seed for every notebook (default: each notebook's own)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a notebook parameter (repeatable)")
    run.add_argument("--cell-timeout", type=int, default=None, help="seconds a single cell may run")
    run.set_defaults(func=_cmd_run)
    lst = sub.add_parser("list", help="list the notebooks and their parameters")
    lst.set_defaults(func=_cmd_list)
    strip = sub.add_parser("strip", help="remove outputs and metadata from notebooks (all of notebooks/ by default)")
    strip.add_argument("paths", nargs="*", help="notebook files")
    strip.add_argument("--check", action="store_true", help="exit 1 if anything had to be stripped")
    strip.set_defaults(func=_cmd_strip)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; bad input exits 2 with the fix, a failed notebook exits 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ShammieError as err:
        print(f"shammie: error: {err}", file=sys.stderr)
        return 2
