"""The runner: validation before anything runs (fast), and real papermill runs of tiny fixture notebooks (slow)."""

import base64
import json
import os

import nbformat
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
    # a good complete run first (the workbook without its broken notebook): latest-smoke points to it
    broken_nb = tiny_notebooks / "20_broken.ipynb"
    broken_src = broken_nb.read_bytes()
    broken_nb.unlink()
    good = plan_run("smoke", out=out, notebooks_dir=tiny_notebooks)
    summary = execute_plan(good, echo=lambda *a, **k: None)
    broken_nb.write_bytes(broken_src)
    assert summary["status"] == "ok" and good.complete
    assert (out / "latest-smoke").resolve() == good.run_dir.resolve() and not (out / "latest").exists()
    nb_dir = good.run_dir / "10_tiny"
    metrics = json.loads((nb_dir / "metrics.json").read_text())
    assert metrics["metrics"] == {"steps": 1, "scaled": 1.0}
    assert [c["verdict"] for c in metrics["claims"]] == ["reproduced", "not reproduced"]
    assert [c["ok"] for c in metrics["checks"]] == [True]
    assert (nb_dir / "line.png").stat().st_size > 1000
    html = (nb_dir / "10_tiny.html").read_text()
    assert "data:image/png;base64" in html  # figures embedded: readable without a server
    # the figure is drawn once: the page shows the very PNG saved as line.png, once (run.savefig shows
    # it, and the plt.show() after it finds nothing left to draw)
    shown = [o for c in nbformat.read(nb_dir / "10_tiny.ipynb", as_version=4).cells if c.cell_type == "code"
             for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 1 and base64.b64decode(shown[0]["data"]["image/png"]) == (nb_dir / "line.png").read_bytes()
    png_width = int.from_bytes((nb_dir / "line.png").read_bytes()[16:20], "big")  # saved at 150 dpi
    assert shown[0]["metadata"]["image/png"]["width"] == round(png_width * 110 / 150)  # shown at the page's 110

    # then a run where one notebook fails
    bad = plan_run("smoke", out=out, notebooks_dir=tiny_notebooks, overrides={"steps": 4, "seed": 3})
    summary = execute_plan(bad, echo=lambda *a, **k: None, jobs=1)  # in this process: Dask's runs are tested apart
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
    assert main(["run", "--profile", "quick", "--out", str(out), "--jobs", "1"]) == 1
    captured = capsys.readouterr()
    assert "FAILED notebooks: 20_broken" in captured.err and not (out / "latest").exists()
    assert "There is no earlier good quick report." in captured.err  # never claims a report that is not there
    assert main(["run", "--profile", "quick", "--only", "tiny", "--out", str(out), "-p", "steps=2"]) == 0
    assert not (out / "latest-quick").exists() and not (out / "latest").exists()  # a partial run is not "latest"


# -- selection, run folders, failed notebooks' claims, execution options (issue 10 items 4 and 6) ----------


def test_only_matches_numbers_and_name_words(tmp_path):
    from shammie.runner import _select

    names = ["00_getting_started", "01_calibration_lates", "02_mode_connectivity_repair", "10_tiny"]
    nbs = [tmp_path / f"{n}.ipynb" for n in names]
    pick = lambda only: [nb.stem for nb in _select(nbs, only)]  # noqa: E731
    assert pick("0") == ["00_getting_started"]  # a number is the notebook's number, not a substring
    assert pick("00") == ["00_getting_started"] and pick("2") == ["02_mode_connectivity_repair"]
    assert pick("10") == ["10_tiny"] and pick("1") == ["01_calibration_lates"]
    assert pick("calibration") == ["01_calibration_lates"] and pick("calib") == ["01_calibration_lates"]
    assert pick("mode_conn") == ["02_mode_connectivity_repair"] and pick("repair") == ["02_mode_connectivity_repair"]
    assert pick("0*") == names[:3] and pick("00,tiny") == ["00_getting_started", "10_tiny"]
    assert pick("02_mode_connectivity_repair.ipynb") == ["02_mode_connectivity_repair"]
    assert pick(None) == names
    for empty in ("", " ", ",", "00,"):
        with pytest.raises(ShammieError, match="empty pattern"):
            _select(nbs, empty)
    with pytest.raises(ShammieError, match="matches no notebook"):
        _select(nbs, "ting")  # not the start of a word


def test_two_runs_started_in_the_same_second_get_two_folders(tiny_notebooks, tmp_path):
    from shammie.runner import create_run_dir

    a = plan_run("smoke", out=tmp_path / "r", notebooks_dir=tiny_notebooks)
    b = plan_run("smoke", out=tmp_path / "r", notebooks_dir=tiny_notebooks)
    first = create_run_dir(a.run_dir.parent, a.run_dir.name)
    second = create_run_dir(b.run_dir.parent, a.run_dir.name)
    assert first != second and first.is_dir() and second.is_dir() and second.name == f"{first.name}-2"


def test_cli_refuses_empty_only(capsys):
    assert main(["run", "--only", ""]) == 2
    assert "empty pattern" in capsys.readouterr().err


def test_failed_notebooks_claims_are_listed_as_not_run(tmp_path):
    from shammie.claims import above
    from shammie.report import verdict_counts, write_index
    from shammie.runner import _counts_text, add_not_run_claims

    folder = tmp_path / "02_b"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"preregistered": [
        {"name": "gain", "statement": "A beats B", "rule": above(0.0).to_dict()}]}))
    previous = {"claims": [{"name": "gain", "statement": "A beats B", "verdict": "reproduced", "mean": 0.2},
                           {"name": "late", "statement": "C holds", "verdict": "not reproduced", "paper": 0.5}]}
    result = {"notebook": "02_b", "status": "failed", "error": "RuntimeError: boom", "runtime_s": 1.0, "claims": [],
              "checks": [], "parameters": {}}
    add_not_run_claims(result, folder, previous)
    assert [(c["name"], c["verdict"]) for c in result["claims"]] == [("gain", "not run"), ("late", "not run")]
    assert result["claims"][1]["paper"] == 0.5 and result["claims"][0]["rule"]["threshold"] == 0.0
    assert verdict_counts([result])["not run"] == 2
    assert "2 not run (notebook failed) (of 2)" in _counts_text([result])
    write_index({"run": "r", "status": "failed", "notebooks": [result]}, tmp_path / "index.html")
    page = (tmp_path / "index.html").read_text()
    assert "<b>2</b> not run (notebook failed)" in page and page.count("badge nr'>not run") == 2
    ok = {"status": "ok", "claims": []}
    add_not_run_claims(ok, folder, previous)
    assert ok["claims"] == []  # only failed notebooks get stubs


