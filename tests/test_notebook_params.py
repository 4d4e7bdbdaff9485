import pytest

from shammie.core import ShammieError
from shammie.notebooks import Parameter, check_value, parse_assignment, read_parameters

from conftest import make_notebook


def test_read_parameters_types_from_comments(tiny_notebooks):
    params = read_parameters(tiny_notebooks / "10_tiny.ipynb")
    assert list(params) == ["profile", "seed", "device", "out_dir", "steps", "scale"]
    assert params["steps"] == Parameter("steps", None, "int | None", "how many steps")
    assert params["seed"].annotation == "int" and params["scale"].default == 1.0


@pytest.mark.parametrize("source,match", [
    ("x = 1\ny = x + 1", "literal"),
    ("import os", "only `name = literal`"),
    ("x = 1  # complex: a number", None),
    ("x = 1  # widget: a number", None),
])
def test_parameters_cell_must_be_literals(tmp_path, source, match):
    path = make_notebook(tmp_path / "n.ipynb", "pass", params=source)
    if match is None:  # a comment that is not a known type is just a comment
        assert read_parameters(path)["x"].annotation is None
    else:
        with pytest.raises(ShammieError, match=match):
            read_parameters(path)


def test_missing_or_duplicate_parameters_cell(tmp_path):
    import nbformat

    path = make_notebook(tmp_path / "n.ipynb", "pass")
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    with pytest.raises(ShammieError, match="exactly one.*found 2"):
        read_parameters(path)
    with pytest.raises(ShammieError, match="not found"):
        read_parameters(tmp_path / "missing.ipynb")


@pytest.mark.parametrize("annotation,default,value,ok", [
    ("int | None", None, 3, True), ("int | None", None, None, True), ("int | None", None, 2.5, False),
    ("int", 0, True, False), ("float", 1.0, 2, True), ("str", "a", 1, False), (None, 3, 4, True), (None, 3, "4", False),
    ("tuple | None", None, [1, 2], True), (None, None, object(), True),
])
def test_check_value(annotation, default, value, ok):
    p = Parameter("x", default, annotation)
    if ok:
        check_value(p, value)
    else:
        with pytest.raises(ShammieError, match="wrong type"):
            check_value(p, value)


@pytest.mark.parametrize("text,expected", [("a=3", ("a", 3)), ("a=3.5", ("a", 3.5)), ("a=cpu", ("a", "cpu")),
                                           ("a='x y'", ("a", "x y")), ("a=[1,2]", ("a", [1, 2])), ("a=true", ("a", True)),
                                           ("a=None", ("a", None)), ("a = 1", ("a", 1))])
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["a", "1a=3", "=3"])
def test_parse_assignment_errors(text):
    with pytest.raises(ShammieError):
        parse_assignment(text)


def test_strip_removes_outputs_and_metadata_but_keeps_tags(tmp_path):
    import nbformat
    from nbformat.v4 import new_output

    from shammie.notebooks import parameters_cell, strip_notebook

    path = make_notebook(tmp_path / "n.ipynb", "print(1)")
    clean = path.read_text()
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="1\n")]
    nb.cells[2].execution_count = 4
    nb.cells[1].metadata["collapsed"] = True
    nb.metadata["papermill"] = {"duration": 1.0}
    nb.metadata["kernelspec"]["name"] = "myenv"
    nbformat.write(nb, path)
    assert strip_notebook(path) is True
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None
    assert parameters_cell(nb) == 1 and nb.cells[1].metadata == {"tags": ["parameters"]}
    assert set(nb.metadata) == {"kernelspec"} and nb.metadata["kernelspec"]["name"] == "python3"
    assert strip_notebook(path) is False  # idempotent
    assert nbformat.read(path, as_version=4).cells[2].source == nbformat.reads(clean, as_version=4).cells[2].source


def test_strip_keeps_the_exercise_notebooks_nbgrader_metadata():
    """Stripping an exercise notebook leaves it byte-identical: its cells' nbgrader metadata (points,
    grade ids, locks) is what makes it gradable."""
    import shutil
    import tempfile

    from shammie.exercises import find_exercises
    from shammie.notebooks import strip_notebook

    with tempfile.TemporaryDirectory() as tmp:
        for src in find_exercises():
            copy = shutil.copy(src, tmp)
            assert strip_notebook(copy) is False, f"strip would change {src.name}"
