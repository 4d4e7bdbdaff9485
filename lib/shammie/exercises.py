"""Exercise notebooks for teaching, in nbgrader's conventions, with student copies and auto-grading.

An exercise notebook (notebooks/exercises/NN_<theme>_exercises.ipynb) is the *instructor* version:

- a solution cell carries nbgrader metadata ``{"solution": true, "grade_id": ...}`` and its answer
  between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- an auto-check cell carries ``{"grade": true, "grade_id": ..., "points": n, "locked": true}``; lines
  between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are withheld from students;
- checks call `expect`/`expect_close`, whose messages say what is wrong, not just that it is.

`student_copy` writes what a student gets (solutions replaced by ``raise NotImplementedError()``,
hidden tests removed, outputs cleared), the same cells nbgrader's ``generate_assignment`` produces.
`grade` runs a submitted copy with the instructor's check cells restored and scores each exercise:
its points if its check cell runs without error, 0 otherwise.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from .core import ShammieError, repo_root

__all__ = ["ExerciseError", "expect", "expect_close", "find_exercises", "student_copy", "grade", "GradeReport",
           "SOLUTION_STUB"]

SOLUTION_STUB = "raise NotImplementedError()"
_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.S | re.M)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)


class ExerciseError(AssertionError):
    """A check of an exercise failed; the message says what is wrong and how to look for the cause."""


def expect(ok: bool, message: str) -> None:
    """Raise ExerciseError(`message`) unless `ok`."""
    if not ok:
        raise ExerciseError(message)


def expect_close(name: str, got: Any, want: Any, rtol: float = 1e-6, atol: float = 1e-9, hint: str = "") -> None:
    """Check that `got` equals `want` within tolerances, with a message naming the quantity, the
    shape or type mismatch, or the largest difference and where it is."""
    if got is None:
        raise ExerciseError(f"{name}: got None: did the function `return` its result?{' ' + hint if hint else ''}")
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseError(f"{name}: expected numbers, got {type(got).__name__} {got!r}") from None
    w = np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        raise ExerciseError(f"{name}: expected shape {w.shape}, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ExerciseError(f"{name}: contains NaN or inf ({g.ravel()[:5]} ...)")
    bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
    if bad.any():
        i = int(np.argmax(np.abs(g - w)))
        where = f" at index {tuple(int(k) for k in np.unravel_index(i, g.shape))}" if g.ndim else ""
        raise ExerciseError(f"{name}: expected {w.ravel()[i]:.6g}{where}, got {g.ravel()[i]:.6g} "
                            f"({int(bad.sum())} of {bad.size} values differ).{' ' + hint if hint else ''}")


def find_exercises(folder: Path | None = None) -> list[Path]:
    """The instructor exercise notebooks (notebooks/exercises/*.ipynb)."""
    folder = Path(folder) if folder else repo_root() / "notebooks" / "exercises"
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def student_copy(src: Path, dest: Path) -> Path:
    """Write the student version of instructor notebook `src` to `dest`."""
    nb = nbformat.read(src, as_version=4)
    out = copy.deepcopy(nb)
    for cell in out.cells:
        m = _meta(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if m.get("solution"):
                if "### BEGIN SOLUTION" not in cell.source:
                    raise ShammieError(f"{src.name}: solution cell {m.get('grade_id')!r} has no ### BEGIN SOLUTION region")
                cell.source = _SOLUTION.sub(lambda mt: f"{mt.group(1)}# YOUR CODE HERE\n{mt.group(1)}{SOLUTION_STUB}",
                                            cell.source)
            if m.get("grade"):
                cell.source = _HIDDEN.sub("", cell.source)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(out, dest)
    return dest


@dataclass
class GradeReport:
    """Points per exercise (grade_id) of one submission, and the first line of each failure."""

    notebook: str
    points: dict[str, float]
    max_points: dict[str, float]
    errors: dict[str, str]

    @property
    def total(self) -> float:
        return sum(self.points.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_points.values())


def grade(instructor: Path, submission: Path, timeout: int = 120) -> GradeReport:
    """Score `submission` against `instructor`: the student's solution cells (matched by grade_id) in
    the instructor's notebook, every other cell (checks with their hidden tests) from the instructor;
    run top to bottom, continuing after errors; a check cell that runs cleanly earns its points."""
    from nbclient import NotebookClient

    from .warmstart import WarmKernelManager

    inst = nbformat.read(instructor, as_version=4)
    sub = nbformat.read(submission, as_version=4)
    answers = {_meta(c)["grade_id"]: c.source for c in sub.cells if _meta(c).get("solution") and "grade_id" in _meta(c)}
    nb = copy.deepcopy(inst)
    for cell in nb.cells:
        m = _meta(cell)
        if m.get("solution") and m.get("grade_id") in answers:
            cell.source = answers[m["grade_id"]]
        if cell.cell_type == "code":
            cell.outputs = []
    # a warm kernel, killed after its last cell rather than asked to exit (see runner.run_notebook)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, shutdown_kernel="immediate",
                            kernel_manager_class=WarmKernelManager,
                            resources={"metadata": {"path": str(Path(instructor).parent)}})
    client.execute()
    points, maxp, errors = {}, {}, {}
    for cell in nb.cells:
        m = _meta(cell)
        if cell.cell_type != "code" or not m.get("grade"):
            continue
        gid = m["grade_id"]
        maxp[gid] = float(m.get("points", 0))
        err = next((o for o in cell.outputs if o.get("output_type") == "error"), None)
        points[gid] = 0.0 if err else maxp[gid]
        if err:
            errors[gid] = f"{err.get('ename')}: {str(err.get('evalue', '')).splitlines()[0] if err.get('evalue') else ''}"
    return GradeReport(Path(submission).name, points, maxp, errors)


def main(argv: list[str] | None = None) -> int:
    """`python -m shammie.exercises student [--out DIR]` writes the student copies;
    `python -m shammie.exercises grade DIR [--scores FILE]` grades every submitted copy in DIR."""
    import argparse
    import csv
    import sys

    parser = argparse.ArgumentParser(prog="python -m shammie.exercises", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("student", help="write student copies of every exercise notebook")
    st.add_argument("--out", default=str(repo_root() / "dist" / "student"))
    gr = sub.add_parser("grade", help="auto-grade a folder of submitted copies")
    gr.add_argument("folder")
    gr.add_argument("--scores", default=None, help="CSV of scores (default: FOLDER/scores.csv)")
    args = parser.parse_args(argv)
    instructors = {p.name: p for p in find_exercises()}
    if args.command == "student":
        for p in instructors.values():
            print(f"wrote {student_copy(p, Path(args.out) / p.name)}")
        return 0
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"shammie: error: {folder} is not a folder of submitted notebooks", file=sys.stderr)
        return 2
    subs = sorted(folder.rglob("*.ipynb"))
    unknown = [s.name for s in subs if s.name not in instructors]
    if not subs or unknown:
        print(f"shammie: error: {'no notebooks in ' + str(folder) if not subs else 'not an exercise notebook: ' + ', '.join(unknown)}"
              f"; submissions keep the exercise notebooks' names ({', '.join(instructors)})", file=sys.stderr)
        return 2
    rows = []
    for s in subs:
        rep = grade(instructors[s.name], s)
        rows += [{"submission": str(s.relative_to(folder)), "exercise": gid, "points": rep.points[gid],
                  "max_points": rep.max_points[gid], "error": rep.errors.get(gid, "")} for gid in rep.points]
        print(f"{s.relative_to(folder)}: {rep.total:g} / {rep.max_total:g}")
    out = Path(args.scores) if args.scores else folder / "scores.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"scores: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
