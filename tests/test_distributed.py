"""Notebooks as Dask tasks (issue 11) and the runner's interrupts and progress (issue 10, items 5 and 7).

Fast: the pieces (progress lines, writing a task's folder, the kernel's thread settings).
Slow: fixture notebooks on a local cluster (`--jobs 2`, same metrics as a serial run), on a real
scheduler and workers started as subprocesses on loopback (one shared by the tests of this module:
a sweep from the command line connected by address, a killed worker retried or reported failed),
and a real runner subprocess stopped by Ctrl-C (to its process group, as a terminal does) and by
SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shammie.distributed import ProgressBoard, kernel_env, write_outputs
from shammie.runner import execute_plan, main, plan_run

from conftest import BODY_OK, make_notebook

PY = sys.executable
QUIET = {"echo": lambda *a, **k: None}


def test_kernel_env_asks_one_thread_per_pool(monkeypatch):
    monkeypatch.delenv("SHAMMIE_THREADS", raising=False)
    env = kernel_env()
    assert env["SHAMMIE_BATCH"] == "1" and env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    monkeypatch.setenv("SHAMMIE_THREADS", "2")
    assert kernel_env()["OMP_NUM_THREADS"] == "2" and kernel_env()["SHAMMIE_THREADS"] == "2"


def test_progress_board_prints_plain_throttled_lines():
    lines = []
    board = ProgressBoard(lambda text, **k: lines.append(text), interval=3600)
    board({"key": "01_a", "event": "start", "host": "h"})
    board({"key": "01_a", "event": "cell", "cell": 3, "cells": 9, "source": "fit(model)"})
    board({"key": "01_a", "event": "bar", "text": "epochs: 40%|####      | 4/10"})  # within the interval: held back
    board({"key": "02_b", "event": "cell", "cell": 1, "cells": 5, "source": ""})
    board({"key": "01_a", "event": "start", "host": "h2"})  # a retry is always announced
    assert lines == ["    started 01_a on h", "    01_a: cell 3/9 `fit(model)`", "    02_b: cell 1/5",
                     "    started 01_a on h2 (attempt 2: its previous worker died)"]
    assert board.attempts == {"01_a": 2} and not any("\r" in line for line in lines)
    board.interval = 0
    board({"key": "01_a", "event": "bar", "text": "epochs: 90%"})
    assert lines[-1] == "    01_a: epochs: 90%"


def test_relay_reaches_the_runner_as_whole_lines(tmp_path):
    from shammie.relay import LineFile
    from shammie.runner import _RelayWatcher

    got = []
    path = tmp_path / "relay.log"
    path.write_text("")
    watcher = _RelayWatcher(path, got.append, every=3600)  # polled by hand below
    sink = LineFile(path)
    sink.write("#pid 4242")
    sink.write("\rwarmup:  33%|###       | 1/3 [00:01<00:02]\x1b[A")
    with path.open("a") as fh:
        fh.write("17.0\twarmup:  66%|#####")  # the kernel is half-way through writing a line
    watcher._poll()
    assert watcher.kernel_pid == 4242 and got == [{"event": "bar", "text": "warmup:  33%|###       | 1/3 [00:01<00:02]"}]
    with path.open("a") as fh:
        fh.write("#     | 2/3\n")
    watcher.stop()
    assert got[-1] == {"event": "bar", "text": "warmup:  66%|######     | 2/3"} and not path.exists()


def test_installed_relay_carries_progress_bars_and_loads_no_torch(tmp_path, monkeypatch):
    """`relay.install` (run at kernel start) writes the kernel's pid at once and imports nothing heavy;
    `training.progress` bars then write plain lines to the relay file, disabled bars write nothing,
    and without install the bars are silent under the runner."""
    import subprocess

    import shammie.relay as relay
    from shammie.training import progress

    path = tmp_path / "relay.log"
    code = (f"import sys; from shammie import relay; relay.install({str(path)!r}); "
            "print('torch' in sys.modules, 'tqdm' in sys.modules)")
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]
    assert path.read_text().split("\t")[1].strip().startswith("#pid ")
    monkeypatch.setattr(relay, "_sink", None)
    monkeypatch.setenv("SHAMMIE_BATCH", "1")
    list(progress(range(3), desc="silent"))  # not installed: nothing anywhere
    monkeypatch.setattr(relay, "_sink", relay.LineFile(path))
    list(progress(range(3), desc="shown", mininterval=0))
    list(progress(range(3), desc="off", disable=True))
    lines = [ln.split("\t", 1)[1] for ln in path.read_text().splitlines()[1:]]
    assert lines and all(ln.startswith("shown:") and "\r" not in ln for ln in lines) and lines[-1].startswith("shown: 100%")


def test_write_outputs_is_all_or_nothing_and_shares_static_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_outputs(run, "01_a", {"01_a/metrics.json": b"{}", "01_a/figs/x.png": b"png", "_static/m.js": b"one"})
    write_outputs(run, "02_b", {"02_b/metrics.json": b"{}", "_static/m.js": b"two"})
    assert (run / "01_a" / "figs" / "x.png").read_bytes() == b"png" and (run / "02_b" / "metrics.json").exists()
    assert (run / "_static" / "m.js").read_bytes() == b"one"  # a shared file is written once
    assert sorted(p.name for p in run.iterdir()) == ["01_a", "02_b", "_static"]  # no partial folders left


# -- slow: real clusters -------------------------------------------------------------------------------

SLEEPY = '''
import os, time, pathlib
from shammie.training import progress
for _ in progress(range(3), desc="warmup"):
    time.sleep(0.6)
pathlib.Path({pidfile!r}).write_text(str(os.getpid()))
time.sleep(300)
'''

KILL_FIRST_WORKER = '''
import os, signal, pathlib, time
marker = pathlib.Path({marker!r})
if {always} or not marker.exists():
    marker.write_text("killed")
    os.kill(int(os.environ["JPY_PARENT_PID"]), signal.SIGKILL)  # the Dask worker that started this kernel
    time.sleep(60)
'''


def _metrics(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name / "metrics.json").read_text())


@pytest.mark.slow
def test_parallel_run_gives_the_same_metrics_as_a_serial_run(tiny_notebooks, tmp_path):
    serial = plan_run("smoke", out=tmp_path / "serial", notebooks_dir=tiny_notebooks, overrides={"steps": 2})
    s1 = execute_plan(serial, jobs=1, **QUIET)
    parallel = plan_run("smoke", out=tmp_path / "parallel", notebooks_dir=tiny_notebooks, overrides={"steps": 2})
    lines = []
    s2 = execute_plan(parallel, jobs=2, echo=lambda text, **k: lines.append(text))
    assert s1["workers"].startswith("in this process") and s2["workers"].startswith("local cluster of 2")
    for name in ("10_tiny", "20_broken"):
        assert _metrics(serial.run_dir, name) == _metrics(parallel.run_dir, name)
    assert [(r["notebook"], r["status"]) for r in s2["notebooks"]] == [("10_tiny", "ok"), ("20_broken", "failed")]
    assert s1["status"] == s2["status"] == "failed" and "planted failure" in s2["notebooks"][1]["error"]
    assert s2["runtime_sum_s"] > 0 and s2["parallel_ratio"] == pytest.approx(s2["elapsed_s"] / s2["runtime_sum_s"], rel=0.01)
    assert (parallel.run_dir / "10_tiny" / "10_tiny.html").exists() and (parallel.run_dir / "10_tiny" / "line.png").exists()
    executed = (parallel.run_dir / "10_tiny" / "10_tiny.ipynb").read_text()
    assert str(parallel.run_dir / "10_tiny") in executed and "shammie-task-" not in executed  # paths the reader knows
    assert sum("started" in line for line in lines) == 2 and any(line.startswith("[2/2]") for line in lines)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real `dask scheduler` and `dask worker` (2 single-thread workers) on loopback, as subprocesses."""
    pytest.importorskip("distributed")
    folder = tmp_path_factory.mktemp("dask")
    sched_file = folder / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}
    dask = [PY, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 120
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([PY, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard", "--memory-limit", "0"], env=env, cwd=folder,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_a_killed_worker_is_retried_once_then_reported_never_lost(dask_cluster, tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "30_killed_once.ipynb", KILL_FIRST_WORKER.format(marker=str(tmp_path / "once"), always=False) + BODY_OK)
    make_notebook(folder / "40_always_killed.ipynb", KILL_FIRST_WORKER.format(marker=str(tmp_path / "always"), always=True) + BODY_OK)
    # the retried notebook runs alone first: were both notebooks in flight, the always-killed one could take
    # down the worker the retry was queued on, a second death that Dask rightly counts against it too
    alone = plan_run("smoke", only="killed_once", out=tmp_path / "alone", notebooks_dir=folder)
    once = execute_plan(alone, scheduler=dask_cluster, **QUIET)["notebooks"][0]
    assert once["status"] == "ok" and once["attempts"] == 2 and once["metrics"]["steps"] == 1, once
    (tmp_path / "once").write_text("killed")  # in the full run below, the first notebook is not killed again
    plan = plan_run("smoke", out=tmp_path / "r", notebooks_dir=folder)
    summary = execute_plan(plan, scheduler=dask_cluster, **QUIET)
    again, always = summary["notebooks"]
    assert again["status"] == "ok"
    assert always["status"] == "failed" and "KilledWorker" in always["error"] and "died" in always["error"]
    assert summary["status"] == "failed" and not (tmp_path / "r" / "latest-smoke").exists()
    assert (plan.run_dir / "30_killed_once" / "metrics.json").exists()
    assert not (plan.run_dir / "40_always_killed").exists()  # nothing written half
    assert not [p for p in plan.run_dir.iterdir() if p.name.endswith(".partial")]
    assert "KilledWorker" in (plan.run_dir / "index.html").read_text()


@pytest.mark.slow
def test_cli_sweep_over_seeds_on_a_scheduler_given_by_address(dask_cluster, tiny_notebooks, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setenv("SHAMMIE_HOME", str(tiny_notebooks.parent))
    out = tmp_path / "reports"
    code = main(["sweep", "tiny", "-p", "seed=0..2", "-p", "scale=2.0", "--profile", "smoke", "--out", str(out),
                 "--scheduler", dask_cluster])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"scheduler {dask_cluster}" in captured.out and "[3/3] " in captured.out
    sweep_dir = next((out / "sweeps").iterdir())
    data = json.loads((sweep_dir / "sweep.json").read_text())
    assert data["status"] == "ok" and data["workers"] == f"scheduler {dask_cluster}"
    assert [r["cell"] for r in data["notebooks"]] == [{"seed": s, "scale": 2.0} for s in range(3)]
    rows = {(r["claim"], r["group_label"]): r for r in data["aggregate"]}
    assert set(rows) == {("steps_positive", "scale=2.0"), ("always_false", "scale=2.0")}
    r = rows[("steps_positive", "scale=2.0")]
    assert (r["k"], r["n"], r["mean"], r["ci"]) == (3, 3, 1.0, [1.0, 1.0]) and [s["seed"] for s in r["seeds"]] == [0, 1, 2]
    assert rows[("always_false", "scale=2.0")]["k"] == 0
    assert _metrics(sweep_dir, data["notebooks"][1]["key"])["metrics"] == {"steps": 1, "scaled": 2.0}
    page = (sweep_dir / "index.html").read_text()
    assert "3 of 3" in page and "claims_over_grid.png" in page and (sweep_dir / "claims_over_grid.png").stat().st_size > 5000
    assert "steps_positive [scale=2.0]: reproduced 3 of 3" in captured.out


def _spawn_runner(home: Path, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SHAMMIE_HOME": str(home), "SHAMMIE_PROGRESS_INTERVAL": "0", "PYTHONUNBUFFERED": "1"}
    # as from a terminal: SIGINT at its default, even when this test runs under a shell that started it in
    # the background with SIGINT ignored (POSIX), which Python would otherwise inherit and keep ignoring
    return subprocess.Popen([PY, "-m", "shammie", "run", "--profile", "smoke", "--out", str(out), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(paths: list[Path], proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the runner ended or stalled before the kernels started:\n{out}\n{err}")
        time.sleep(0.2)


def _gone(pid: int, within: float = 15) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm-serial", "ctrl-c-parallel", "ctrl-c-scheduler"])
def test_interrupt_stops_kernels_and_marks_the_run(how, tmp_path, request):
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    names = ["50_sleepy", "51_sleepy"] if how == "ctrl-c-parallel" else ["50_sleepy"]
    pids = [tmp_path / f"{n}.pid" for n in names]
    for name, pid in zip(names, pids):
        make_notebook(home / "notebooks" / f"{name}.ipynb", SLEEPY.format(pidfile=str(pid)))
    out = tmp_path / "reports"
    where = {"sigterm-serial": ["--jobs", "1"], "ctrl-c-parallel": ["--jobs", "2"],
             "ctrl-c-scheduler": ["--scheduler", request.getfixturevalue("dask_cluster")]}[how]
    proc = _spawn_runner(home, out, "--only", "sleepy", *where)
    _wait_for(pids, proc)
    kernels = [int(p.read_text()) for p in pids]
    if how == "sigterm-serial":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole foreground group
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the runner did not stop within 90 s")
    assert proc.returncode == (143 if how == "sigterm-serial" else 130), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "interrupted by " + ("SIGTERM" if how == "sigterm-serial" else "Ctrl-C") in stderr
    assert all(_gone(pid) for pid in kernels), "a kernel was left running"  # on a remote worker too
    run_dir = next((out / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and {r["status"] for r in summary["notebooks"]} == {"interrupted"}
    assert "interrupted" in (run_dir / "index.html").read_text()
    assert not (out / "latest-smoke").exists() and not (out / "latest").exists()
    # progress reached the terminal as plain lines: the cell being run and the notebook's own bar
    assert "50_sleepy: cell" in stdout and "50_sleepy: " in stdout and "warmup:" in stdout and "\r" not in stdout


@pytest.mark.slow
def test_a_tasks_kernel_does_not_inherit_the_workers_malloc_trim_setting(tmp_path):
    """Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536; a kernel that inherits it runs its
    torch code about 2x slower here (glibc's adaptive mmap threshold is then off: every tensor above
    128 KiB is mapped and page-faulted afresh). The kernel a task starts does not see it."""
    from shammie.distributed import Task, _spec, execute_task

    seen = tmp_path / "seen.txt"
    body = ("import os\n"
            f"open({str(seen)!r}, 'w').write(repr((os.environ.get('MALLOC_TRIM_THRESHOLD_'), "
            "os.environ.get('OMP_NUM_THREADS'))))\n")
    nb = make_notebook(tmp_path / "60_env.ipynb", body)
    saved = dict(os.environ)
    try:
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # as in a Dask worker
        out = execute_task(_spec(Task("60_env", nb, {}), 120, "test-topic"), report=lambda msg: None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert seen.exists(), out["result"].get("error")  # (the fixture never calls run.finish(): "failed" is expected)
    assert seen.read_text() == repr((None, "1"))
