"""shammie: a research workbook's helper library (data, models, training, results, runner, themes)."""

__version__ = "0.1.0"

from .config import ConfigError, ProfileConfig  # noqa: E402
from .core import ShammieError, configure_threads, get_device, seed_everything  # noqa: E402
from .session import Run, start  # noqa: E402

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
