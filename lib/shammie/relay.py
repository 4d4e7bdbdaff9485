"""Kernel side of the runner's progress: the notebook's own progress bars, relayed to the runner.

Under the runner (batch mode) `shammie.training.progress` bars are silent in the executed notebook.
The runner starts each kernel with `install(path)`, which makes those bars write their state,
one plain line per refresh (at most one a second, no carriage returns), to a file that the runner
tails; the runner prints the latest line of each running notebook now and then. Nothing here runs
in an interactive session.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

__all__ = ["install", "bar_options", "LineFile"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LineFile:
    """A file-like object for tqdm: each refresh becomes one line appended to `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, text: str) -> int:
        line = _ANSI.sub("", text).replace("\r", "").strip()
        if line:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(f"{time.time():.2f}\t{line}\n")
        return len(text)

    def flush(self) -> None:
        pass


_sink: LineFile | None = None
_mininterval = 1.0


def install(path: str | Path, mininterval: float = 1.0) -> None:
    """Make `shammie.training.progress` bars report to `path` (called at kernel start by the runner).

    Imports nothing heavy (not torch): the kernel's process id reaches the runner at once, and a
    notebook that fails before it imports torch never pays for it."""
    global _sink, _mininterval
    sink = LineFile(path)
    sink.write(f"#pid {os.getpid()}")  # lets the runner stop this kernel when its task is cancelled
    _sink, _mininterval = sink, mininterval


def bar_options(kwargs: dict) -> dict | None:
    """The caller's tqdm options `kwargs`, redirected to the runner as plain lines (at most one per
    `mininterval` seconds unless the caller sets its own); None when `install` was not called."""
    if _sink is None:
        return None
    return {"mininterval": _mininterval, **kwargs, "file": _sink, "ascii": True, "ncols": 80, "dynamic_ncols": False,
            "leave": True}
