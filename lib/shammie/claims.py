"""Claims and checks: the two kinds of record a notebook's report is judged on.

A **claim** tests a statement of a paper by experiment. It takes the per-seed (or per-pair) values
of one measured quantity and a `Rule` fixed before the run, and gets one of three verdicts:

- ``reproduced``: the rule held;
- ``not reproduced``: the rule did not hold (the record keeps the number);
- ``inconclusive``: a precondition that makes the claim meaningful failed, or there were too few
  values for the rule (fewer than 3 seeds for a stochastic rule).

A **check** is an identity or invariant of correct code (a certificate, a by-construction fact).
Checks are reported apart and never counted as reproductions; a failed check fails the notebook.

Rules (construct them with the helpers, so that the text in the report says exactly what was tested):

    above(0.0)                       95% t interval of the mean lies strictly above 0 (ties fail)
    above(0.0, test="t_test")        one-sided t test (paired: pass the differences) p < 0.05, mean > 0
    below(0.05, test="every")        every seed strictly below 0.05
    within(0.28, 0.36)               the mean lies in [0.28, 0.36] (its CI is reported beside it)
    within(0.28, 0.36, test="t_ci")  the whole 95% t interval lies in [0.28, 0.36]
    exact(low=0.9)                   a deterministic measurement (one value) in the range
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import stats
from .core import ShammieError

__all__ = [
    "Rule",
    "Precondition",
    "ClaimRecord",
    "CheckRecord",
    "above",
    "below",
    "within",
    "exact",
    "requires",
    "evaluate_claim",
    "evaluate_check",
    "VERDICTS",
    "MIN_SEEDS",
]

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
MIN_SEEDS = 3
_TESTS = {
    "t_ci": "the {level:.0%} t interval of the mean",
    "bootstrap_ci": "the {level:.0%} bootstrap interval of the mean",
    "t_test": "a one-sided t test at p < {alpha:.2g} with the mean",
    "signed_rank": "a one-sided exact signed-rank test at p < {alpha:.2g} with the mean",
    "every": "every value",
    "mean": "the mean",
    "exact": "the (deterministic) value",
}


@dataclass(frozen=True)
class Rule:
    """How a claim's values are judged, fixed before the run.

    direction: "above" (values exceed `threshold`), "below", or "within" [`low`, `high`].
    test: "t_ci", "bootstrap_ci", "t_test", "signed_rank", "every", "mean" (within only), "exact".
    """

    direction: str
    test: str = "t_ci"
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.direction not in ("above", "below", "within"):
            raise ShammieError(f"rule direction must be above, below or within, got {self.direction!r}")
        if self.test not in _TESTS:
            raise ShammieError(f"unknown rule test {self.test!r}; choose one of {', '.join(_TESTS)}")
        if not 0.5 <= self.level < 1:
            raise ShammieError(f"rule level must be in [0.5, 1), got {self.level!r}")
        if self.direction == "within":
            if self.low is None and self.high is None:
                raise ShammieError("a 'within' rule needs low, high or both")
            if self.low is not None and self.high is not None and self.low > self.high:
                raise ShammieError(f"a 'within' rule needs low <= high, got {self.low} > {self.high}")
            if self.test in ("t_test", "signed_rank"):
                raise ShammieError("a 'within' rule is judged by an interval, the mean, every value or an exact value")
        else:
            if self.threshold is None or not math.isfinite(self.threshold):
                raise ShammieError(f"an '{self.direction}' rule needs a finite threshold")
            if self.test == "mean":
                raise ShammieError("an effect is never judged by its mean alone: use t_ci, bootstrap_ci, t_test, "
                                   "signed_rank or every")

    @property
    def stochastic(self) -> bool:
        """Whether the rule judges values over seeds (then it needs at least MIN_SEEDS of them)."""
        return self.test != "exact"

    def min_n(self) -> int:
        """The fewest values the rule can judge."""
        if not self.stochastic:
            return 1
        if self.test == "signed_rank":
            return max(MIN_SEEDS, stats.min_signed_rank_n(1 - self.level))
        return MIN_SEEDS

    def text(self) -> str:
        """The rule in words, as the report shows it."""
        who = _TESTS[self.test].format(level=self.level, alpha=1 - self.level)
        if self.direction == "within":
            if self.low is None:
                where = f"at most {_num(self.high)}"
            elif self.high is None:
                where = f"at least {_num(self.low)}"
            else:
                where = f"within [{_num(self.low)}, {_num(self.high)}]"
            return f"{who} {'lies' if 'interval' in who else 'is'} {where}"
        side = "strictly above" if self.direction == "above" else "strictly below"
        return f"{who} {side} {_num(self.threshold)}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None} | {"text": self.text()}


def above(threshold: float = 0.0, test: str = "t_ci", level: float = 0.95) -> Rule:
    """The values exceed `threshold` (an improvement by at least that much); ties never pass."""
    return Rule("above", test, threshold=float(threshold), level=level)


def below(threshold: float = 0.0, test: str = "t_ci", level: float = 0.95) -> Rule:
    """The values fall below `threshold`; ties never pass."""
    return Rule("below", test, threshold=float(threshold), level=level)


def within(low: float | None = None, high: float | None = None, test: str = "mean", level: float = 0.95) -> Rule:
    """The values lie in [low, high] (judged by the mean by default; "t_ci" asks the whole interval)."""
    return Rule("within", test, low=None if low is None else float(low), high=None if high is None else float(high),
                level=level)


def exact(low: float | None = None, high: float | None = None, *, above: float | None = None,
          below: float | None = None) -> Rule:
    """A deterministic measurement (one value, no seeds): in [low, high], or strictly above/below a threshold."""
    if above is not None:
        return Rule("above", "exact", threshold=float(above))
    if below is not None:
        return Rule("below", "exact", threshold=float(below))
    return Rule("within", "exact", low=None if low is None else float(low), high=None if high is None else float(high))


@dataclass
class Precondition:
    """Something that must hold for a claim to be meaningful (e.g. the model fits the training lengths).

    `measured` is a number or a list (then every value must be in range); `low`/`high` are inclusive.
    """

    statement: str
    measured: Any
    low: float | None = None
    high: float | None = None
    holds: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ShammieError(f"precondition {self.statement!r} needs low, high or both")
        vals = np.asarray(self.measured, dtype=np.float64).reshape(-1)
        self.measured = vals.tolist() if vals.size > 1 else float(vals[0])
        self.holds = bool(vals.size and np.all(np.isfinite(vals))
                          and (self.low is None or np.all(vals >= self.low))
                          and (self.high is None or np.all(vals <= self.high)))

    def text(self) -> str:
        rng = within(self.low, self.high).text().removeprefix("the mean is ")
        return f"{self.statement} ({rng})"


def requires(statement: str, measured: Any, low: float | None = None, high: float | None = None) -> Precondition:
    """A precondition: `measured` (every value, if a list) must lie in [low, high]."""
    return Precondition(statement, measured, low, high)


@dataclass
class ClaimRecord:
    """A claim as recorded: the values, their summary, the rule, the paper's number and the verdict."""

    name: str
    statement: str
    values: list[float]
    rule: dict[str, Any]
    verdict: str
    reason: str
    n: int
    mean: float
    sd: float
    ci: list[float] | None
    ci_method: str
    p_value: float | None
    paper: Any = None
    source: str = ""
    note: str = ""
    unit: str = "seed"
    preconditions: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "claim"

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reproduced"] = self.reproduced
        return d


