"""Warm kernels (shammie.warmstart, shammie.forkserver, shammie/kernel_launcher.py): a kernel forked from
the server behaves towards Jupyter and towards the notebook like one started from scratch: its
environment, folder, streams, signals (interrupt), death in both directions, fresh shammie code,
inline figures; and an environment the server was not started with gets an ordinary kernel."""

import asyncio
import os
import signal
import sys
import time

import pytest

from shammie import warmstart
from shammie.forkserver import env_difference, ipykernel_split
from shammie.warmstart import WarmKernelManager

pytestmark = pytest.mark.slow


def test_env_difference_ignores_only_per_kernel_variables():
    server = {"PATH": "/bin", "JPY_PARENT_PID": "1", "SHAMMIE_BATCH": "1", "PYTEST_CURRENT_TEST": "a"}
    kernel = {"PATH": "/bin", "JPY_PARENT_PID": "2", "JPY_SESSION_NAME": "x", "PYTEST_CURRENT_TEST": "b"}
    assert env_difference(server, kernel) == []
    assert env_difference(server, {**kernel, "PYTHONHASHSEED": "0"}) == ["PYTHONHASHSEED"]
    assert env_difference(server, {**kernel, "PATH": "/usr/bin"}) == ["PATH"]
    assert env_difference({**server, "OMP_NUM_THREADS": "1"}, kernel) == ["OMP_NUM_THREADS"]


def test_ipykernel_split_accepts_only_this_pythons_ipykernel():
    exe = sys.executable
    assert ipykernel_split([exe, "-m", "ipykernel_launcher", "-f", "c.json"]) == ((), ["-f", "c.json"])
    assert ipykernel_split([exe, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "c.json"]) == (
        ("-Xfrozen_modules=off",), ["-f", "c.json"])
    assert ipykernel_split(["/other/python", "-m", "ipykernel_launcher", "-f", "c.json"]) is None
    assert ipykernel_split([exe, "-m", "other_kernel", "-f", "c.json"]) is None
    assert ipykernel_split([exe, "-u", "-m", "ipykernel_launcher"]) is None  # an option the server lacks
    assert ipykernel_split([exe, "script.py"]) is None
    assert ipykernel_split([]) is None


async def _run(kc, code: str, timeout: float = 60) -> str:
    """Execute `code` in the kernel; its stdout (and error name, if it raised)."""
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"ERROR {msg['content']['ename']}")
        elif msg["msg_type"] == "display_data":
            out.append(f"DISPLAY {','.join(sorted(msg['content']['data']))}")

    await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out)


async def _start(cwd):
    km = WarmKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    return km, kc


async def _stop(km, kc):
    kc.stop_channels()
    await km.shutdown_kernel(now=True)


PROBE = ("import os, sys, json\n"
         "print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(),\n"
         "    'preloaded': 'torch._dynamo' in sys.modules, 'shammie': 'shammie' in sys.modules,\n"
         "    'var': os.environ.get('SHAMMIE_TEST_VAR'), 'jpy': os.environ.get('JPY_PARENT_PID'),\n"
         "    'handle': __import__('ipykernel.kernelapp').kernelapp.IPKernelApp.instance().parent_handle,\n"
         "    'sigint': str(__import__('signal').getsignal(2)), 'hashseed': hash('shammie')}))")


def test_a_warm_kernel_is_a_fork_that_starts_like_a_fresh_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAMMIE_TEST_VAR", "per-kernel value")  # SHAMMIE_* may differ from the server's

    async def go():
        km, kc = await _start(tmp_path)
        try:
            import json

            probe = json.loads(await _run(kc, PROBE))
            figure = await _run(kc, "import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()")
            stale = await _run(kc, "import shammie.warmstart as w; print(w._server == {})")
            return km, probe, figure, stale
        finally:
            await _stop(km, kc)

    km, probe, figure, stale = asyncio.run(go())
    server = warmstart._server["proc"].pid
    assert probe["preloaded"], "the kernel started with torch._dynamo imported: it is a fork of the server"
    assert probe["ppid"] == server and probe["pid"] != km.provisioner.pid
    assert probe["cwd"] == str(tmp_path)
    assert probe["var"] == "per-kernel value" and probe["jpy"] == str(os.getpid())
    assert probe["handle"] == os.getpid(), "ipykernel's parent handle, read from JPY_PARENT_PID as it would be"
    assert not probe["shammie"], "shammie is imported afresh in the kernel, not the server's copy"
    assert "default_int_handler" in probe["sigint"]
    assert "DISPLAY image/png" in figure, "figures are shown inline, as in a kernel started from scratch"
    assert stale.strip() == "True"


