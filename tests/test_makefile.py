"""Makefile behaviour a newcomer meets: plain `make help` in a pipe, a VENV shared across checkouts (issue 10, item 9)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> str:
    done = subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_in_a_pipe_has_no_colour_codes_and_names_profile():
    out = _make("help")
    assert "\033[" not in out and "\\033" not in out
    assert "PROFILE=" in out and "clean-reports" in out and "reports " in out


def test_a_venv_outside_the_checkout_gets_a_copy_and_this_checkouts_lib_first(tmp_path):
    shared = _make("-n", "-B", "setup", f"VENV={tmp_path / 'venv'}")
    install = next(line for line in shared.splitlines() if "pip install" in line and "constraints.txt" in line)
    assert " -e " not in install  # an editable install would tie the shared venv to one checkout
    db = _make("-p", "-n", "help", f"VENV={tmp_path / 'venv'}")
    assert f"PYTHONPATH := {REPO / 'lib'}" in db
    inside = _make("-n", "-B", "setup", "VENV=.venv-test-never-created")
    assert any("pip install" in line and " -e " in line for line in inside.splitlines())
