"""shammie: a research workbook's helper library (data, models, training, results, runner, themes)."""

__version__ = "0.1.0"

from .config import ConfigError, ProfileConfig  # noqa: E402
from .core import ShammieError, configure_threads, get_device, seed_everything  # noqa: E402


def __getattr__(name: str):
    """`shammie.Run` and `shammie.start` load the session (torch, matplotlib) on first use, so importing
    the package for its runner does not."""
    if name in ("Run", "start"):
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module 'shammie' has no attribute {name!r}")

__all__ = [
    "__version__",
    "ConfigError",
    "ProfileConfig",
    "Run",
    "ShammieError",
    "configure_threads",
    "get_device",
    "seed_everything",
    "start",
]
