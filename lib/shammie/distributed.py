"""Notebooks as Dask tasks: on a local cluster of single-thread workers, an existing scheduler, or
a Slurm/PBS cluster (see `shammie.cluster`).

A task (`execute_task`) runs one notebook with papermill in a temporary folder of the worker and
returns everything it wrote (executed notebook, HTML, figures, metrics) as bytes; the client writes
the run folder, so workers need no shared filesystem and nothing is ever written half. Progress
(the cell being run, the notebook's own progress bars) travels as Dask events to the client.

Faults: a worker that dies while running a task has the task retried once (on the local cluster;
an external scheduler applies its own `distributed.scheduler.allowed-failures`), then the task is
reported failed with the reason. An unreachable scheduler is an error within `SCHEDULER_TIMEOUT`
seconds, before any work. Ctrl-C cancels the tasks and stops the local cluster.

With one job (or one notebook) and no scheduler, tasks run in this process, one after another,
through the same `execute_task`: no cluster is started.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import ShammieError

__all__ = ["Task", "Backend", "connect", "execute_task", "write_outputs", "ProgressBoard",
           "SCHEDULER_TIMEOUT", "default_jobs"]

SCHEDULER_TIMEOUT = 5  # seconds to reach a scheduler before giving up
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class Task:
    """One notebook execution: `key` names its folder in the run folder (the notebook's stem in a run,
    a grid cell's label in a sweep); `parameters` are injected (out_dir = the folder shown in reports)."""

    key: str
    notebook: Path
    parameters: dict[str, Any]
    expected_s: float | None = None  # a previous run's runtime, to start long notebooks first


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def kernel_env() -> dict[str, str]:
    """What a task's kernel must see whatever machine it runs on: batch mode, hash seed, one thread
    per BLAS/OpenMP pool (the notebooks' setup call sets torch's own threads)."""
    threads = os.environ.get("SHAMMIE_THREADS", "1")
    env = {"SHAMMIE_BATCH": "1", "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    env.update({v: threads for v in THREAD_VARS})
    if "SHAMMIE_THREADS" in os.environ:
        env["SHAMMIE_THREADS"] = threads
    return env


def _spec(task: Task, cell_timeout: int, topic: str, have: Callable[[], list[str]] | None = None) -> dict[str, Any]:
    nb = Path(task.notebook)
    return {"key": task.key, "name": nb.name, "path": str(nb.resolve()), "source": nb.read_text(encoding="utf-8"),
            "cwd": str(nb.parent.resolve()), "parameters": dict(task.parameters), "cell_timeout": cell_timeout,
            "env": kernel_env(), "topic": topic, "have": have() if have else []}


def _worker_reporter(topic: str, key: str) -> Callable[[dict], None]:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda msg: None
    return lambda msg: worker.log_event(topic, {"key": key, **msg})


def _cancel_check() -> Callable[[], bool] | None:
    """On a Dask worker: whether the task running in this thread was cancelled (the client went away
    or pressed Ctrl-C); then its kernel is stopped instead of running on for nobody."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        worker, key = get_worker(), thread_state.key
    except (ImportError, ValueError, AttributeError):
        return None

    def cancelled() -> bool:
        ts = worker.state.tasks.get(key)
        return ts is None or ts.state in ("cancelled", "released", "forgotten")

    return cancelled


def execute_task(spec: dict[str, Any], report: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run one notebook (on a worker, or here) in a temporary folder; return its result (as in
    summary.json) and its files ({relative path: bytes}). Never raises for a failing notebook."""
    from . import runner

    report = report or _worker_reporter(spec["topic"], spec["key"])
    report({"event": "start", "host": socket.gethostname(), "pid": os.getpid()})
    os.environ.update(spec["env"])
    runner._kernel_env()
    tmp = Path(tempfile.mkdtemp(prefix="shammie-task-"))
    try:
        src = tmp / ".source" / spec["name"]
        src.parent.mkdir()
        src.write_text(spec["source"], encoding="utf-8")
        out = tmp / spec["key"]
        cwd = Path(spec["cwd"]) if Path(spec["cwd"]).is_dir() else src.parent
        params = {**spec["parameters"], "out_dir": str(out)}
        shown = {str(src): spec["path"]}
        if spec["parameters"].get("out_dir"):
            shown[str(out)] = str(spec["parameters"]["out_dir"])
        result = runner.run_notebook(src, params, out, spec["cell_timeout"], progress=report, cwd=cwd, shown=shown,
                                     should_stop=_cancel_check())
        result["parameters"] = spec["parameters"]
        # the notebook's folder, and what its export shares with the run (e.g. _static/) unless the
        # client has it already
        skip = {".source", *spec.get("have", [])}
        files = {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(tmp.rglob("*"))
                 if p.is_file() and p.relative_to(tmp).parts[0] not in skip}
        return {"result": result, "files": files}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_outputs(run_dir: Path, key: str, files: dict[str, bytes]) -> Path:
    """Write a task's files (paths relative to the run folder) into `run_dir`: its own folder `key`
    all at once (a hidden folder renamed into place); shared files (e.g. `_static/...`) only where
    absent, each atomically."""
    final = run_dir / key
    partial = run_dir / f".{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for rel, data in files.items():
        head, _, rest = rel.partition("/")
        if head == key and rest:
            path = partial / rest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            continue
        path = run_dir / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def shared_folders(run_dir: Path) -> list[str]:
    """Top-level folders of the run that tasks share (`_static`): a task need not send them again."""
    return sorted(p.name for p in Path(run_dir).iterdir() if p.is_dir() and p.name.startswith("_")) \
        if Path(run_dir).is_dir() else []


def lost_result(task: Task, error: str, runtime_s: float) -> dict[str, Any]:
    """The result of a task that returned nothing (its worker died, it was cancelled)."""
    return {"notebook": Path(task.notebook).stem, "status": "failed", "error": error, "runtime_s": round(runtime_s, 1),
            "peak_memory_mb": None, "html": None, "ipynb": None, "parameters": task.parameters, "metrics": {},
            "claims": [], "checks": [], "figures": []}


class ProgressBoard:
    """Progress of the running notebooks as plain lines (no carriage returns): a line when a task
    starts, and per notebook at most one line every `interval` seconds with the cell being run and
    the notebook's latest progress bar, printed only when it changed."""

    def __init__(self, echo: Callable[..., Any] = print, interval: float | None = None, announce_start: bool = True):
        self.echo = echo
        self.interval = float(os.environ.get("SHAMMIE_PROGRESS_INTERVAL", 15)) if interval is None else interval
        self.announce_start = announce_start
        self.state: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, msg: dict[str, Any]) -> None:
        key = msg.get("key", "?")
        with self._lock:
            st = self.state.setdefault(key, {"cell": "", "bar": "", "printed": "", "at": None})
            event = msg.get("event")
            if event == "start":
                self.attempts[key] = self.attempts.get(key, 0) + 1
                st.update(cell="", bar="")
                if self.announce_start or self.attempts[key] > 1:
                    again = f" (attempt {self.attempts[key]}: its previous worker died)" if self.attempts[key] > 1 else ""
                    self.echo(f"    started {key} on {msg.get('host', '?')}{again}", flush=True)
                return
            if event == "cell":
                st["cell"] = f"cell {msg['cell']}/{msg['cells']}" + (f" `{msg['source']}`" if msg.get("source") else "")
            elif event == "bar":
                st["bar"] = msg.get("text", "")
            line = " | ".join(p for p in (st["cell"], st["bar"]) if p)
            now = time.monotonic()
            if line and line != st["printed"] and (st["at"] is None or now - st["at"] >= self.interval):
                st["printed"], st["at"] = line, now
                self.echo(f"    {key}: {line}", flush=True)

    def __call__(self, msg: dict[str, Any]) -> None:
        self.update(msg)


class Backend:
    """Where tasks run. `run(tasks)` yields (task, result, files) as tasks finish, in any order."""

    kind = "here"
    description = "in this process, one notebook at a time"

    def __init__(self, board: ProgressBoard):
        self.board = board

    def run(self, tasks: list[Task], cell_timeout: int, have: Callable[[], list[str]] | None = None,
            ) -> Iterator[tuple[Task, dict[str, Any], dict[str, bytes]]]:
        for task in _order(tasks):
            payload = execute_task(_spec(task, cell_timeout, "", have),
                                   report=lambda m, k=task.key: self.board({"key": k, **m}))
            yield task, payload["result"], payload["files"]

    def close(self) -> None:
        pass


def _order(tasks: list[Task]) -> list[Task]:
    """Longest expected first (unknown counts as long), then the plan's order: the last notebook to
    start is a short one, so the workers finish together."""
    return sorted(tasks, key=lambda t: -(t.expected_s if t.expected_s is not None else float("inf")))


class DaskBackend(Backend):
    """Tasks on a Dask cluster: at most as many in flight as the cluster has worker threads, so a
    worker holds only the task it runs (a dying worker takes no waiting task with it)."""

    kind = "dask"

    def __init__(self, board: ProgressBoard, client, cluster=None, description: str = ""):
        super().__init__(board)
        self.client = client
        self.cluster = cluster
        self.description = description
        self.topic = f"shammie-progress-{uuid.uuid4().hex[:12]}"
        self._running: dict[Any, tuple[Task, float]] = {}
        client.subscribe_topic(self.topic, lambda event: self.board(event[1]))

    def _slots(self) -> int:
        try:
            return sum(self.client.nthreads().values())
        except Exception:  # noqa: BLE001 - a transient scheduler hiccup: keep what runs
            return len(self._running)

    def run(self, tasks: list[Task], cell_timeout: int, have: Callable[[], list[str]] | None = None,
            ) -> Iterator[tuple[Task, dict[str, Any], dict[str, bytes]]]:
        pending = _order(tasks)
        waited = False
        while pending or self._running:
            slots = self._slots()
            if slots == 0 and not self._running and not waited:
                self.board.echo(f"    waiting for Dask workers ({self.description})", flush=True)
                waited = True
            while pending and len(self._running) < slots:
                task = pending.pop(0)
                fut = self.client.submit(execute_task, _spec(task, cell_timeout, self.topic, have),
                                         key=f"shammie-{task.key}-{uuid.uuid4().hex[:8]}", pure=False)
                self._running[fut] = (task, time.perf_counter())
            done = [f for f in self._running if f.done()]
            if not done:
                time.sleep(0.25)
                continue
            for fut in done:
                task, t0 = self._running.pop(fut)
                if fut.status == "finished":
                    try:
                        payload = fut.result()
                    except Exception as err:  # noqa: BLE001 - lost in transfer: report, go on
                        payload = {"result": lost_result(task, _task_error(err), time.perf_counter() - t0), "files": {}}
                else:
                    try:
                        err = fut.exception()
                    except BaseException as exc:  # noqa: BLE001 - cancelled futures raise here
                        err = exc
                    payload = {"result": lost_result(task, _task_error(err), time.perf_counter() - t0), "files": {}}
                fut.release()
                yield task, payload["result"], payload["files"]

    def cancel(self) -> None:
        if self._running:
            try:
                self.client.cancel(list(self._running), force=True)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            self._running.clear()

    def close(self) -> None:
        self.cancel()
        _quiet_close(self.client, self.cluster)


def _quiet_close(client, cluster) -> None:
    for thing in (client, cluster):
        if thing is None:
            continue
        try:
            thing.close(timeout=10) if thing is client else thing.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def _task_error(err: BaseException | None) -> str:
    name = type(err).__name__
    if name == "KilledWorker":
        return ("KilledWorker: the worker running this notebook died (killed, or out of memory) and so did the one "
                "that retried it; nothing of it was written")
    if name == "CancelledError":
        return "CancelledError: the task was cancelled (its scheduler or worker went away)"
    return f"{name}: {err}"


def _silence_dask() -> None:
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker",
                 "distributed.core", "distributed.comm", "distributed.batched", "distributed.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _dask_config():
    import dask

    return dask.config.set({
        "distributed.scheduler.allowed-failures": 1,  # a task whose worker died is retried once
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.worker.daemon": False,
        "distributed.comm.timeouts.connect": f"{SCHEDULER_TIMEOUT}s",
        # a task is one notebook for minutes: no statistical profiler sampling every thread each 10 ms,
        # and a slower event-loop tick, so the workers' own CPU goes to the kernels on a 2-core machine
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "200ms",
    })


def connect(board: ProgressBoard, *, jobs: int | None = None, n_tasks: int = 1, scheduler: str | None = None,
            cluster: str | None = None, cluster_config: str | Path | None = None) -> Backend:
    """Start (or reach) where the tasks will run. Raises ShammieError, before any work, when the
    scheduler cannot be reached or the cluster cannot be built."""
    if sum(x is not None for x in (scheduler, cluster)) > 1:
        raise ShammieError("choose one of --scheduler and --cluster")
    if jobs is not None and jobs < 1:
        raise ShammieError(f"--jobs must be at least 1, got {jobs}")
    if scheduler is None and cluster is None:
        jobs = min(jobs or default_jobs(), max(n_tasks, 1))
        if jobs == 1:
            return Backend(board)
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ShammieError("parallel runs need Dask: pip install 'dask[distributed]' (or run with --jobs 1)") from err
    _silence_dask()
    if scheduler is not None:
        address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
        try:
            with _dask_config():
                client = Client(address, timeout=f"{SCHEDULER_TIMEOUT}s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ShammieError(f"cannot reach the Dask scheduler at {address} (no answer within {SCHEDULER_TIMEOUT} s): "
                               f"start one with `dask scheduler` and workers with `dask worker {address} --nthreads 1`, "
                               f"or run without --scheduler") from err
        return DaskBackend(board, client, None, f"scheduler {address}")
    if cluster is not None:
        from .cluster import make_cluster

        with _dask_config():
            job_cluster = make_cluster(cluster, cluster_config)
        job_cluster.scale(jobs=min(n_tasks, job_cluster.shammie_max_jobs))
        client = Client(job_cluster, set_as_default=False)
        return DaskBackend(board, client, job_cluster, f"{cluster} cluster")
    # workers inherit SIGINT ignored: Ctrl-C in a terminal reaches the whole process group, and the
    # client alone decides what to stop (kernels run in their own sessions already)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        with _dask_config(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "port 8787 in use" from another run's scheduler
            local = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                 memory_limit=0, silence_logs=logging.CRITICAL)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    client = Client(local, set_as_default=False)
    return DaskBackend(board, client, local, f"local cluster of {jobs} single-thread workers")
