"""JupyterLab is real: the server starts, its API answers, a kernel started through it imports shammie."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, token, path, method="GET", body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


def _send(conn, msg_type, content) -> str:
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": msg_type, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "content": content,
    }))
    return msg_id


async def _reply_to(conn, msg_id, within):
    """The messages answering `msg_id` until its kernel goes idle; None if nothing answers `within` seconds."""
    got, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(conn.read_message(), timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        got.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" and any(
                m["msg_type"].endswith("_reply") for m in got):
            return got
    return got or None


async def _execute(ws_url, token, code, timeout=240):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    deadline = time.monotonic() + timeout
    # as any Jupyter client does, first wait until the kernel answers a kernel_info_request, asking again
    # every 5 s: on a loaded machine a request sent before the server has connected the kernel's channels
    # can be lost (and then nothing ever answers)
    while await _reply_to(conn, _send(conn, "kernel_info_request", {}), within=5) is None:
        if time.monotonic() > deadline:
            conn.close()
            return None, "the kernel never answered a kernel_info_request"
    msgs = await _reply_to(conn, _send(conn, "execute_request", {
        "code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}),
        within=max(1, deadline - time.monotonic())) or []
    conn.close()
    out, status = [], None
    for msg in msgs:
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif kind == "execute_reply":
            status = msg["content"]["status"]
    return status, "".join(out)


def test_jupyterlab_serves_and_runs_a_kernel_with_shammie(tmp_path):
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--notebook-dir={REPO / 'notebooks'}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status = _api(base, token, "/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{proc.stdout.read().decode()[-3000:]}")
                time.sleep(0.5)
        assert "started" in status
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as resp:
            assert resp.status == 200 and b"JupyterLab" in resp.read()
        contents = _api(base, token, "/api/contents/")
        assert any(item["name"] == "00_getting_started.ipynb" for item in contents["content"])
        specs = _api(base, token, "/api/kernelspecs")
        assert "python3" in specs["kernelspecs"]

        kernel = _api(base, token, "/api/kernels", method="POST", body={"name": "python3"})
        ws_url = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels"
        code = "import shammie, sys\nprint('shammie', shammie.__version__, sys.prefix)\nprint(6 * 7)"
        state, output = asyncio.run(_execute(ws_url, token, code))
        assert state == "ok", output
        assert "shammie 0.1.0" in output and "42" in output
        assert sys.prefix in output  # the kernel runs in the project's environment
        _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        assert _api(base, token, "/api/kernels") == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
