"""Manage the run folders under `<reports>/runs/`: list them, compare two, prune old ones.

    python -m shammie runs [list] [--out DIR]
    python -m shammie runs compare A B [--out DIR]     # A, B: run names, latest, latest-quick, or folders
    python -m shammie runs prune --keep N [--dry-run] [--out DIR]

Runs that `latest` or a `latest-<profile>` link points to, and runs still marked running, are
never pruned.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import ShammieError, reports_dir

__all__ = ["RunInfo", "list_runs", "find_run", "compare_runs", "prune_runs", "add_runs_parser", "main"]


@dataclass
class RunInfo:
    """One run folder and what its summary.json says."""

    path: Path
    summary: dict[str, Any]
    links: list[str]  # names of the latest links that point here

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown (no summary.json)") if self.summary else "unknown (no summary.json)"

    @property
    def profile(self) -> str:
        return self.summary.get("profile") or (self.name.rsplit("-", 1)[-1] if "-" in self.name else "?")

    def counts(self) -> dict[str, int]:
        from .report import verdict_counts

        return verdict_counts(self.summary.get("notebooks", []))


def _runs_root(out: str | Path | None) -> Path:
    return (Path(out).resolve() if out else reports_dir())


def _read_summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def list_runs(out: str | Path | None = None) -> list[RunInfo]:
    """Every run folder under `<out>/runs`, oldest first (run names start with their start time)."""
    root = _runs_root(out)
    runs_dir = root / "runs"
    if not runs_dir.is_dir():
        return []
    links: dict[Path, list[str]] = {}
    for link in sorted(root.glob("latest*")):
        if link.is_symlink():
            links.setdefault(link.resolve(), []).append(link.name)
    folders = sorted((p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: (p.name[:15], p.stat().st_mtime, p.name))
    return [RunInfo(p, _read_summary(p), links.get(p.resolve(), [])) for p in folders]


def find_run(ref: str, out: str | Path | None = None) -> RunInfo:
    """A run by name, unique name prefix, link name (`latest`, `latest-quick`) or folder path."""
    root = _runs_root(out)
    runs = list_runs(out)
    candidates = [Path(ref), root / ref, root / "runs" / ref]
    for c in candidates:
        if (c / "summary.json").exists():
            target = c.resolve()
            match = next((r for r in runs if r.path.resolve() == target), None)
            return match or RunInfo(target, _read_summary(target), [])
    hits = [r for r in runs if r.name.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(r.name for r in runs[-5:]) or "none"
    if hits:
        raise ShammieError(f"run {ref!r} is ambiguous: {', '.join(h.name for h in hits)}")
    raise ShammieError(f"no run {ref!r} in {root / 'runs'}; the latest runs are: {known}")


def _when(summary: dict[str, Any]) -> str:
    return str(summary.get("started", "?")).replace("T", " ")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def format_list(runs: list[RunInfo]) -> str:
    """The table `runs list` prints."""
    if not runs:
        return "no runs yet"
    rows = [("run", "profile", "status", "notebooks", "claims (repr/not/inc of n)", "checks", "started", "time", "")]
    for r in runs:
        nbs = r.summary.get("notebooks", [])
        ok = sum(n.get("status") == "ok" for n in nbs)
        k = r.counts()
        rows.append((r.name, r.profile, r.status, f"{ok}/{len(nbs)} ok",
                     f"{k['reproduced']}/{k['not reproduced']}/{k['inconclusive']} of {k['claims']}",
                     f"{k['checks'] - k['checks_failed']}/{k['checks']}", _when(r.summary),
                     _duration(r.summary.get("elapsed_s")), " ".join(r.links)))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _items(summary: dict[str, Any], kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(nb.get("notebook", "?"), c.get("name", "?")): c for nb in summary.get("notebooks", [])
            for c in nb.get(kind, [])}


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def compare_runs(a: RunInfo, b: RunInfo) -> list[dict[str, Any]]:
    """Claims (and checks) whose verdict or value differs between runs `a` and `b`, or that only one has."""
    changes = []
    for kind, verdict_key, value_key in (("claims", "verdict", "mean"), ("checks", "ok", "value")):
        items_a, items_b = _items(a.summary, kind), _items(b.summary, kind)
        for key in sorted(set(items_a) | set(items_b)):
            ca, cb = items_a.get(key), items_b.get(key)
            va = None if ca is None else ca.get(verdict_key)
            vb = None if cb is None else cb.get(verdict_key)
            xa = None if ca is None else ca.get(value_key)
            xb = None if cb is None else cb.get(value_key)
            if ca is None or cb is None or va != vb or not _same_number(xa, xb):
                what = ("only in " + (a.name if cb is None else b.name)) if (ca is None or cb is None) else (
                    "verdict" if va != vb else "value")
                changes.append({"kind": kind[:-1], "notebook": key[0], "name": key[1], "change": what,
                                "a": {"verdict": va, "value": xa}, "b": {"verdict": vb, "value": xb}})
    return changes


def _show(verdict: Any, value: Any) -> str:
    from .report import format_value

    if verdict is None and value is None:
        return "-"
    if verdict is True or verdict is False:
        verdict = "holds" if verdict else "FAILS"
    return f"{verdict} ({format_value(value)})"


def format_compare(a: RunInfo, b: RunInfo, changes: list[dict[str, Any]]) -> str:
    """The text `runs compare` prints."""
    head = f"A = {a.name} ({a.profile}, {a.status})\nB = {b.name} ({b.profile}, {b.status})"
    if not changes:
        return head + "\nno claim or check changed its verdict or value"
    rows = [("kind", "notebook", "name", "changed", "A", "B")]
    for c in changes:
        rows.append((c["kind"], c["notebook"], c["name"], c["change"], _show(**c["a"]), _show(**c["b"])))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    body = "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows)
    n_verdict = sum(c["change"] == "verdict" for c in changes)
    return f"{head}\n{len(changes)} difference(s), {n_verdict} of them in a verdict:\n{body}"


def prune_runs(keep: int, out: str | Path | None = None, dry_run: bool = False) -> tuple[list[RunInfo], list[RunInfo]]:
    """Delete all but the `keep` newest runs, never one a latest link points to nor one still running.

    Returns (deleted, kept-though-old). With `dry_run` nothing is deleted.
    """
    if not isinstance(keep, int) or keep < 0:
        raise ShammieError(f"--keep must be a number of runs >= 0, got {keep!r}")
    runs = list_runs(out)
    old = runs[: max(len(runs) - keep, 0)]
    protected = [r for r in old if r.links or r.status == "running"]
    doomed = [r for r in old if r not in protected]
    if not dry_run:
        for r in doomed:
            shutil.rmtree(r.path)
    return doomed, protected


def _cmd_runs(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "list"
    if action == "list":
        print(format_list(list_runs(args.out)))
        return 0
    if action == "compare":
        a, b = find_run(args.a, args.out), find_run(args.b, args.out)
        print(format_compare(a, b, compare_runs(a, b)))
        return 0
    doomed, protected = prune_runs(args.keep, args.out, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for r in doomed:
        print(f"{verb} {r.path}")
    for r in protected:
        why = ", ".join(r.links) if r.links else "still marked running"
        print(f"kept {r.name} ({why})")
    print(f"shammie: {verb} {len(doomed)} run(s); {len(list_runs(args.out))} left")
    return 0


def add_runs_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `runs` (list / compare / prune) on the runner's subparsers."""
    runs = sub.add_parser("runs", help="list runs, compare two runs' claims, prune old runs")
    runs.add_argument("--out", default=None, help="reports folder (default: reports/ in the checkout)")
    runs.set_defaults(func=_cmd_runs, action="list")
    actions = runs.add_subparsers(dest="action")
    lst = actions.add_parser("list", help="every run: profile, status, claims, checks, start time, duration")
    lst.add_argument("--out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    cmp_ = actions.add_parser("compare", help="claims and checks whose verdict or value changed from run A to run B")
    cmp_.add_argument("a", help="run name (or unique prefix), latest, latest-<profile>, or a run folder")
    cmp_.add_argument("b", help="the other run")
    cmp_.add_argument("--out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    prune = actions.add_parser("prune", help="delete all but the newest N runs (never those a latest link points to)")
    prune.add_argument("--keep", type=int, required=True, metavar="N", help="how many of the newest runs to keep")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    prune.add_argument("--out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return runs


def main(argv: list[str] | None = None) -> int:
    """`python -m shammie.runs ...` (the same as `python -m shammie runs ...`)."""
    parser = argparse.ArgumentParser(prog="python -m shammie runs")
    sub = parser.add_subparsers(dest="command", required=True)
    add_runs_parser(sub)
    args = parser.parse_args(["runs", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ShammieError as err:
        print(f"shammie: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
