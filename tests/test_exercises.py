"""Exercise notebooks: nbgrader conventions, student copies without solutions, auto-grading that gives
each exercise its points exactly when its check passes, and the instructor versions running clean."""

import json

import nbformat
import pytest

from shammie.exercises import (
    ExerciseError,
    expect,
    expect_close,
    find_exercises,
    grade,
    student_copy,
)

EXERCISES = find_exercises()
ids = [p.stem for p in EXERCISES]


def _nbg(cell):
    return cell.metadata.get("nbgrader", {})


def test_there_are_exercise_notebooks():
    assert EXERCISES, "notebooks/exercises/ holds the teaching notebooks"


@pytest.mark.parametrize("path", EXERCISES, ids=ids)
def test_exercise_notebook_hygiene_and_nbgrader_metadata(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    grade_ids = []
    for cell in nb.cells:
        assert set(cell.metadata) <= {"nbgrader", "tags"}, cell.metadata
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "store exercise notebooks stripped"
        m = _nbg(cell)
        if m:
            assert m["schema_version"] == 3 and m["grade_id"] and not (m["solution"] and m["grade"])
            grade_ids.append(m["grade_id"])
            if m["solution"]:
                assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            if m["grade"]:
                assert m["points"] > 0 and m["locked"]
    assert len(grade_ids) == len(set(grade_ids)), "grade_ids must be unique"
    n_solutions = sum(bool(_nbg(c).get("solution")) for c in nb.cells)
    n_checks = sum(bool(_nbg(c).get("grade")) for c in nb.cells)
    assert 4 <= n_solutions == n_checks <= 6, "4-6 exercises, each with one solution and one check cell"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert text.count("**Teaches:**") == n_solutions and text.count("*Hint:*") == n_solutions
    assert "](../" in text, "link the theme notebook the exercises build on"


@pytest.mark.parametrize("path", EXERCISES, ids=ids)
def test_student_copy_has_no_solution_and_no_hidden_test(path, tmp_path):
    inst = nbformat.read(path, as_version=4)
    stud = nbformat.read(student_copy(path, tmp_path / path.name), as_version=4)
    assert [c.cell_type for c in stud.cells] == [c.cell_type for c in inst.cells]
    for ci, cs in zip(inst.cells, stud.cells):
        assert "BEGIN SOLUTION" not in cs.source and "HIDDEN TESTS" not in cs.source
        if _nbg(ci).get("solution"):
            body = ci.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in (ln.strip() for ln in body.splitlines()):
                assert not line or line not in cs.source, f"solution line leaked: {line!r}"
            assert "raise NotImplementedError()" in cs.source
        elif not _nbg(ci).get("grade"):
            assert cs.source == ci.source


def test_expect_messages_say_what_is_wrong():
    with pytest.raises(ExerciseError, match=r"c: expected -0.5, got -0.4 \(1 of 1 values differ\)\. Fit logs"):
        expect_close("c", -0.4, -0.5, hint="Fit logs.")
    with pytest.raises(ExerciseError, match="expected shape \\(3,\\), got \\(2,\\)"):
        expect_close("v", [1, 2], [1, 2, 3])
    with pytest.raises(ExerciseError, match="did the function `return`"):
        expect_close("v", None, 1.0)
    with pytest.raises(ExerciseError, match="at index \\(1,\\)"):
        expect_close("v", [1.0, 2.5], [1.0, 2.0])
    expect_close("v", [1.0, 2.0], [1.0, 2.0 + 1e-12])
    expect(True, "never shown")


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=ids)
def test_grading_instructor_unsolved_and_one_solved(path, tmp_path):
    """The instructor version scores full marks; a student copy with only the first exercise solved
    scores exactly its points, and every other check fails as an unsolved one should (the stub's
    NotImplementedError, or a name the unsolved exercise was to define). Two kernels, not three: the
    first exercise's stub is the same generated `raise NotImplementedError()` as the others'."""
    full = grade(path, path)
    assert full.total == full.max_total > 0, full.errors
    stud = student_copy(path, tmp_path / "unsolved" / path.name)
    inst = nbformat.read(path, as_version=4)
    first = next(c for c in inst.cells if _nbg(c).get("solution"))
    one = nbformat.read(stud, as_version=4)
    for c in one.cells:
        if _nbg(c).get("grade_id") == _nbg(first)["grade_id"]:
            c.source = first.source
    one_path = tmp_path / "one" / path.name
    one_path.parent.mkdir()
    nbformat.write(one, one_path)
    rep = grade(path, one_path)
    first_check = next(c for c in inst.cells[inst.cells.index(first):] if _nbg(c).get("grade"))
    assert rep.total == _nbg(first_check)["points"], rep.errors
    unsolved = set(full.points) - {_nbg(first_check)["grade_id"]}
    assert set(rep.errors) == unsolved, "every check but the solved exercise's fails"
    assert all(e.split(":")[0] in ("NotImplementedError", "NameError", "ExerciseError") for e in rep.errors.values())


@pytest.mark.slow
def test_student_and_grade_commands(tmp_path, capsys):
    from shammie.exercises import main

    assert main(["student", "--out", str(tmp_path / "student")]) == 0
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [p.name for p in EXERCISES]
    sub = tmp_path / "class" / "alice"
    sub.mkdir(parents=True)
    # the command is under test here, not a notebook: the exercise that trains nothing keeps its kernel short
    submitted = next(p for p in EXERCISES if p.name.startswith("04_"))
    (sub / submitted.name).write_text((tmp_path / "student" / submitted.name).read_text())
    assert main(["grade", str(tmp_path / "class")]) == 0
    rows = (tmp_path / "class" / "scores.csv").read_text().splitlines()
    assert rows[0] == "submission,exercise,points,max_points,error" and len(rows) > 2
    assert main(["grade", str(tmp_path / "missing")]) == 2
    (sub / "other.ipynb").write_text(json.dumps({}))
    assert main(["grade", str(tmp_path / "class")]) == 2
    assert "not an exercise notebook: other.ipynb" in capsys.readouterr().err
