"""Record a notebook's metrics, its claims (tested over seeds) and its checks into its run folder.

`Recorder` writes `metrics.json` (deterministic: same seed and profile give the same file) after
every call, atomically, so a notebook that fails half-way still leaves what it measured. Times and
the environment go to `run_info.json`, which is allowed to differ between runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .claims import (
    MIN_SEEDS,
    CheckRecord,
    ClaimRecord,
    Precondition,
    Rule,
    evaluate_check,
    evaluate_claim,
)
from .core import ShammieError

__all__ = ["Recorder", "to_jsonable", "write_json_atomic", "read_json"]


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
        mask = os.umask(0)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
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
class Recorder:
    """Collects metrics, claims, checks and figure names for one notebook run and writes them to `out_dir`.

    Claims can be registered before the experiment runs (`preregister`: statement, rule, the paper's
    number) and judged later with their values (`claim(name, values)`); metrics.json keeps the order
    in which rules were fixed. A claim registered but never measured is reported inconclusive.
    """

    out_dir: Path
    notebook: str
    profile: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    claims: list[ClaimRecord] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)

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

    def preregister(self, name: str, statement: str, rule: Rule, *, paper: Any = None, source: str = "",
                    note: str = "", unit: str = "seed") -> None:
        """Fix a claim's statement and rule before its experiment runs (see `shammie.claims`)."""
        if not isinstance(rule, Rule):
            raise ShammieError(f"claim {name!r}: rule must be a shammie.claims.Rule (above/below/within/exact)")
        if name in self.registered or any(c.name == name for c in self.claims):
            raise ShammieError(f"claim {name!r} is already registered: a rule is fixed once")
        self.registered[name] = {"statement": statement, "rule": rule, "paper": to_jsonable(paper),
                                 "source": source, "note": note, "unit": unit}
        self.write()

    def claim(self, name: str, values: Any, statement: str | None = None, rule: Rule | None = None, *,
              paper: Any = None, source: str = "", note: str = "", unit: str = "seed",
              preconditions: Sequence[Precondition] = ()) -> ClaimRecord:
        """Judge claim `name` on `values` (one per seed or pair) by its rule and record the verdict.

        A preregistered claim takes only its values (and preconditions); otherwise give the statement
        and rule here. At the quick and full profiles a stochastic rule needs at least 3 values.
        """
        if name in self.registered:
            if statement is not None or rule is not None:
                raise ShammieError(f"claim {name!r} was preregistered: its statement and rule are fixed; "
                                   "pass only the values and preconditions")
            reg = self.registered.pop(name)
            statement, rule = reg["statement"], reg["rule"]
            paper, source, unit = reg["paper"], reg["source"], reg["unit"]
            note = "; ".join(n for n in (reg["note"], note) if n)
        elif statement is None or rule is None:
            raise ShammieError(f"claim {name!r}: give its statement and rule (or preregister it first)")
        rec = evaluate_claim(name, statement, to_jsonable(values), rule, paper=to_jsonable(paper), source=source,
                             note=note, unit=unit, preconditions=preconditions)
        if rule.stochastic and self.profile != "smoke" and rec.n < MIN_SEEDS:
            raise ShammieError(f"claim {name!r}: {rec.n} {unit}(s) at profile {self.profile!r}; a stochastic claim "
                               f"needs at least {MIN_SEEDS} (make the experiment cheaper, not the seeds fewer)")
        self.claims = [c for c in self.claims if c.name != name] + [rec]
        self.write()
        return rec

    def check(self, name: str, statement: str, value: Any, expected: Any = None, ok: bool | None = None,
              note: str = "") -> CheckRecord:
        """Record an invariant of correct code (not a reproduction); a failed check fails `finish()`."""
        rec = evaluate_check(name, statement, to_jsonable(value), to_jsonable(expected), ok, note)
        self.checks = [c for c in self.checks if c.name != name] + [rec]
        self.write()
        return rec

    def _unmeasured(self, name: str, reason: str) -> None:
        reg = self.registered.pop(name)
        self.claims.append(ClaimRecord(name=name, statement=reg["statement"], values=[], rule=reg["rule"].to_dict(),
                                       verdict="inconclusive", reason=reason, n=0, mean=math.nan, sd=math.nan,
                                       ci=None, ci_method="", p_value=None, paper=reg["paper"], source=reg["source"],
                                       note=reg["note"], unit=reg["unit"]))

    def not_run(self, name: str, reason: str) -> None:
        """Record a preregistered claim whose experiment this profile leaves out (too costly for its
        budget, say) as inconclusive, with `reason` and the profile: said, never silently missing."""
        if name not in self.registered:
            raise ShammieError(f"claim {name!r} is not preregistered (or was already judged): only a claim fixed "
                               "before the run can be recorded as not run")
        if not isinstance(reason, str) or not reason.strip():
            raise ShammieError(f"claim {name!r}: say why it is not run at profile {self.profile!r}")
        self._unmeasured(name, f"not run at profile {self.profile!r}: {reason.strip()}")
        self.write()

    def close_registrations(self) -> None:
        """Record every preregistered claim that was never measured as inconclusive."""
        for name in list(self.registered):
            self._unmeasured(name, "no measurement was recorded")
        self.write()

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
            "claims": [to_jsonable(c.to_dict()) for c in self.claims],
            "checks": [to_jsonable(c.to_dict()) for c in self.checks],
            "preregistered": [{"name": k, "statement": v["statement"], "rule": v["rule"].to_dict()}
                              for k, v in self.registered.items()],
            "figures": list(self.figures),
        }

    def write(self) -> None:
        """Write metrics.json now."""
        write_json_atomic(self.path, self.to_dict())

    def claims_frame(self):
        """The claims as a pandas DataFrame: statement, n, mean, CI, rule, paper, verdict."""
        import pandas as pd

        from .report import format_value

        rows = [{
            "claim": c.statement,
            "n": c.n,
            "mean": format_value(c.mean),
            "CI": format_value(c.ci) if c.ci else "–",
            "rule": c.rule["text"],
            "paper": format_value(c.paper) if c.paper is not None else "–",
            "verdict": c.verdict if not c.verdict == "inconclusive" else f"inconclusive: {c.reason}",
        } for c in self.claims]
        return pd.DataFrame(rows, columns=["claim", "n", "mean", "CI", "rule", "paper", "verdict"])

    def checks_frame(self):
        """The checks as a pandas DataFrame: statement, value, expected, ok."""
        import pandas as pd

        from .report import format_value

        rows = [{"check": c.statement, "value": format_value(c.value),
                 "expected": format_value(c.expected) if c.expected is not None else "–",
                 "ok": "yes" if c.ok else "FAILED"} for c in self.checks]
        return pd.DataFrame(rows, columns=["check", "value", "expected", "ok"])
