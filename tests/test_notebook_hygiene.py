"""Every notebook in notebooks/ is stored clean and is runnable by the runner (static checks, no kernel)."""

import ast

import nbformat
import pytest

from shammie.notebooks import REQUIRED_PARAMETERS, parameters_cell, read_parameters, typed_numbers

from conftest import NOTEBOOKS

ids = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert any(p.stem.startswith("00_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_valid_and_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: strip them (commit notebooks without outputs)"
            assert cell.execution_count is None, f"cell {i} has an execution count"
        assert set(cell.metadata) <= {"tags", "id"}, f"cell {i} carries metadata {sorted(cell.metadata)}"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, f"notebook metadata {sorted(nb.metadata)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_literal_parameters_cell_with_required_names(path):
    nb = nbformat.read(path, as_version=4)
    idx = parameters_cell(nb)
    assert all(c.cell_type == "markdown" for c in nb.cells[:idx]), "only markdown may precede the parameters cell"
    params = read_parameters(path)  # raises on anything but literal assignments
    assert list(params)[:4] == list(REQUIRED_PARAMETERS)
    assert params["profile"].default == "quick", "the default profile is quick"
    for p in params.values():
        assert p.annotation is not None, f"parameter {p.name} needs a type comment, e.g. `# int: what it is`"
        assert p.comment, f"parameter {p.name} needs a description after its type"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_starts_with_a_title_and_uses_the_setup_call(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "arxiv.org" in nb.cells[0].source.lower() or path.stem.startswith("00_"), "cite the paper in the title cell"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'shammie.start("{path.stem}"' in code, "set up with shammie.start('<notebook stem>', ...)"
    assert "run.finish()" in code
    for cell in nb.cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)  # no syntax errors, no IPython magics that papermill would choke on
            assert ".cuda()" not in cell.source, "use run.device, not .cuda()"
            assert "MPLBACKEND" not in cell.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "what to try next" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_papermill_sees_every_parameter(path):
    """papermill skips (with a warning) a parameter line it cannot parse; every one must be parseable."""
    import papermill

    assert set(papermill.inspect_notebook(str(path))) == set(read_parameters(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_measured_number_typed_into_markdown(path):
    """Results prose comes from the recorded numbers (run.md, run.results_md); settings and constants go in
    maths or code spans, the paper's own numbers on a line that cites it."""
    found = typed_numbers(nbformat.read(path, as_version=4))
    assert not found, "numbers typed into markdown after the setup call: " + "; ".join(
        f"cell {i}: {n!r} in {line!r}" for i, n, line in found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_claims_and_checks_use_the_new_kinds(path):
    """Every notebook judges its claims by a rule (shammie.claims) and shows checks apart."""
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert "run.claim(" in code or "run.preregister(" in code
    assert "passed=" not in code, "a claim's verdict comes from its rule, never from passed="
