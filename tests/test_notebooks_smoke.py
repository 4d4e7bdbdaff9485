"""A real smoke run of every notebook through the runner: it finishes, records metrics and claims,
shows figures, and the same seed gives the same metrics.json."""

import json

import nbformat
import pytest

from shammie.claims import VERDICTS
from shammie.runner import execute_plan, plan_run

from conftest import NOTEBOOKS

pytestmark = pytest.mark.slow
ids = [p.stem for p in NOTEBOOKS]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    plan = plan_run("smoke", out=out)
    summary = execute_plan(plan, echo=lambda *a, **k: None)
    return plan, summary


def _result(smoke_run, path):
    _, summary = smoke_run
    return next(r for r in summary["notebooks"] if r["notebook"] == path.stem)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_and_records(smoke_run, path):
    plan, _ = smoke_run
    result = _result(smoke_run, path)
    assert result["status"] == "ok", result["error"]
    folder = plan.run_dir / path.stem
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["metrics"], "the notebook records metrics"
    assert metrics["claims"], "the notebook records the paper's claims"
    for c in metrics["claims"]:
        assert c["statement"] and c["verdict"] in VERDICTS and c["rule"]["text"] and c["values"]
    for c in metrics["checks"]:
        assert c["ok"] is True, f"check {c['name']} failed"
    assert not metrics["preregistered"], "every preregistered claim was judged or closed by run.finish()"
    executed = nbformat.read(folder / path.name, as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the report shows at least one figure"
    assert metrics["figures"] and all((folder / f).exists() for f in metrics["figures"])
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    assert "data:image/png;base64" in (folder / f"{path.stem}.html").read_text()


def test_index_lists_every_notebook_and_claim(smoke_run):
    plan, summary = smoke_run
    index = (plan.run_dir / "index.html").read_text()
    for r in summary["notebooks"]:
        assert r["notebook"] in index
        for c in r["claims"]:
            assert c["statement"].split("<")[0][:30] in index.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


@pytest.fixture(scope="module")
def smoke_again(tmp_path_factory):
    """The whole smoke run a second time, serially in this process (the first ran on a local Dask
    cluster), to compare the metrics: the same whichever way a notebook is run."""
    plan = plan_run("smoke", out=tmp_path_factory.mktemp("again"))
    return plan, execute_plan(plan, echo=lambda *a, **k: None, jobs=1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_same_seed_same_metrics(smoke_run, smoke_again, path):
    """Same seed and profile, same metrics.json, byte for byte, run on a Dask worker or serially
    (machine-dependent numbers such as seconds go to run_info.json)."""
    plan, _ = smoke_run
    again, summary = smoke_again
    result = next(r for r in summary["notebooks"] if r["notebook"] == path.stem)
    assert result["status"] == "ok", result["error"]
    first = (plan.run_dir / path.stem / "metrics.json").read_text()
    second = (again.run_dir / path.stem / "metrics.json").read_text()
    assert first == second