def test_an_interrupt_reaches_the_forked_kernel_and_it_goes_on(tmp_path):
    async def go():
        km, kc = await _start(tmp_path)
        try:
            running = asyncio.ensure_future(_run(kc, "import time\ntime.sleep(60)"))
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            await km.interrupt_kernel()
            out = await asyncio.wait_for(running, 20)
            after = await _run(kc, "print(6 * 7)")
            return out, time.monotonic() - t0, after
        finally:
            await _stop(km, kc)

    out, took, after = asyncio.run(go())
    assert "ERROR KeyboardInterrupt" in out and took < 10
    assert after.strip() == "42"


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_killing_the_launcher_kills_the_kernel_and_the_kernels_death_is_seen(tmp_path):
    async def go():
        km, kc = await _start(tmp_path)
        first = (await _run(kc, "import os; print(os.getpid())")).strip()
        launcher = km.provisioner.pid
        os.kill(launcher, signal.SIGKILL)  # what shutdown_kernel(now=True) does to the kernel's process group
        kc.stop_channels()
        km2, kc2 = await _start(tmp_path)
        second = int((await _run(kc2, "import os; print(os.getpid())")).strip())
        os.kill(second, signal.SIGKILL)  # the runner kills a cancelled task's kernel by its own pid
        deadline = time.monotonic() + 10
        while await km2.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        alive = await km2.is_alive()
        kc2.stop_channels()
        await km2.shutdown_kernel(now=True)
        await km.shutdown_kernel(now=True)
        return int(first), alive

    first, alive = asyncio.run(go())
    assert _gone(first), "the kernel dies with its launcher"
    assert not alive, "Jupyter sees the kernel die: its launcher exits with it"


def test_a_changed_environment_gets_a_server_of_its_own_and_off_means_cold(tmp_path, monkeypatch):
    async def probe():
        km, kc = await _start(tmp_path)
        try:
            import json

            return json.loads(await _run(kc, PROBE))
        finally:
            await _stop(km, kc)

    monkeypatch.setenv("PYTHONHASHSEED", "123")
    first = asyncio.run(probe())
    server = warmstart._server["proc"].pid
    monkeypatch.setenv("PYTHONHASHSEED", "7")  # read by the interpreter when it starts
    second = asyncio.run(probe())
    assert first["preloaded"] and second["preloaded"] and second["ppid"] != server
    assert first["hashseed"] != second["hashseed"]
    cold = os.popen(f"PYTHONHASHSEED=7 {sys.executable} -c \"print(hash('shammie'))\"").read().strip()
    assert second["hashseed"] == int(cold), "the kernel's hash seed is the one its environment asks for"
    monkeypatch.setenv("SHAMMIE_WARM", "0")
    off = asyncio.run(probe())
    assert not off["preloaded"] and off["ppid"] == os.getpid()


def test_the_launcher_becomes_the_command_itself_when_no_server_will_fork_it(tmp_path):
    import subprocess

    warmstart.stop_server()  # one without interpreter options (the kernels' servers have -X options)
    path = warmstart.server_path()
    assert path is not None
    cmd = [sys.executable, "-c", "import os; print('cold', os.getcwd())"]  # not an ipykernel: refused
    for where, said in ((path, "refused: not this Python's ipykernel"), (str(tmp_path / "no-server"), "")):
        out = subprocess.run([sys.executable, "-I", str(warmstart.LAUNCHER), where, *cmd], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, env={**os.environ, "SHAMMIE_WARM_DEBUG": "1"})
        assert out.returncode == 0 and out.stdout.strip() == f"cold {tmp_path}", out.stderr
        assert said in out.stderr
    warmstart.stop_server()


def test_a_server_that_does_not_answer_in_time_gets_a_cold_kernel(tmp_path):
    import socket
    import subprocess

    mute = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # listens, never accepts: a server still importing
    mute.bind(str(tmp_path / "s"))
    mute.listen(4)
    cmd = [sys.executable, "-c", "print('cold')"]
    t0 = time.monotonic()
    # output to a file: the streams sent to the mute server stay open in its queue until it closes
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-I", str(warmstart.LAUNCHER), str(tmp_path / "s"), *cmd],
                                stdout=out, env={**os.environ, "SHAMMIE_WARM_WAIT": "1"})
        code = proc.wait(timeout=60)
    took = time.monotonic() - t0
    mute.close()
    assert code == 0 and (tmp_path / "out").read_text().strip() == "cold" and 1 <= took < 10


def test_a_server_that_cannot_start_gives_cold_kernels_and_is_not_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(warmstart, "_server", {})  # this process's own server is put back afterwards
    tries = []

    def no_folder(*args, **kwargs):
        tries.append(args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(warmstart.tempfile, "mkdtemp", no_folder)
    km = WarmKernelManager(kernel_name="python3")
    km.connection_file, km._launch_args = str(tmp_path / "kernel.json"), {}
    for _ in range(3):
        cmd = km.format_kernel_cmd()
        assert str(warmstart.LAUNCHER) not in cmd and cmd[-4:] == ["-m", "ipykernel_launcher", "-f", km.connection_file]
    assert len(tries) == 1, "one failed start, then cold kernels without trying again"
    warmstart.stop_server()
    km.format_kernel_cmd()
    assert len(tries) == 2, "stop_server() lets the next kernel try again"
