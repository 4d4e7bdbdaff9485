"""The command a warm kernel starts with (see shammie.warmstart), run as `python -I kernel_launcher.py
SOCKET CMD...`, where CMD is the kernel's own command (`python -m ipykernel_launcher -f ...`).

It asks the fork server at SOCKET for a kernel: it sends its arguments, environment, working folder
and its standard streams, and the server forks a process that already holds torch, which becomes
the kernel. This process stands in for it towards Jupyter: the signals it gets (an interrupt, a
terminate) are passed on, it exits when the kernel exits, and if it is killed, or its parent dies,
the kernel dies too. Without a server (none listening, or one that refuses this environment) it
becomes CMD itself, as if it had never been here.

Standard library only, run isolated (`-I`): it must start in milliseconds and cannot be shadowed by
files in the notebook's folder.
"""

import json
import os
import signal
import socket
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# The server answers once its imports are done: a few seconds, more on a loaded machine. Jupyter gives a
# kernel 60 s to start; past this wait (seconds, `SHAMMIE_WARM_WAIT`) the launcher starts it cold instead.
REPLY_TIMEOUT = 30.0


def ask(path: str, cmd: list[str]) -> tuple[socket.socket, int] | None:
    """A kernel forked by the server at `path` for `cmd`: the connection to it and its pid, or None."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.settimeout(float(os.environ.get("SHAMMIE_WARM_WAIT", REPLY_TIMEOUT)))
        conn.connect(path)
        request = {"argv": cmd, "env": dict(os.environ), "cwd": os.getcwd()}
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        reply = json.loads(conn.recv(65536) or b"{}")
    except (OSError, ValueError):
        return None
    if "pid" not in reply:
        if reply.get("refused") and os.environ.get("SHAMMIE_WARM_DEBUG"):
            print(f"shammie warm kernel refused: {reply['refused']}", file=sys.stderr, flush=True)
        return None
    return conn, int(reply["pid"])


def stand_in(conn: socket.socket, pid: int) -> int:
    """Pass signals on to the kernel `pid` until it exits; its exit status (1 if it was killed)."""
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    parent = os.getppid()
    conn.settimeout(1.0)
    while True:
        try:
            data = conn.recv(64)
        except TimeoutError:
            if os.getppid() != parent:  # whoever started the kernel is gone: so is the kernel
                os.kill(pid, signal.SIGKILL)
                return 1
            continue
        except OSError:
            data = b""
        if not data:
            return 1
        try:
            return int(json.loads(data)["exit"])
        except (ValueError, KeyError, TypeError):
            continue


def main(argv: list[str]) -> None:
    path, cmd = argv[0], argv[1:]
    got = ask(path, cmd)
    if got is None:
        os.execv(cmd[0], cmd)
    sys.exit(stand_in(*got))


if __name__ == "__main__":
    main(sys.argv[1:])
