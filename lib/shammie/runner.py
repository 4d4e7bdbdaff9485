"""Run the workbook: papermill every notebook at a profile, render HTML, gather metrics and claims.

    python -m shammie run --profile quick [--only PATTERN] [--out DIR] [-p name=value ...]
                          [--jobs N | --scheduler ADDR | --cluster slurm --cluster-config YAML]
    python -m shammie sweep NOTEBOOK -p seed=0..4 -p width=32,128 [--profile P] [--jobs N | ...]
    python -m shammie list
    python -m shammie strip [--check] [NOTEBOOK ...]

Everything the user typed is checked before anything runs. Notebooks run as Dask tasks (see
`shammie.distributed`: a local cluster of single-thread workers, one per core, by default). Each
run writes a new folder `<out>/runs/<time>-<profile>/` (created atomically: two runs never share
one); one notebook failing does not stop the others, and the command then exits 1. Ctrl-C and
SIGTERM mark the run interrupted and exit 130 and 143. `<out>/latest-<profile>` moves to a run
only when it ran every notebook and every notebook succeeded, and `<out>/latest` too when that run was a complete
`quick` or `full` run.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PROFILE_NAMES
from .core import ShammieError, repo_root, reports_dir
from .notebooks import (
    REQUIRED_PARAMETERS,
    check_value,
    find_notebooks,
    parse_assignment,
    read_parameters,
    strip_notebook,
)
from .results import read_json, write_json_atomic

__all__ = ["RunPlan", "plan_run", "execute_plan", "main", "DEFAULT_CELL_TIMEOUT"]

DEFAULT_CELL_TIMEOUT = {"smoke": 300, "quick": 900, "full": 6 * 3600}


@dataclass
class RunPlan:
    """What a run will do: which notebooks, with which parameters, into which folder."""

    profile: str
    notebooks: list[Path]
    parameters: dict[str, dict[str, Any]]  # notebook stem -> injected parameters
    out_root: Path
    run_dir: Path
    cell_timeout: int
    complete: bool  # every notebook of the workbook is in the run
    overrides: dict[str, Any] = field(default_factory=dict)


def _matches(nb: Path, pattern: str) -> bool:
    """Whether `pattern` names notebook `nb`: its number (`2` or `02`), a glob of its name (`0*`),
    or words of its name in order, the last one possibly cut short (`calibration`, `mode_conn`)."""
    p = pattern.strip().lower().removesuffix(".ipynb")
    stem = nb.stem.lower()
    number = stem.split("_", 1)[0]
    if p.isdigit():
        return number.isdigit() and int(number) == int(p)
    if any(ch in p for ch in "*?["):
        return fnmatch.fnmatch(stem, p) or fnmatch.fnmatch(nb.name.lower(), p)
    words, wanted = stem.split("_"), p.replace("-", "_").split("_")
    k = len(wanted)
    return any(words[i:i + k - 1] == wanted[:-1] and words[i + k - 1].startswith(wanted[-1]) and wanted[-1]
               for i in range(len(words) - k + 1))


def _select(notebooks: list[Path], only: str | None) -> list[Path]:
    if only is None:
        return notebooks
    patterns = [p.strip() for p in only.split(",")]
    if not any(patterns) or any(not p for p in patterns):
        raise ShammieError(f"--only {only!r} has an empty pattern: name notebooks by number or by words of their "
                           f"names, e.g. --only 02 or --only calibration,00")
    chosen = [nb for nb in notebooks if any(_matches(nb, p) for p in patterns)]
    if not chosen:
        names = ", ".join(nb.stem for nb in notebooks)
        raise ShammieError(f"--only {only!r} matches no notebook; the notebooks are: {names}")
    return chosen


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ShammieError(f"cannot write reports to {folder}: {err.strerror or err}. "
                           f"Choose a writable folder with --out DIR.") from err


def _validate_configs(chosen: list[Path], declared: dict, profile: str, overrides: dict[str, Any],
                      cell_timeout: int | None) -> None:
    """Each notebook's values (defaults plus overrides) against its theme config, before any kernel starts."""
    from .validate import check_cell_timeout, validate_parameters

    check_cell_timeout(cell_timeout)
    for nb in chosen:
        params = declared[nb.stem]
        values = {name: p.default for name, p in params.items()}
        values.update({k: check_value(params[k], v) for k, v in overrides.items() if k in params})
        # the device's name is checked here; whether it exists is the kernel's call (its worker may have a GPU)
        validate_parameters(nb, profile, values, device_available_here=False)


