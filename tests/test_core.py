import random

import numpy as np
import pytest
import torch

from shammie.core import ShammieError, configure_threads, get_device, seed_everything


def _draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_seed_everything_asks_for_deterministic_kernels_without_loading_inductor():
    """In a fresh process: torch's deterministic flag and its warn-only mode are on, and neither
    torch._inductor nor sympy (2-3 s of imports that torch's public call would add) was loaded."""
    import subprocess
    import sys

    code = ("import sys, torch; from shammie.core import seed_everything; seed_everything(0); "
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor' in sys.modules, 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False", "False"]


def test_seed_everything_makes_every_rng_repeat():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    assert _draw() == a
    seed_everything(124)
    assert _draw() != a


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_must_be_a_non_negative_int(bad):
    with pytest.raises(ShammieError, match="seed"):
        seed_everything(bad)


def test_get_device_auto_and_cpu():
    assert get_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert get_device("auto").type == expected
    assert get_device(" CPU ").type == "cpu"


def test_get_device_refuses_unknown_and_unavailable():
    with pytest.raises(ShammieError, match="unknown device 'gpu0'"):
        get_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ShammieError, match="CUDA is not available"):
            get_device("cuda")


def test_configure_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SHAMMIE_THREADS", "2")
        assert configure_threads() == 2
        with pytest.raises(ShammieError):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)
