"""Check a notebook's parameters against its config before any kernel starts.

The runner knows a notebook's parameters cell, but the rules live in the theme's config dataclass
(`for_profile`, `validate`, `check_limits`). `notebook_config` reads the notebook's setup call,
`shammie.start("NN_name", SomeConfig, profile=profile, ..., epochs=epochs)`, finds where
`SomeConfig` is imported from, and `validate_parameters` builds the config from the values the
kernel would receive, so `-p epochs=0`, `-p device=gpu`, a negative seed or a size that cannot fit
are refused with the config's own message, naming the notebook, before anything runs.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import ShammieError

__all__ = ["NotebookConfig", "notebook_config", "validate_parameters", "check_seed", "check_device",
           "check_cell_timeout", "START_KEYWORDS"]

#: keywords of `shammie.start` that are not config knobs
START_KEYWORDS = ("profile", "seed", "device", "out_dir", "threads", "quiet")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class NotebookConfig:
    """What a notebook's setup call says: its config class (None if it cannot be imported) and keywords."""

    notebook: str
    config_cls: type | None
    keywords: dict[str, str] = field(default_factory=dict)  # start() keyword -> parameter name it passes
    where: str = ""  # "module.Name" of the config class, for messages
    problem: str | None = None  # why the config class could not be found


def _code_cells(path: Path) -> list[str]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _is_start(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute) and func.attr == "start":
        return isinstance(func.value, ast.Name) and func.value.id == "shammie"
    return isinstance(func, ast.Name) and func.id == "start"


def _imports(trees: list[ast.Module]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Names bound by imports: {name: (module, attribute)} for `from m import a as name`, and
    {alias: module} for modules (`import shammie.x as alias`, `from shammie import x as alias`)."""
    names: dict[str, tuple[str, str]] = {}
    modules: dict[str, str] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    names[a.asname or a.name] = (node.module, a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        modules[a.asname] = a.name
                    else:
                        modules[a.name.split(".")[0]] = a.name.split(".")[0]
    return names, modules


def _dotted(expr: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return parts[::-1]


def _resolve(expr: ast.expr, names: dict[str, tuple[str, str]], modules: dict[str, str]) -> tuple[str, str]:
    """(module, attribute path) that `expr` refers to, from the notebook's imports."""
    parts = _dotted(expr)
    if not parts:
        raise LookupError(f"the config argument `{ast.unparse(expr)}` is not a name")
    head, rest = parts[0], parts[1:]
    if head in names:
        module, attr = names[head]
        if not rest:
            return module, attr
        return f"{module}.{attr}", ".".join(rest)  # `from shammie import lengthgen as lg`; lg.Config
    if head in modules:
        module = modules[head]
        # `import shammie.lengthgen` then shammie.lengthgen.Config: the longest importable prefix is the module
        return ".".join([module, *rest[:-1]]) if rest[:-1] else module, rest[-1] if rest else ""
    raise LookupError(f"`{head}` is defined in the notebook itself, not imported")


def notebook_config(path: str | Path) -> NotebookConfig:
    """Find the notebook's `shammie.start(...)` call and import its config class (None if it cannot)."""
    path = Path(path)
    trees = []
    for source in _code_cells(path):
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            continue  # IPython magics; the setup cell is plain Python
    call = next((node for tree in trees for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and _is_start(node.func)), None)
    if call is None:
        return NotebookConfig(path.stem, None, problem="no shammie.start(...) call")
    keywords = {kw.arg: kw.value.id for kw in call.keywords if kw.arg and isinstance(kw.value, ast.Name)}
    cfg_expr = call.args[1] if len(call.args) > 1 else next(
        (kw.value for kw in call.keywords if kw.arg == "config_cls"), None)
    if cfg_expr is None:
        return NotebookConfig(path.stem, None, keywords, problem="shammie.start(...) names no config class")
    names, modules = _imports(trees)
    try:
        module, attr = _resolve(cfg_expr, names, modules)
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (LookupError, ImportError, AttributeError) as err:
        return NotebookConfig(path.stem, None, keywords, problem=str(err))
    except Exception as err:  # noqa: BLE001 - a theme module mid-edit: the kernel will report it
        return NotebookConfig(path.stem, None, keywords, problem=f"importing {module} failed: {err}")
    from .config import ProfileConfig

    if not (isinstance(obj, type) and issubclass(obj, ProfileConfig)):
        return NotebookConfig(path.stem, None, keywords, problem=f"{module}.{attr} is not a ProfileConfig")
    return NotebookConfig(path.stem, obj, keywords, where=f"{module}.{attr}")


def check_seed(seed: Any) -> int:
    """A seed is a non-negative int below 2**63 (what seed_everything and torch accept)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ShammieError(f"seed must be a non-negative int (below 2**63), got {seed!r}")
    return seed


def check_device(device: Any, available_here: bool = True) -> str:
    """A device name the notebooks accept: auto, cpu, cuda, cuda:N or mps; with `available_here`,
    an accelerator that this machine lacks is refused too (as `get_device` would in the kernel)."""
    if not isinstance(device, str) or not _DEVICE.match(device.strip().lower()):
        raise ShammieError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if available_here and device.strip().lower() not in ("auto", "cpu"):
        from .core import get_device

        get_device(device)
    return device


def check_cell_timeout(seconds: Any) -> int | None:
    """`--cell-timeout` must be a positive number of seconds (None: the profile's default)."""
    if seconds is None:
        return None
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise ShammieError(f"--cell-timeout must be a positive number of seconds, got {seconds!r}")
    return seconds


def validate_parameters(path: str | Path, profile: str, values: dict[str, Any], *,
                        device_available_here: bool = True) -> NotebookConfig:
    """Check the values notebook `path` would run with (its defaults updated by the overrides).

    Raises ShammieError naming the notebook with the config's own message. A config class that
    cannot be imported is skipped (the kernel then reports the real error); returns what was found.
    """
    path = Path(path)
    found = notebook_config(path)
    try:
        if "seed" in values:
            check_seed(values["seed"])
        if "device" in values and values["device"] is not None:
            check_device(values["device"], available_here=device_available_here)
        if "threads" in values and values["threads"] is not None:
            if not isinstance(values["threads"], int) or values["threads"] < 1:
                raise ShammieError(f"threads must be an int >= 1, got {values['threads']!r}")
        if found.config_cls is not None:
            overrides = {kw: values[param] for kw, param in found.keywords.items()
                         if kw not in START_KEYWORDS and param in values}
            found.config_cls.for_profile(profile, **overrides)
    except ShammieError as err:
        raise ShammieError(f"{path.stem}: {err}") from None
    return found