def plan_run(
    profile: str = "quick",
    only: str | None = None,
    out: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    seed: int | None = None,
    cell_timeout: int | None = None,
) -> RunPlan:
    """Validate everything the user asked for and return the plan; raises ShammieError with the fix."""
    if profile not in PROFILE_NAMES:
        raise ShammieError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILE_NAMES)}")
    everything = find_notebooks(notebooks_dir)
    if not everything:
        raise ShammieError(f"no notebooks found in {notebooks_dir or repo_root() / 'notebooks'}")
    chosen = _select(everything, only)
    overrides = dict(overrides or {})
    for reserved in ("profile", "out_dir"):
        if reserved in overrides:
            flag = "--profile" if reserved == "profile" else "--out"
            raise ShammieError(f"set {reserved} with {flag}, not -p")
    if seed is not None:
        overrides["seed"] = seed
    declared = {nb.stem: read_parameters(nb) for nb in chosen}
    for stem, params in declared.items():
        missing = [p for p in REQUIRED_PARAMETERS if p not in params]
        if missing:
            raise ShammieError(f"{stem}: its parameters cell lacks {', '.join(missing)}")
    for name, value in overrides.items():
        holders = [stem for stem, params in declared.items() if name in params]
        if not holders:
            import difflib

            known = sorted({p for params in declared.values() for p in params})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ShammieError(f"unknown parameter {name!r}{hint}; the selected notebooks take: {', '.join(known)}")
        for stem in holders:
            check_value(declared[stem][name], value)
    _validate_configs(chosen, declared, profile, overrides, cell_timeout)
    out_root = Path(out).resolve() if out else reports_dir()
    _check_writable(out_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out_root / "runs" / f"{stamp}-{profile}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_root / "runs" / f"{stamp}-{profile}-{n}"
    params = {}
    for nb in chosen:
        p = {"profile": profile, "out_dir": str(run_dir / nb.stem)}
        p.update({k: check_value(declared[nb.stem][k], v) for k, v in overrides.items() if k in declared[nb.stem]})
        params[nb.stem] = p
    return RunPlan(profile, chosen, params, out_root, run_dir,
                   cell_timeout or DEFAULT_CELL_TIMEOUT[profile], len(chosen) == len(everything), overrides)


# Variables no kernel may inherit from the process that starts it (a Dask worker, or a shell that sets
# them). Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers (to hand freed memory back to the
# system); any such setting also turns off glibc's adaptive mmap threshold, so in a kernel every tensor
# above 128 KiB is mapped afresh and page-faulted in on each allocation: the quick notebooks ran about 2x
# slower on this machine, half their CPU time in the operating system's page-fault handler.
KERNEL_UNSET = ("MALLOC_TRIM_THRESHOLD_",)


def _kernel_env() -> None:
    """Environment the notebook kernels inherit: batch mode, inline figures, this venv's kernelspec first,
    none of `KERNEL_UNSET`."""
    os.environ["SHAMMIE_BATCH"] = "1"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for name in KERNEL_UNSET:
        os.environ.pop(name, None)
    if os.environ.get("MPLBACKEND", "").lower() in ("agg", "module://matplotlib.backends.backend_agg"):
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # Agg would drop every figure
    share = Path(sys.prefix) / "share" / "jupyter"
    if (share / "kernels" / "python3").exists():
        paths = [str(share)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(paths))


def _render_html(ipynb: Path, html: Path) -> None:
    """One self-contained HTML file: images and MathJax embedded, nothing fetched from the network."""
    from .html_export import export_html

    export_html(ipynb, html)


def _error_summary(err: BaseException) -> str:
    ename = getattr(err, "ename", None)
    if ename:
        return f"{ename}: {getattr(err, 'evalue', '')}".strip()
    name = type(err).__name__
    if "DeadKernel" in name:
        return f"{name}: the kernel died (out of memory?)"
    return f"{name}: {err}"


#: while a notebook runs, its executed copy is saved at most this often (seconds); always once at the end
SAVE_EVERY = 20.0
_ENGINE = "shammie"


def _register_engine() -> str:
    """papermill's nbclient engine, saving the executed notebook at most every SAVE_EVERY seconds while
    it runs. papermill writes the whole notebook at the start and the end of every cell (about 1.5 s of
    CPU per notebook here, more as figures accumulate) for a live view of the file, which the runner
    does not need: progress reaches it through shammie.relay. The final save, done by papermill after
    the engine returns or raises (a failed cell, a timeout, a dead kernel), is never skipped."""
    from papermill.engines import NBClientEngine, papermill_engines

    if _ENGINE in papermill_engines._engines:
        return _ENGINE

    class ThrottledSaveEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            real_save = nb_man.save

            def save(**kw):
                if (nb_man.now() - nb_man.last_save_time).total_seconds() >= SAVE_EVERY:
                    real_save(**kw)

            nb_man.save = save
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                del nb_man.save  # papermill's notebook_complete() then saves for real

    papermill_engines.register(_ENGINE, ThrottledSaveEngine)
    return _ENGINE


def run_notebook(nb: Path, params: dict[str, Any], out_dir: Path, cell_timeout: int, *,
                 progress: Callable[[dict], None] | None = None, cwd: Path | None = None,
                 shown: dict[str, str] | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Execute one notebook with papermill into `out_dir`, render its HTML; never raises (but for
    interrupts). `progress` receives the cell being run and the notebook's progress-bar lines;
    `shown` maps paths (e.g. a worker's temporary `out_dir`) to those the reader should see in the
    executed notebook (the run folder's). `should_stop` (polled with the progress) returning True
    kills the kernel: the task was cancelled."""
    import logging

    import papermill as pm

    from .warmstart import WarmKernelManager

    # papermill's and nbclient's log (e.g. "Kernel died while waiting for execute reply" when a task is
    # stopped) would reach the terminal through Python's last-resort handler; the error is in the result
    if not logging.getLogger("papermill").handlers:
        logging.getLogger("papermill").addHandler(logging.NullHandler())
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb.name
    html = out_dir / f"{nb.stem}.html"
    t0 = time.perf_counter()
    status, error = "ok", None
    # the kernel's own log (e.g. ipykernel's note on TCP transport, its complaints when the runner stops
    # it) stays out of the runner's output; cell errors and output still go into the executed notebook
    kernel_args = ["--IPKernelApp.log_level=CRITICAL"]
    hooks: dict[str, Any] = {}
    watcher = None
    if progress is not None:
        import nbformat

        n_cells = len(nbformat.read(nb, as_version=4).cells) + 1  # papermill adds the injected parameters
        hooks["on_cell_execute"] = _cell_reporter(progress, n_cells)
        relay_file = Path(tempfile.mkstemp(prefix=".shammie-progress-", suffix=".log")[1])
        kernel_args.append("--IPKernelApp.exec_lines=try:\n    __import__('shammie.relay').relay.install("
                           f"{str(relay_file)!r})\nexcept Exception:\n    pass")
        watcher = _RelayWatcher(relay_file, progress, should_stop)
    try:
        # a warm kernel (shammie.warmstart: forked with torch already imported); shutdown_kernel="immediate":
        # once the last cell has answered, the kernel is killed rather than asked to exit; its outputs,
        # figures and metrics.json are written, and an interpreter holding torch and matplotlib spends
        # 1.5-2.5 s finalizing its modules
        pm.execute_notebook(str(nb.resolve()), str(executed), parameters=params, kernel_name="python3",
                            cwd=str((cwd or nb.parent).resolve()), execution_timeout=cell_timeout,
                            progress_bar=False, log_output=False, report_mode=False,
                            extra_arguments=kernel_args, shutdown_kernel="immediate", engine_name=_register_engine(),
                            kernel_manager_class=WarmKernelManager, **hooks)
    except BaseException as err:  # noqa: BLE001 - a failed notebook is reported, never fatal
        if isinstance(err, KeyboardInterrupt):
            raise
        status, error = "failed", _error_summary(err)
        (out_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
    finally:
        if watcher is not None:
            watcher.stop()
    if shown and executed.exists():
        text = executed.read_text(encoding="utf-8")
        for path, seen in shown.items():
            text = text.replace(path, seen)
        executed.write_text(text, encoding="utf-8")
    runtime = time.perf_counter() - t0
    if executed.exists():
        try:
            _render_html(executed, html)
        except Exception as err:  # noqa: BLE001
            (out_dir / "html-error.txt").write_text(str(err))
    metrics = read_json(out_dir / "metrics.json") if (out_dir / "metrics.json").exists() else {}
    info = read_json(out_dir / "run_info.json") if (out_dir / "run_info.json").exists() else {}
    if status == "ok" and info.get("status") != "finished":
        status, error = "failed", "the notebook did not call run.finish()"
    return {
        "notebook": nb.stem,
        "status": status,
        "error": error,
        "runtime_s": round(runtime, 1),
        "peak_memory_mb": info.get("peak_memory_mb"),
        "html": f"{out_dir.name}/{html.name}" if html.exists() else None,
        "ipynb": f"{out_dir.name}/{nb.name}" if executed.exists() else None,
        "parameters": params,
        "metrics": metrics.get("metrics", {}),
        "claims": metrics.get("claims", []),
        "checks": metrics.get("checks", []),
        "figures": [f"{out_dir.name}/{f}" for f in metrics.get("figures", [])],
    }


def _cell_reporter(progress: Callable[[dict], None], n_cells: int):
    """An nbclient hook: report the cell about to run (its number and first line of code)."""
    def on_cell_execute(cell, cell_index, **_):
        first = next((line.strip() for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#")), "")
        progress({"event": "cell", "cell": cell_index + 1, "cells": n_cells,
                  "source": first[:60] + ("…" if len(first) > 60 else "")})
    return on_cell_execute


class _RelayWatcher:
    """Tail the kernel's progress-relay file (see shammie.relay) and report its latest line."""

    def __init__(self, path: Path, progress: Callable[[dict], None], should_stop: Callable[[], bool] | None = None,
                 every: float = 0.5):
        self.path, self.progress, self.should_stop, self.every = path, progress, should_stop, every
        self._stop = threading.Event()
        self._pos = 0
        self.kernel_pid: int | None = None
        self._thread = threading.Thread(target=self._loop, name="shammie-relay", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only: the kernel may be writing the next one
        self._pos += end
        chunk = data[:end].decode("utf-8", errors="replace")
        lines = [ln.split("\t", 1)[-1] for ln in chunk.splitlines() if ln.strip()]
        for ln in [ln for ln in lines if ln.startswith("#pid ")]:
            self.kernel_pid = int(ln[5:])
        lines = [ln for ln in lines if not ln.startswith("#pid ")]
        if lines:
            self.progress({"event": "bar", "text": lines[-1]})

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._poll()
            try:
                stop = self.should_stop is not None and self.should_stop()
            except Exception:  # noqa: BLE001 - a check that fails never stops a notebook
                stop = False
            if stop and self.kernel_pid:
                try:
                    os.kill(self.kernel_pid, signal.SIGKILL)
                except OSError:
                    pass
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._poll()
        self.path.unlink(missing_ok=True)


def _counts_text(results: list[dict[str, Any]]) -> str:
    """'claims: 3 reproduced, 1 not reproduced, 0 inconclusive (of 4); checks 5/5 hold'."""
    from .report import verdict_counts

    k = verdict_counts(results)
    not_run = f", {k['not run']} not run (notebook failed)" if k.get("not run") else ""
    return (f"claims: {k['reproduced']} reproduced, {k['not reproduced']} not reproduced, {k['inconclusive']} "
            f"inconclusive{not_run} (of {k['claims']}); checks {k['checks'] - k['checks_failed']}/{k['checks']} hold")


def _point_link(link: Path, target: Path) -> None:
    """Atomically point symlink `link` at `target` (relative)."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def create_run_dir(out_root: Path, name: str) -> Path:
    """Create `out_root/name` (or `name-2`, `name-3`, ...) atomically: two runs started in the same
    second get two folders."""
    out_root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = out_root / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ShammieError(f"cannot find a free run folder name {name}-N under {out_root}")


def _claim_stub(c: dict[str, Any], reason: str) -> dict[str, Any]:
    """A claim that was not judged because its notebook failed (item of the claims table)."""
    keep = ("name", "statement", "rule", "paper", "source", "note", "unit")
    return {**{k: c[k] for k in keep if k in c}, "verdict": "not run", "reason": reason, "values": [], "n": 0,
            "mean": None, "ci": None, "p_value": None, "reproduced": False}


def add_not_run_claims(result: dict[str, Any], folder: Path, previous: dict[str, Any] | None = None) -> None:
    """A failed notebook's claims it never judged: those it preregistered, and those a previous good
    run of it judged, listed with the verdict "not run" (their rule and the paper's number kept)."""
    if result.get("status") == "ok":
        return
    judged = {c.get("name") for c in result.get("claims", [])}
    reason = "not run: the notebook failed before judging it"
    metrics = folder / "metrics.json"
    registered = read_json(metrics).get("preregistered", []) if metrics.exists() else []
    for c in [*registered, *(previous or {}).get("claims", [])]:
        if c.get("name") and c["name"] not in judged and c.get("verdict") != "not run":
            result.setdefault("claims", []).append(_claim_stub(c, reason))
            judged.add(c["name"])


def _previous_results(out_root: Path, profile: str) -> dict[str, dict[str, Any]]:
    """The last good run of this profile, notebook by notebook (runtimes to start long notebooks first,
    claims to list a failed notebook's claims)."""
    path = out_root / f"latest-{profile}" / "summary.json"
    try:
        return {r["notebook"]: r for r in read_json(path).get("notebooks", [])} if path.exists() else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def expected_runtimes(folder: Path, profile: str, previous: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Seconds each notebook is expected to take, to start the long ones first: the last good run's
    runtime where there is one, else the reference table `runtimes.json` beside the notebooks (seconds
    measured alone on a 2-core machine, per profile; only the order matters, so a stale table costs
    a little wall time, never a result)."""
    try:
        table = read_json(folder / "runtimes.json").get(profile, {})
    except (OSError, ValueError, AttributeError):
        table = {}
    out = {k: float(v) for k, v in table.items() if isinstance(v, (int, float))}
    out.update({k: float(r["runtime_s"]) for k, r in previous.items() if isinstance(r.get("runtime_s"), (int, float))})
    return out


def run_tasks(tasks, run_dir: Path, summary: dict[str, Any], cell_timeout: int, *, echo=print, jobs: int | None = None,
              scheduler: str | None = None, cluster: str | None = None, cluster_config: str | Path | None = None,
              on_result: Callable[[Any, dict], None] | None = None, write: Callable[[], None] | None = None,
              backend=None, started: float | None = None) -> None:
    """Run `tasks` (shammie.distributed.Task) where asked and write each one's folder into `run_dir`
    as it finishes; results go into summary["notebooks"] in the tasks' order. On Ctrl-C or SIGTERM
    the summary is marked interrupted (unfinished tasks listed), written, and the interrupt re-raised.
    `backend`: an already connected one (else connected here); it is closed at the end. `started`:
    the perf_counter() the run's elapsed time counts from (default: now)."""
    from .distributed import ProgressBoard, connect, lost_result, shared_folders, write_outputs

    board = ProgressBoard(echo) if backend is None else backend.board
    if backend is None:
        backend = connect(board, jobs=jobs, n_tasks=len(tasks), scheduler=scheduler, cluster=cluster,
                          cluster_config=cluster_config)
    board.announce_start = backend.kind != "here"
    order = {t.key: i for i, t in enumerate(tasks)}
    finished: set[str] = set()
    summary["workers"] = backend.description
    t0 = time.perf_counter() if started is None else started

    def save() -> None:
        runtimes = [r.get("runtime_s") or 0 for r in summary["notebooks"]]
        summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
        summary["runtime_sum_s"] = round(sum(runtimes), 1)
        summary["parallel_ratio"] = round(summary["elapsed_s"] / summary["runtime_sum_s"], 3) if sum(runtimes) else None
        if write:
            write()

    try:
        if backend.kind == "here":
            echo(f"[1/{len(tasks)}] {tasks[0].key} ...", flush=True) if tasks else None
        for task, result, files in backend.run(tasks, cell_timeout, have=lambda: shared_folders(run_dir)):
            if files:  # a task that returned nothing (its workers died) leaves no folder
                write_outputs(run_dir, task.key, files)
            attempts = board.attempts.get(task.key, 1)
            if attempts > 1:
                result["attempts"] = attempts
            if on_result:
                on_result(task, result)
            finished.add(task.key)
            summary["notebooks"].append(result)
            summary["notebooks"].sort(key=lambda r: order.get(r.get("key", r["notebook"]), 0))
            line = f"[{len(finished)}/{len(tasks)}] {task.key}: {result['status']} in {result['runtime_s']:.0f} s"
            line += f"; {_counts_text([result])}"
            if result.get("peak_memory_mb"):
                line += f"; peak memory {result['peak_memory_mb']:.0f} MiB"
            if attempts > 1:
                line += f"; ran {attempts} times (a worker died)"
            if result.get("error"):
                line += f"\n    error: {result['error']}"
            echo(line, flush=True)
            save()
            nxt = next((t for t in tasks if t.key not in finished), None)
            if backend.kind == "here" and nxt is not None:
                echo(f"[{len(finished) + 1}/{len(tasks)}] {nxt.key} ...", flush=True)
    except KeyboardInterrupt as err:
        how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C (SIGINT)"
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            summary["status"] = "interrupted"
            summary["interrupted_by"] = how
            summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            for t in tasks:
                if t.key not in finished:
                    r = lost_result(t, f"interrupted by {how} before it finished", 0.0)
                    r["status"] = "interrupted"
                    if on_result:
                        on_result(t, r)
                    summary["notebooks"].append(r)
            summary["notebooks"].sort(key=lambda r: order.get(r.get("key", r["notebook"]), 0))
            save()
            backend.close()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        raise
    except BaseException:
        backend.close()
        raise
    backend.close()


def open_backend(folder: Path, n_tasks: int, echo=print, **where: Any) -> tuple[float, Any, Path]:
    """Start a run or a sweep: kernel environment, clock, progress board, and the place the tasks run
    (`where`: jobs, scheduler, cluster, cluster_config), reached before the output folder exists;
    then that folder, made unique. Returns (start time, backend, folder)."""
    from .distributed import ProgressBoard, connect

    _kernel_env()
    started = time.perf_counter()
    backend = connect(ProgressBoard(echo), n_tasks=n_tasks, **where)
    try:
        folder = create_run_dir(folder.parent, folder.name)
    except BaseException:
        backend.close()
        raise
    return started, backend, folder


def execute_plan(plan: RunPlan, echo=print, *, jobs: int | None = None, scheduler: str | None = None,
                 cluster: str | None = None, cluster_config: str | Path | None = None) -> dict[str, Any]:
    """Run every notebook of `plan` (in parallel on Dask unless `jobs` is 1), write summary.json and
    index.html as notebooks finish, move the latest links on success. Raises KeyboardInterrupt
    (Terminated for SIGTERM) after marking the run interrupted."""
    from .distributed import Task
    from .report import write_index

    started, backend, run_dir = open_backend(plan.run_dir, len(plan.notebooks), echo, jobs=jobs,
                                             scheduler=scheduler, cluster=cluster, cluster_config=cluster_config)
    if run_dir != plan.run_dir:
        for p in plan.parameters.values():
            p["out_dir"] = str(run_dir / Path(p["out_dir"]).name)
        plan.run_dir = run_dir
    previous = _previous_results(plan.out_root, plan.profile)
    summary: dict[str, Any] = {
        "profile": plan.profile,
        "run": plan.run_dir.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "overrides": plan.overrides,
        "status": "running",
        "notebooks": [],
    }

    def write() -> None:
        write_json_atomic(plan.run_dir / "summary.json", summary)
        write_index(summary, plan.run_dir / "index.html")

    echo(f"shammie: running {len(plan.notebooks)} notebook(s) at profile {plan.profile!r} into {plan.run_dir}, "
         f"{backend.description}", flush=True)
    write()
    expected = expected_runtimes(plan.notebooks[0].parent if plan.notebooks else Path("."), plan.profile, previous)
    tasks = [Task(nb.stem, nb, plan.parameters[nb.stem], expected.get(nb.stem)) for nb in plan.notebooks]
    run_tasks(tasks, plan.run_dir, summary, plan.cell_timeout, echo=echo, backend=backend, write=write, started=started,
              on_result=lambda task, result: add_not_run_claims(result, plan.run_dir / task.key, previous.get(task.key)))
    failed = [r["notebook"] for r in summary["notebooks"] if r["status"] != "ok"]
    summary["status"] = "failed" if failed else "ok"
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write()
    if not failed and plan.complete:  # a partial run (--only) never becomes "the latest report"
        _point_link(plan.out_root / f"latest-{plan.profile}", plan.run_dir)
        if plan.profile != "smoke":
            _point_link(plan.out_root / "latest", plan.run_dir)
    return summary


def _cmd_list(args) -> int:
    for nb in find_notebooks():
        params = read_parameters(nb)
        print(nb.stem)
        for p in params.values():
            ann = f": {p.annotation}" if p.annotation else ""
            note = f"  # {p.comment}" if p.comment else ""
            print(f"    {p.name}{ann} = {p.default!r}{note}")
    return 0


def _cmd_strip(args) -> int:
    paths = [Path(p) for p in args.paths] or find_notebooks()
    changed = [p for p in paths if strip_notebook(p)]
    for p in changed:
        print(f"stripped {p}")
    if args.check and changed:
        print("shammie: notebooks had outputs or metadata; they are stripped now: commit them again", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args) -> int:
    overrides = dict(parse_assignment(a) for a in args.param)
    plan = plan_run(args.profile, args.only, args.out, overrides, seed=args.seed, cell_timeout=args.cell_timeout)
    try:
        summary = execute_plan(plan, jobs=args.jobs, scheduler=args.scheduler, cluster=args.cluster,
                               cluster_config=args.cluster_config)
    except KeyboardInterrupt as err:
        return _interrupted(err, plan.run_dir)
    print(f"shammie: {summary['status']} in {summary['elapsed_s']:.0f} s{_parallel_text(summary)}; "
          f"{_counts_text(summary['notebooks'])}; report: {plan.run_dir / 'index.html'}")
    if summary["status"] != "ok":
        failed = ", ".join(r["notebook"] for r in summary["notebooks"] if r["status"] != "ok")
        last = plan.out_root / f"latest-{plan.profile}"
        kept = (f"The last good report ({last.resolve()}) was left as it was." if last.exists()
                else f"There is no earlier good {plan.profile} report.")
        print(f"shammie: FAILED notebooks: {failed}. {kept}", file=sys.stderr)
        return 1
    return 0


def _parallel_text(summary: dict[str, Any]) -> str:
    """' (the notebooks' own runtimes sum to 230 s: this run took 0.52 of that)'."""
    if not summary.get("runtime_sum_s") or len(summary.get("notebooks", [])) < 2:
        return ""
    return (f" (the notebooks' own runtimes sum to {summary['runtime_sum_s']:.0f} s: "
            f"this run took {summary['parallel_ratio']:.2f} of that)")


def _interrupted(err: KeyboardInterrupt, run_dir: Path) -> int:
    """One line for an interrupted run; exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    import logging

    how, code = ("SIGTERM", 143) if isinstance(err, Terminated) else ("Ctrl-C", 130)
    # the cell that was running when its kernel was stopped leaves an asyncio task whose "Kernel died"
    # nobody collects; at exit asyncio would log it with a traceback under the one line said here
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    where = f"; {run_dir} is marked interrupted" if run_dir.exists() else ""
    print(f"shammie: interrupted by {how}: tasks cancelled, kernels stopped{where}; the latest report was left "
          f"as it was", file=sys.stderr)
    return code


def _cmd_sweep(args) -> int:
    from .sweep import cmd_sweep

    return cmd_sweep(args)


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", "-j", type=int, default=None,
                       help="notebooks run at once on a local Dask cluster of single-thread workers (default: the "
                            "number of cores; 1 runs them one by one in this process)")
    where.add_argument("--scheduler", default=None, metavar="ADDR",
                       help="send the notebooks to an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--cluster", choices=("slurm", "pbs"), default=None,
                       help="submit Dask workers as batch jobs (pip install -e '.[cluster]'; see --cluster-config)")
    parser.add_argument("--cluster-config", default=None, metavar="YAML",
                        help="queue, gpus, memory, walltime, python, ... of the --cluster jobs (see README)")


def positive_seconds(text: str) -> int:
    """argparse type of --cell-timeout: a positive whole number of seconds."""
    from .validate import check_cell_timeout

    try:
        return check_cell_timeout(int(text))
    except (ValueError, ShammieError) as err:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shammie", description="Run the shammie workbook's notebooks and build the report.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run notebooks with papermill and write a report")
    run.add_argument("--profile", default="quick", help="smoke (seconds), quick (default; minutes on a CPU) or full (GPU, paper scale)")
    run.add_argument("--only", default=None, help="comma-separated patterns of notebook names, e.g. 00,calibration")
    run.add_argument("--out", default=None, help="reports folder (default: reports/ in the checkout)")
    run.add_argument("--seed", type=int, default=None, help="seed for every notebook (default: each notebook's own)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a notebook parameter (repeatable)")
    run.add_argument("--cell-timeout", type=positive_seconds, default=None, help="seconds a single cell may run (> 0)")
    _add_execution_options(run)
    run.set_defaults(func=_cmd_run)
    sweep = sub.add_parser("sweep", help="run one notebook over a grid of parameters; claims over seeds")
    sweep.add_argument("notebook", help="the notebook: its number (02), name words, or file")
    sweep.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUES",
                       help="a grid axis: seed=0..4 (a range, ends included), width=32,128,512, or one value")
    sweep.add_argument("--profile", default="quick", help="smoke, quick (default) or full")
    sweep.add_argument("--out", default=None, help="reports folder (default: reports/); the sweep goes to <out>/sweeps/")
    sweep.add_argument("--cell-timeout", type=int, default=None, help="seconds a single cell may run")
    _add_execution_options(sweep)
    sweep.set_defaults(func=_cmd_sweep)
    lst = sub.add_parser("list", help="list the notebooks and their parameters")
    lst.set_defaults(func=_cmd_list)
    strip = sub.add_parser("strip", help="remove outputs and metadata from notebooks (all of notebooks/ by default)")
    strip.add_argument("paths", nargs="*", help="notebook files")
    strip.add_argument("--check", action="store_true", help="exit 1 if anything had to be stripped")
    strip.set_defaults(func=_cmd_strip)
    from .runs import add_runs_parser

    add_runs_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; bad input exits 2 with the fix, a failed notebook exits 1."""
    args = build_parser().parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return args.func(args)
    except ShammieError as err:
        print(f"shammie: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # before a run folder existed
        print(f"shammie: interrupted by {'SIGTERM' if isinstance(err, Terminated) else 'Ctrl-C'}; nothing was run",
              file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
