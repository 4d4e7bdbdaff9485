"""The notebook's setup call: resolve the profile into a config, seed, pick the device and threads,
bind a results recorder to the run folder, and print what is running where.

    run = shammie.start("00_getting_started", GettingStartedConfig, profile=profile, seed=seed,
                        device=device, out_dir=out_dir, epochs=epochs)
    run.cfg, run.device, run.record(...), run.preregister(...), run.claim(...), run.check(...),
    run.md("...{x:.2f}...", x=...), run.savefig(fig, "name"), run.finish()
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from . import __version__
from .config import ProfileConfig
from .core import (
    ShammieError,
    configure_threads,
    get_device,
    in_batch_mode,
    repo_root,
    reports_dir,
    seed_everything,
)
from .plotting import save_figure, set_theme, show_saved
from .prose import claim_sentence, claims_markdown, render
from .results import Recorder, to_jsonable, write_json_atomic

__all__ = ["Run", "start", "peak_memory_mb"]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _git_sha() -> str:
    head = repo_root() / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            target = repo_root() / ".git" / ref[5:]
            if target.exists():
                return target.read_text().strip()[:12]
            packed = repo_root() / ".git" / "packed-refs"
            for line in packed.read_text().splitlines() if packed.exists() else []:
                if line.endswith(ref[5:]):
                    return line.split()[0][:12]
            return "unknown"
        return ref[:12]
    except OSError:
        return "unknown"


class Run:
    """A notebook run: its config, device, seed, output folder and recorder."""

    def __init__(self, notebook: str, cfg: ProfileConfig, seed: int, device: torch.device, out_dir: Path, threads: int):
        self.notebook = notebook
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.out_dir = out_dir
        self.threads = threads
        self.started = time.time()
        self._t0 = time.perf_counter()
        self.recorder = Recorder(out_dir, notebook, cfg.profile, seed, config=cfg.to_dict())
        self.timings: dict[str, float] = {}  # seconds of the blocks timed with run.time(name)
        self.machine_dependent: dict[str, Any] = {}  # run.record_time(name, value)
        self._write_info(status="running")

    # -- recording ---------------------------------------------------------------------------
    def record(self, name: str, value: Any) -> Any:
        """Record a metric (see Recorder.record)."""
        return self.recorder.record(name, value)

    def preregister(self, name: str, statement: str, rule, *, paper: Any = None, source: str = "",
                    note: str = "", unit: str = "seed") -> None:
        """Fix a claim's statement, rule and the paper's number before the experiment (see Recorder.preregister)."""
        self.recorder.preregister(name, statement, rule, paper=paper, source=source, note=note, unit=unit)

    def claim(self, name: str, values: Any, statement: str | None = None, rule=None, *, paper: Any = None,
              source: str = "", note: str = "", unit: str = "seed", preconditions=()):
        """Judge a paper claim on per-seed (or per-pair) `values` by its rule (see Recorder.claim)."""
        return self.recorder.claim(name, values, statement, rule, paper=paper, source=source, note=note,
                                   unit=unit, preconditions=preconditions)

    def not_run(self, name: str, reason: str) -> None:
        """Record a preregistered claim this profile does not run, with the reason (see Recorder.not_run)."""
        self.recorder.not_run(name, reason)

    def check(self, name: str, statement: str, value: Any, expected: Any = None, ok: bool | None = None,
              note: str = ""):
        """Record an identity or invariant of correct code; a failed one fails the notebook at finish()."""
        rec = self.recorder.check(name, statement, value, expected, ok, note)
        if not rec.ok:
            print(f"CHECK FAILED: {statement}: value {value!r}, expected {expected!r}", file=sys.stderr)
        return rec

    def md(self, template: str, /, **values: Any):
        """Markdown rendered from recorded numbers: `template.format(**values)`, numbers to 4 significant
        digits unless a format spec is given (see shammie.prose.render)."""
        from IPython.display import Markdown

        return Markdown(render(template, **values))

    def claim_record(self, name: str) -> dict[str, Any]:
        """A recorded claim as a dict (as in metrics.json), to render prose from."""
        for c in self.recorder.claims:
            if c.name == name:
                return to_jsonable(c.to_dict())
        raise ShammieError(f"no claim named {name!r} has been judged yet")

    def results_md(self, names: list[str] | None = None):
        """The verdict of each judged claim (all, or `names`) as markdown sentences rendered from the records."""
        from IPython.display import Markdown

        chosen = [c for c in self.recorder.claims if names is None or c.name in names]
        return Markdown("\n".join(f"- {claim_sentence(to_jsonable(c.to_dict()))}" for c in chosen))

    def savefig(self, fig: plt.Figure, name: str) -> Path:
        """Save `fig` as `<out_dir>/<name>.png`. In a notebook drawing inline, that same PNG is what the
        page shows (drawn once; `plotting.show_saved`), and the `plt.show()` after this finds nothing
        left to draw; elsewhere `fig` stays open for `plt.show()`."""
        path = save_figure(fig, self.out_dir / name)
        self.recorder.add_figure(path.name)
        show_saved(fig, path)
        return path

    def record_time(self, name: str, value: Any) -> Any:
        """Record a measurement that depends on the machine (seconds, a cost ratio in CPU time) in
        run_info.json, not metrics.json: metrics stay identical for the same seed and profile."""
        self.machine_dependent[name] = to_jsonable(value)
        self._write_info(status="running")
        return value

    def time(self, name: str):
        """Context manager that records the wall-clock seconds of a block in run_info.json (not metrics)."""
        run = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.perf_counter()
                return self

            def __exit__(self, *exc):
                run.timings[name] = round(time.perf_counter() - self.t0, 3)
                run._write_info(status="running")
                return False

        return _Timer()

    # -- summary -----------------------------------------------------------------------------
    def _write_info(self, status: str) -> None:
        write_json_atomic(self.out_dir / "run_info.json", {
            "notebook": self.notebook,
            "status": status,
            "profile": self.cfg.profile,
            "seed": self.seed,
            "device": str(self.device),
            "threads": self.threads,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "elapsed_s": round(time.perf_counter() - self._t0, 2),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "timings_s": self.timings,
            "machine_dependent": self.machine_dependent,
            "versions": {"shammie": __version__, "python": platform.python_version(), "torch": torch.__version__},
            "git": _git_sha(),
        })

    def finish(self):
        """Close the record: preregistered claims never measured become inconclusive; write the final
        metrics and run info; return the claims and checks tables to display. A failed check fails the
        notebook here (after everything was written), naming each failed check."""
        from IPython.display import Markdown

        self.recorder.close_registrations()
        failed = [c for c in self.recorder.checks if not c.ok]
        if failed:
            self._write_info(status="failed")
            names = "; ".join(f"{c.name} ({c.statement}: value {c.value!r}, expected {c.expected!r})" for c in failed)
            raise ShammieError(f"{len(failed)} check(s) failed, so the code is not doing what it should: {names}")
        self._write_info(status="finished")
        data = self.recorder.to_dict()
        return Markdown(claims_markdown(data["claims"], data["checks"]))

    def __repr__(self) -> str:
        return f"Run({self.notebook!r}, profile={self.cfg.profile!r}, seed={self.seed}, device={self.device}, out_dir={str(self.out_dir)!r})"


def start(
    notebook: str,
    config_cls: type[ProfileConfig],
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str = "auto",
    out_dir: str | None = None,
    threads: int | None = None,
    quiet: bool = False,
    **overrides: Any,
) -> Run:
    """Set up a notebook: config for `profile` with `overrides` (None = profile value), seeds, device,
    threads, plot theme, and a recorder writing to `out_dir` (default `reports/interactive/<notebook>`)."""
    if not isinstance(notebook, str) or not notebook:
        raise ShammieError("start() needs the notebook's name, e.g. '00_getting_started'")
    cfg = config_cls.for_profile(profile, **overrides)
    dev = get_device(device)
    n_threads = configure_threads(threads) if dev.type == "cpu" else torch.get_num_threads()
    seed_everything(seed)
    set_theme()
    try:  # crisp PNGs inline (and in the HTML report)
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - outside IPython
        pass
    out = Path(out_dir) if out_dir else reports_dir() / "interactive" / notebook
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ShammieError(f"cannot write to the output folder {out}: {err}. Pass out_dir= a writable folder.") from err
    run = Run(notebook, cfg, seed, dev, out.resolve(), n_threads)
    if not quiet:
        mode = "runner" if in_batch_mode() else "interactive"
        print(f"shammie {__version__} | {notebook} | profile={cfg.profile} seed={seed} device={dev} "
              f"threads={n_threads} | torch {torch.__version__} | {mode}\noutputs: {run.out_dir}")
    return run