@dataclass
class CheckRecord:
    """A check as recorded: an invariant of correct code, its value, the expected range, and whether it held."""

    name: str
    statement: str
    value: Any
    expected: Any
    ok: bool
    note: str = ""
    kind: str = "check"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.4g}"


def _interval(rule: Rule, x: np.ndarray) -> tuple[list[float] | None, str]:
    if x.size < 2:
        return None, ""
    if rule.test == "bootstrap_ci":
        return list(stats.bootstrap_interval(x, rule.level)), f"{rule.level:.0%} percentile bootstrap"
    return list(stats.t_interval(x, rule.level)), f"{rule.level:.0%} t"


def _passes(rule: Rule, x: np.ndarray, ci: list[float] | None, p: float | None) -> bool:
    m = float(x.mean())
    if rule.direction == "within":
        lo = -math.inf if rule.low is None else rule.low
        hi = math.inf if rule.high is None else rule.high
        if rule.test in ("t_ci", "bootstrap_ci"):
            return lo <= ci[0] and ci[1] <= hi
        if rule.test == "every":
            return bool(np.all((x >= lo) & (x <= hi)))
        return lo <= m <= hi  # mean, exact
    sign = 1.0 if rule.direction == "above" else -1.0
    t = rule.threshold
    if rule.test in ("t_ci", "bootstrap_ci"):
        edge = ci[0] if sign > 0 else ci[1]
        return sign * (edge - t) > 0
    if rule.test == "every":
        return bool(np.all(sign * (x - t) > 0))
    if rule.test in ("t_test", "signed_rank"):
        return sign * (m - t) > 0 and p < 1 - rule.level
    return sign * (m - t) > 0  # exact


