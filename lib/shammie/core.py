"""Seeding, devices, CPU threads and the project's paths: the few things every notebook needs first.

torch is imported inside the functions that use it, so the runner's command line and its Dask workers,
which only start kernels, do not pay for loading it."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "ShammieError",
    "seed_everything",
    "get_device",
    "configure_threads",
    "repo_root",
    "data_dir",
    "cache_dir",
    "reports_dir",
    "in_batch_mode",
]


class ShammieError(RuntimeError):
    """An error whose message tells the user what to do (bad input, missing data, ...)."""


def _deterministic_kernels() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True) without importing torch._inductor.

    The public call also sets torch.compile's (inductor's) own flag, and importing inductor for that
    loads dynamo and sympy: 2-3 s of CPU in every kernel, about as long as importing torch itself.
    The workbook never compiles, so the flag that eager kernels read is set directly; once inductor
    is loaded anyway (someone compiles), the public call costs nothing more and is used."""
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if "torch._inductor" in sys.modules or setter is None:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def seed_everything(seed: int, deterministic: bool = True) -> int:
    """Seed Python's `random`, NumPy's global RNG and torch (CPU and CUDA) with `seed`.

    With `deterministic=True` torch is asked for deterministic kernels (warning, not failing, where
    an op has none) and cuBLAS for a deterministic workspace, so that the same seed gives the same
    numbers on the same machine. Returns the seed.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ShammieError(f"seed must be a non-negative int, got {seed!r}")
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _deterministic_kernels()
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve `"auto"` (CUDA, then Apple MPS, then CPU) or an explicit device name to a torch.device.

    An explicit accelerator that is not available is an error, not a silent fall-back to the CPU.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ShammieError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ShammieError(
            f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ShammieError(f"device {device!r} asked for, but CUDA is not available here: use 'auto' or 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ShammieError(f"device {device!r} asked for, but MPS is not available here: use 'auto' or 'cpu'")
    return dev


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the number set.

    `None` takes `$SHAMMIE_THREADS`, else 1: the workbook's models are small, and on a 2-core machine
    one thread was as fast or faster than two, and far faster when the other core was busy.
    """
    if threads is None:
        threads = int(os.environ.get("SHAMMIE_THREADS", "1"))
    if threads < 1:
        raise ShammieError(f"threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    return threads


def repo_root() -> Path:
    """The workbook's top folder: `$SHAMMIE_HOME`, else the checkout that holds this package."""
    env = os.environ.get("SHAMMIE_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    candidate = here.parents[2]
    if (candidate / "pyproject.toml").exists() and (candidate / "lib").is_dir():
        return candidate
    return Path.cwd().resolve()


def data_dir() -> Path:
    """Where data sets live: `$SHAMMIE_DATA`, else `<repo>/data`."""
    env = os.environ.get("SHAMMIE_DATA")
    return Path(env).resolve() if env else repo_root() / "data"


def cache_dir() -> Path:
    """Generated, re-creatable files (data arrays, checkpoints): `<data>/cache`."""
    return data_dir() / "cache"


def reports_dir() -> Path:
    """Where runs are written: `$SHAMMIE_REPORTS`, else `<repo>/reports`."""
    env = os.environ.get("SHAMMIE_REPORTS")
    return Path(env).resolve() if env else repo_root() / "reports"


def in_batch_mode() -> bool:
    """True when a notebook runs under the runner (papermill) rather than in an interactive session."""
    return os.environ.get("SHAMMIE_BATCH", "") == "1"
