"""The runner: validation before anything runs (fast), and real papermill runs of tiny fixture notebooks (slow)."""

import json
import os

import pytest

from shammie.core import ShammieError
from shammie.runner import execute_plan, main, plan_run


def test_plan_selects_and_injects(tiny_notebooks, tmp_path):
    plan = plan_run("smoke", only="tiny", out=tmp_path / "r", overrides={"steps": 2, "scale": 3}, notebooks_dir=tiny_notebooks)
    assert [nb.stem for nb in plan.notebooks] == ["10_tiny"] and not plan.complete
    params = plan.parameters["10_tiny"]
    assert params["profile"] == "smoke" and params["steps"] == 2 and params["scale"] == 3.0
    assert os.path.isabs(params["out_dir"]) and params["out_dir"].startswith(str(plan.run_dir))
    assert plan.cell_timeout == 300


def test_override_goes_only_to_notebooks_that_declare_it(tiny_notebooks, tmp_path):
    plan = plan_run("quick", out=tmp_path / "r", overrides={"steps": 2}, notebooks_dir=tiny_notebooks)
    assert plan.complete and "steps" in plan.parameters["10_tiny"] and "steps" not in plan.parameters["20_broken"]


@pytest.mark.parametrize("kwargs,match", [
    ({"profile": "quik"}, "unknown profile 'quik'"),
    ({"only": "nothing"}, "matches no notebook.*10_tiny"),
    ({"overrides": {"stepz": 2}}, "unknown parameter 'stepz'.*did you mean 'steps'"),
    ({"overrides": {"steps": "two"}}, "steps='two' has the wrong type: expected int"),
    ({"overrides": {"profile": "full"}}, "--profile"),
    ({"overrides": {"out_dir": "/x"}}, "--out"),
])
def test_bad_input_is_refused_before_anything_runs(tiny_notebooks, tmp_path, kwargs, match):
    out = tmp_path / "r"
    args = {"profile": "smoke", "out": out, "notebooks_dir": tiny_notebooks, **kwargs}
    with pytest.raises(ShammieError, match=match):
        plan_run(**args)
    assert not (out / "runs").exists()


def test_unwritable_output_folder(tiny_notebooks, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ShammieError, match="cannot write reports to .*--out"):
        plan_run("smoke", out=blocker / "sub", notebooks_dir=tiny_notebooks)


def test_cli_exit_code_2_and_message(capsys):
    assert main(["run", "--profile", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
    assert main(["run", "--only", "zzz-no-such-notebook"]) == 2
    assert main(["run", "-p", "no_such_parameter=1"]) == 2
    assert "unknown parameter" in capsys.readouterr().err


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "00_getting_started" in out and "profile: str = 'quick'" in out


@pytest.mark.slow
def test_a_failing_notebook_does_not_stop_the_others_and_keeps_latest(tiny_notebooks, tmp_path):
    out = tmp_path / "reports"
    # a good run first: latest-smoke points to it
    good = plan_run("smoke", only="tiny", out=out, notebooks_dir=tiny_notebooks)
    summary = execute_plan(good, echo=lambda *a, **k: None)
    assert summary["status"] == "ok"
    assert (out / "latest-smoke").resolve() == good.run_dir.resolve() and not (out / "latest").exists()
    nb_dir = good.run_dir / "10_tiny"
    metrics = json.loads((nb_dir / "metrics.json").read_text())
    assert metrics["metrics"] == {"steps": 1, "scaled": 1.0}
    assert [c["verdict"] for c in metrics["claims"]] == ["reproduced", "not reproduced"]
    assert [c["ok"] for c in metrics["checks"]] == [True]
    assert (nb_dir / "line.png").stat().st_size > 1000
    html = (nb_dir / "10_tiny.html").read_text()
    assert "data:image/png;base64" in html  # figures embedded: readable without a server
    assert (nb_dir / "10_tiny.ipynb").exists()

    # then a run where one notebook fails
    bad = plan_run("smoke", out=out, notebooks_dir=tiny_notebooks, overrides={"steps": 4, "seed": 3})
    summary = execute_plan(bad, echo=lambda *a, **k: None)
    assert summary["status"] == "failed"
    by_name = {r["notebook"]: r for r in summary["notebooks"]}
    assert by_name["10_tiny"]["status"] == "ok" and by_name["10_tiny"]["metrics"]["steps"] == 4
    broken = by_name["20_broken"]
    assert broken["status"] == "failed" and "RuntimeError: planted failure" in broken["error"]
    assert broken["metrics"] == {"before_failure": 1}  # what it measured before failing is kept
    assert (bad.run_dir / "20_broken" / "20_broken.html").exists()
    index = (bad.run_dir / "index.html").read_text()
    assert "planted failure" in index and "failed" in index
    assert json.loads((bad.run_dir / "summary.json").read_text())["status"] == "failed"
    assert (out / "latest-smoke").resolve() == good.run_dir.resolve()  # last good report untouched


@pytest.mark.slow
def test_cli_run_exit_codes(tiny_notebooks, tmp_path, monkeypatch, capsys):
    import shammie.runner as runner

    real_find = runner.find_notebooks
    monkeypatch.setattr(runner, "find_notebooks", lambda folder=None: real_find(tiny_notebooks))
    out = tmp_path / "reports"
    assert main(["run", "--profile", "quick", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "FAILED notebooks: 20_broken" in captured.err and not (out / "latest").exists()
    assert main(["run", "--profile", "quick", "--only", "tiny", "--out", str(out), "-p", "steps=2"]) == 0
    assert (out / "latest-quick" / "index.html").exists() and not (out / "latest").exists()  # partial run
