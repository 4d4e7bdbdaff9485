"""Warm kernels: notebook kernels forked from a process that has already imported torch.

Every kernel the runner starts pays the same fixed cost before its first cell does anything: the
interpreter, IPython and ipykernel, torch, and torch._dynamo (which torch's `Optimizer.step` imports
on first use): several seconds of CPU, paid again by each of the ~70 kernels of the test suite and
each notebook of a run. A fork server pays it once. It imports those modules and waits; each kernel
is a fork of it, so it starts with them in memory (shared, copy-on-write).

The pieces:
- `WarmKernelManager`: the Jupyter kernel manager the runner and the exercise grader use. It starts
  the kernel through `shammie/kernel_launcher.py` (a few milliseconds of standard library), which
  asks this process's server for a fork and stands in for it towards Jupyter (signals, exit, death);
- `shammie.forkserver.serve`: the server, one per process that starts kernels, started on its first
  kernel and gone when that process is;
- what the fork does before it becomes the kernel: the launcher's standard streams, working folder,
  environment and arguments, default signal handlers, its own session, and a fresh import of
  shammie (the server's copy could be older than the files on disk).

A kernel is forked only when the launcher's environment equals the server's (but for Jupyter's
per-kernel variables, `JPY_*`, pytest's current-test name and `SHAMMIE_*`, read only by shammie, which
the fork imports afresh): the preloaded modules read variables such as `PYTHONHASHSEED`, `OMP_NUM_THREADS` or
`MPLBACKEND` when imported. Any other difference, or no server, and the launcher becomes the
ordinary kernel command: slower, never different. Warm kernels are for Linux (`enabled`);
`SHAMMIE_WARM=0` turns them off; `SHAMMIE_WARM_DEBUG=1` shows the server's errors and each refusal.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

from .forkserver import env_difference, ipykernel_split

__all__ = ["WarmKernelManager", "server_path", "stop_server", "enabled"]

LAUNCHER = Path(__file__).with_name("kernel_launcher.py")
LISTEN_TIMEOUT = 10.0  # seconds for a new server to listen (it does so before its imports)

_server: dict = {}
_lock = threading.Lock()


def enabled() -> bool:
    """Warm kernels are on by default on Linux, off elsewhere (on macOS a process forked after it loaded
    system frameworks may crash); `SHAMMIE_WARM=0` or `1` says otherwise, where the platform can fork
    and pass file descriptors."""
    wanted = os.environ.get("SHAMMIE_WARM", "1" if sys.platform.startswith("linux") else "0") != "0"
    return wanted and hasattr(os, "fork") and hasattr(socket, "send_fds")


def server_path(options: tuple[str, ...] = ()) -> str | None:
    """The socket of this process's fork server, running this Python with interpreter `options` (such
    as `-Xfrozen_modules=off`), started now if it is not running; None when off, when the running
    server has other options, or when a server could not be started here (then not tried again)."""
    if not enabled():
        return None
    with _lock:
        if _server.get("owner") == os.getpid():
            if _server.get("failed"):
                return None
            proc = _server.get("proc")
            if proc is not None and proc.poll() is None:
                if not env_difference(_server["env"], dict(os.environ)):
                    return _server["path"] if _server["options"] == options else None
                _stop()  # the environment changed since it started: its kernels would be refused
        try:
            path = _start(options)
        except OSError:  # no temporary folder, no process: the kernels start cold
            path = None
        if path is None:
            _stop()
            _server.update(owner=os.getpid(), failed=True)
        return path


def _start(options: tuple[str, ...]) -> str | None:
    """Start a server and wait until it listens; its socket's path, or None if it did not listen."""
    folder = tempfile.mkdtemp(prefix="shammie-warm-")
    if len(folder) > 90:  # a socket's path has at most 107 bytes
        shutil.rmtree(folder, ignore_errors=True)
        folder = tempfile.mkdtemp(prefix="shammie-warm-", dir="/tmp")
    path = os.path.join(folder, "s")
    code = f"from shammie.forkserver import serve; serve({path!r}, {os.getpid()})"
    # env given explicitly, as Jupyter gives its kernels: the process's own C environment can hold
    # variables os.environ does not (readline, once imported, exports LINES and COLUMNS)
    env = dict(os.environ)
    quiet = None if os.environ.get("SHAMMIE_WARM_DEBUG") else subprocess.DEVNULL
    _server.update(owner=os.getpid(), folder=folder, failed=False)
    proc = subprocess.Popen([sys.executable, *options, "-c", code], env=env, stdin=subprocess.DEVNULL,
                            stdout=quiet, stderr=quiet, start_new_session=True)
    _server.update(proc=proc, path=path, options=options, env=env)
    if not _server.get("atexit"):
        atexit.register(stop_server)
        _server["atexit"] = True
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return path if os.path.exists(path) else None


def stop_server() -> None:
    """Stop this process's fork server (kernels already forked keep running); the next kernel starts one
    again, even after a failed start."""
    with _lock:
        _stop()
        _server.pop("failed", None)


def _stop() -> None:
    proc = _server.pop("proc", None)
    if _server.get("owner") != os.getpid():
        return
    if proc is not None:
        proc.kill()
        proc.wait()
    shutil.rmtree(_server.pop("folder", ""), ignore_errors=True)


class WarmKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, but an ipykernel of this Python starts as a fork of the warm server."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        split = ipykernel_split(cmd)
        if split is not None:
            path = server_path(split[0])
            if path is not None:
                return [sys.executable, "-I", str(LAUNCHER), path, *cmd]
        return cmd
