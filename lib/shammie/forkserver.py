"""The fork server behind warm kernels (see shammie.warmstart): it imports torch and the kernel's
modules once, then forks a process for each kernel launcher (shammie/kernel_launcher.py) that asks,
and that process becomes the kernel. Standard library only when imported: it is listening within
a few tens of milliseconds of its start."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

__all__ = ["serve", "PRELOAD", "PER_KERNEL", "env_difference", "ipykernel_split"]

#: what the server imports before it forks (each import is a few hundred ms to seconds of CPU)
PRELOAD = ("numpy", "torch", "torch._dynamo", "torch.nn", "torch.optim", "matplotlib", "matplotlib.pyplot",
           "ipykernel.kernelapp", "IPython")
#: environment variables a kernel may hold with values other than the server's
PER_KERNEL = ("JPY_", "PYTEST_CURRENT_TEST", "SHAMMIE_")


def env_difference(server: dict[str, str], kernel: dict[str, str]) -> list[str]:
    """The variables, other than `PER_KERNEL` ones, whose values differ between the two environments."""
    keys = (server.keys() | kernel.keys())
    return sorted(k for k in keys if not k.startswith(PER_KERNEL) and server.get(k) != kernel.get(k))


def ipykernel_split(cmd: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """(interpreter options, kernel arguments) of `cmd` if it is `[this Python, -X..., -m,
    ipykernel_launcher, args...]`, else None."""
    if not cmd or cmd[0] != sys.executable or "-m" not in cmd:
        return None
    i = cmd.index("-m")
    options = tuple(cmd[1:i])
    if cmd[i + 1:i + 2] != ["ipykernel_launcher"] or not all(o.startswith("-X") for o in options):
        return None
    return options, cmd[i + 2:]


def serve(path: str, parent: int) -> None:
    """Listen at `path` (first, so that launchers may connect while the imports run), import
    `PRELOAD`, then fork a kernel for each launcher, until the process `parent` is gone."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the path appears once it accepts connections
    env = dict(os.environ)
    # what ipykernel does before anything imports matplotlib, which reads it when imported
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot be preloaded is imported by the kernel
            pass
    added = {k: v for k, v in os.environ.items() if k not in env}  # e.g. torch._dynamo sets its cache folder
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped by the system
    listener.settimeout(1.0)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        try:
            _handle(listener, conn, env, added)
        except Exception:  # noqa: BLE001 - a launcher that hung up or sent nonsense gets an ordinary kernel
            pass
        finally:
            conn.close()
    listener.close()


def _handle(listener: socket.socket, conn: socket.socket, env: dict[str, str], added: dict[str, str]) -> None:
    conn.settimeout(5.0)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    try:
        request = json.loads(data)
        different = env_difference(env, request["env"])
        refused = (f"the environment differs in {', '.join(different[:5])}" if different else
                   "not this Python's ipykernel" if ipykernel_split(request["argv"]) is None else
                   "not three standard streams" if len(fds) != 3 else None)
        if refused:
            conn.send(json.dumps({"refused": refused}).encode())
            return
        pid = os.fork()
        if pid == 0:
            _become_kernel(listener, conn, {**request, "env": {**added, **request["env"]}}, fds)  # never returns
        conn.send(json.dumps({"pid": pid}).encode())
    finally:
        for fd in fds:
            os.close(fd)


def _become_kernel(listener: socket.socket, conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: take the launcher's streams, folder, environment and arguments, and run ipykernel."""
    code = 1
    try:
        listener.close()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for name in [m for m in sys.modules if m == "shammie" or m.startswith("shammie.")]:
            del sys.modules[name]
        sys.path[0] = request["cwd"]  # as `python -m` puts it (ipykernel_launcher takes it out again)
        sys.argv = [request["argv"][0], *ipykernel_split(request["argv"])[1]]  # runpy sets argv[0]
        if os.environ.get("JPY_PARENT_PID"):  # ipykernel read it when the server imported it
            sys.argv.append(f"--IPKernelApp.parent_handle={int(os.environ['JPY_PARENT_PID'])}")
        threading.Thread(target=_die_with, args=(conn,), daemon=True, name="shammie-warm-watch").start()
        import runpy

        try:
            runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: BLE001 - printed to the kernel's stderr, like a crashed kernel's
            import traceback

            traceback.print_exc()
        import atexit as _atexit

        _atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.send(json.dumps({"exit": code}).encode())
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)


def _die_with(conn: socket.socket) -> None:
    """Kill this kernel when its launcher's end of `conn` closes (the launcher was killed)."""
    conn.settimeout(None)
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