def test_unreachable_scheduler_is_a_clear_error_within_seconds(tiny_notebooks, tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = plan_run("smoke", out=tmp_path / "r", notebooks_dir=tiny_notebooks)
    t0 = time.perf_counter()
    with pytest.raises(ShammieError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        execute_plan(plan, echo=lambda *a, **k: None, scheduler=f"127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "r" / "runs").exists() or not any((tmp_path / "r" / "runs").iterdir())  # no work


def test_jobs_must_be_positive(tiny_notebooks, tmp_path):
    plan = plan_run("smoke", out=tmp_path / "r", notebooks_dir=tiny_notebooks)
    with pytest.raises(ShammieError, match="--jobs must be at least 1"):
        execute_plan(plan, echo=lambda *a, **k: None, jobs=0)


def test_expected_runtimes_take_the_last_run_first_then_the_reference_table(tmp_path):
    from shammie.runner import expected_runtimes

    assert expected_runtimes(tmp_path, "quick", {}) == {}, "no table, no run: nothing expected"
    (tmp_path / "runtimes.json").write_text(json.dumps({"_about": "x", "quick": {"a": 10, "b": 30, "c": "?"},
                                                        "smoke": {"a": 1}}))
    assert expected_runtimes(tmp_path, "quick", {}) == {"a": 10.0, "b": 30.0}
    assert expected_runtimes(tmp_path, "quick", {"a": {"runtime_s": 50.0}, "d": {}}) == {"a": 50.0, "b": 30.0}
    assert expected_runtimes(tmp_path, "full", {}) == {}
    (tmp_path / "runtimes.json").write_text("not json")
    assert expected_runtimes(tmp_path, "quick", {"a": {"runtime_s": 5}}) == {"a": 5.0}


def test_the_reference_runtime_table_names_only_notebooks_that_exist():
    from conftest import NOTEBOOKS

    table = json.loads((NOTEBOOKS[0].parent / "runtimes.json").read_text())
    stems = {p.stem for p in NOTEBOOKS}
    for profile, rows in table.items():
        if not profile.startswith("_"):
            assert set(rows) <= stems, f"runtimes.json names notebooks that do not exist: {set(rows) - stems}"
            assert all(isinstance(v, (int, float)) and v > 0 for v in rows.values())


@pytest.mark.slow
def test_the_executed_notebook_is_written_once_and_kept_when_the_kernel_dies(tmp_path, monkeypatch):
    """papermill would write the whole executed notebook twice per cell; the runner's engine writes it
    when it starts and when it ends (a 40-cell notebook here: 2 writes, not 88) and still writes it, with
    the output before the failure, when the kernel dies mid-run."""
    import papermill.engines

    from shammie.runner import run_notebook

    from conftest import make_notebook

    writes = []
    real_write = papermill.engines.write_ipynb
    monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (writes.append(path), real_write(nb, path)))
    many = tmp_path / "many.ipynb"
    make_notebook(many, "x = 0")
    nb = nbformat.read(many, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(f"x += {i}; print(x)") for i in range(40)]
    nbformat.write(nb, many)
    out = run_notebook(many, {}, tmp_path / "a", 60)
    assert out["ipynb"] and len(writes) == 2
    executed = nbformat.read(tmp_path / "a" / "many.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == str(sum(range(40)))

    dies = make_notebook(tmp_path / "dies.ipynb", "print('before the end')")
    nb = nbformat.read(dies, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import os; os._exit(3)"))
    nbformat.write(nb, dies)
    out = run_notebook(dies, {}, tmp_path / "b", 60)
    assert out["status"] == "failed" and "DeadKernel" in out["error"]
    executed = nbformat.read(tmp_path / "b" / "dies.ipynb", as_version=4)
    assert any("before the end" in o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
