"""Record a notebook's metrics and the paper claims it checks into its run folder.

`Recorder` writes `metrics.json` (deterministic: same seed and profile give the same file) after
every call, atomically, so a notebook that fails half-way still leaves what it measured. Times and
the environment go to `run_info.json`, which is allowed to differ between runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core import ShammieError

__all__ = ["Claim", "Recorder", "to_jsonable", "write_json_atomic", "read_json"]


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples, Paths and dataclasses into JSON-able values.

    Non-finite floats become the strings "nan", "inf", "-inf" so the file stays strict JSON.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()] if value.ndim else to_jsonable(value.item())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    raise ShammieError(f"cannot record a value of type {type(value).__name__}: use numbers, strings, lists or dicts")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path) as fh:
        return json.load(fh)


@dataclass
class Claim:
    """One checked statement of a paper: what it says, what we measured, and whether it held here."""

    name: str
    statement: str
    measured: Any
    expected: Any
    reproduced: bool
    source: str = ""
    note: str = ""


@dataclass
class Recorder:
    """Collects metrics, claims and figure names for one notebook run and writes them to `out_dir`."""

    out_dir: Path
    notebook: str
    profile: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.write()

    @property
    def path(self) -> Path:
        """The metrics file."""
        return self.out_dir / "metrics.json"

    def record(self, name: str, value: Any) -> Any:
        """Store metric `name` (numbers, strings, lists, dicts; arrays are converted) and return `value`."""
        if not isinstance(name, str) or not name:
            raise ShammieError(f"a metric needs a non-empty string name, got {name!r}")
        self.metrics[name] = to_jsonable(value)
        self.write()
        return value

    def claim(
        self,
        name: str,
        statement: str,
        measured: Any,
        expected: Any,
        passed: bool | None = None,
        source: str = "",
        note: str = "",
    ) -> Claim:
        """Record whether a paper's `statement` reproduced here.

        `expected` is a description (string) or a `(low, high)` range for `measured`; with a range and
        `passed=None`, reproduced means low <= measured <= high (either end may be None). Re-recording
        a claim of the same name replaces it.
        """
        if passed is None:
            if not (isinstance(expected, (tuple, list)) and len(expected) == 2):
                raise ShammieError(f"claim {name!r}: give passed=True/False, or expected as a (low, high) range")
            lo, hi = expected
            try:
                value = float(measured)
            except (TypeError, ValueError) as err:
                raise ShammieError(f"claim {name!r}: a range needs a numeric measurement, got {measured!r}") from err
            passed = math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)
        item = Claim(
            name=name,
            statement=statement,
            measured=to_jsonable(measured),
            expected=to_jsonable(expected),
            reproduced=bool(passed),
            source=source,
            note=note,
        )
        self.claims = [c for c in self.claims if c.name != name] + [item]
        self.write()
        return item

    def add_figure(self, filename: str) -> None:
        """Note that the run folder holds figure `filename`."""
        if filename not in self.figures:
            self.figures.append(filename)
            self.write()

    def to_dict(self) -> dict[str, Any]:
        """Everything recorded, as written to metrics.json."""
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "seed": self.seed,
            "config": to_jsonable(self.config),
            "metrics": self.metrics,
            "claims": [asdict(c) for c in self.claims],
            "figures": list(self.figures),
        }

    def write(self) -> None:
        """Write metrics.json now."""
        write_json_atomic(self.path, self.to_dict())

    def claims_frame(self):
        """The claims as a pandas DataFrame, for display at the end of a notebook."""
        import pandas as pd

        rows = [
            {
                "claim": c.statement,
                "measured": c.measured,
                "expected": c.expected if isinstance(c.expected, str) else f"{c.expected[0]} .. {c.expected[1]}",
                "reproduced": "yes" if c.reproduced else "NO",
                "source": c.source,
            }
            for c in self.claims
        ]
        return pd.DataFrame(rows, columns=["claim", "measured", "expected", "reproduced", "source"])