def evaluate_claim(
    name: str,
    statement: str,
    values: Any,
    rule: Rule,
    *,
    paper: Any = None,
    source: str = "",
    note: str = "",
    unit: str = "seed",
    preconditions: list[Precondition] | tuple[Precondition, ...] = (),
) -> ClaimRecord:
    """Judge `values` (one per seed or pair; one value for an `exact` rule) by `rule`.

    Inconclusive when a precondition fails or there are fewer values than the rule needs; the summary
    (mean, sd, CI, p-value) is recorded either way.
    """
    if not isinstance(rule, Rule):
        raise ShammieError(f"claim {name!r}: rule must be a shammie.claims.Rule (above/below/within/exact), "
                           f"got {type(rule).__name__}")
    x = stats.as_values(values, f"claim {name!r}")
    if rule.test == "exact" and x.size != 1:
        raise ShammieError(f"claim {name!r}: an exact (deterministic) rule takes one value, got {x.size}; "
                           "use a stochastic rule for values over seeds")
    pre = list(preconditions)
    for p in pre:
        if not isinstance(p, Precondition):
            raise ShammieError(f"claim {name!r}: preconditions must come from shammie.claims.requires(...)")
    mean, sd = stats.mean_sd(x)
    ci, ci_method = _interval(rule, x) if rule.stochastic else (None, "")
    p_value = None
    if rule.test in ("t_test", "signed_rank") and x.size >= 2:
        alt = "greater" if rule.direction == "above" else "less"
        fn = stats.t_test if rule.test == "t_test" else stats.signed_rank_test
        p_value = fn(x, rule.threshold, alt)
    failed = [p for p in pre if not p.holds]
    if failed:
        verdict = "inconclusive"
        reason = "precondition failed: " + "; ".join(f"{p.text()}: measured {_fmt(p.measured)}" for p in failed)
    elif x.size < rule.min_n():
        verdict = "inconclusive"
        reason = f"{x.size} {unit}(s), fewer than the {rule.min_n()} this rule needs"
    else:
        ok = _passes(rule, x, ci, p_value)
        verdict = "reproduced" if ok else "not reproduced"
        reason = f"{rule.text()}: {'yes' if ok else 'no'}"
    return ClaimRecord(
        name=name, statement=statement, values=x.tolist(), rule=rule.to_dict(), verdict=verdict, reason=reason,
        n=int(x.size), mean=mean, sd=sd, ci=ci, ci_method=ci_method, p_value=p_value, paper=paper, source=source,
        note=note, unit=unit, preconditions=[{"statement": p.statement, "measured": p.measured, "low": p.low,
                                              "high": p.high, "holds": p.holds} for p in pre],
    )


def evaluate_check(name: str, statement: str, value: Any, expected: Any = None, ok: bool | None = None,
                   note: str = "") -> CheckRecord:
    """An invariant: `value` within `expected` = (low, high) (either end None, inclusive), or `ok` given."""
    if ok is None:
        if not (isinstance(expected, (tuple, list)) and len(expected) == 2):
            raise ShammieError(f"check {name!r}: give ok=True/False, or expected as a (low, high) range")
        lo, hi = expected
        try:
            v = float(value)
        except (TypeError, ValueError) as err:
            raise ShammieError(f"check {name!r}: a range needs a numeric value, got {value!r}") from err
        ok = math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    return CheckRecord(name, statement, value, expected, bool(ok), note)


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(u) for u in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
