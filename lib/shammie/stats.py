"""The statistics behind a claim: confidence intervals of a mean and one-sample tests over seeds.

Everything here takes the per-seed (or per-pair) values of one measured quantity. Intervals are
two-sided at `level`; tests are one-sided against a threshold, in the direction the claim states.
Implemented from the definitions (Student's t from scipy.special's distribution functions only, which
every notebook kernel imports in a third of the time scipy.stats takes), so the tests can compare them
with scipy.stats's own routines.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import special as _sp

from .core import ShammieError

__all__ = [
    "as_values",
    "mean_sd",
    "t_interval",
    "bootstrap_interval",
    "t_test",
    "signed_rank_test",
]


def as_values(values, name: str = "values") -> np.ndarray:
    """`values` as a 1-D float64 array of finite numbers; a clear error for anything else."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ShammieError(f"{name}: expected numbers, got {values!r}") from err
    if arr.size == 0:
        raise ShammieError(f"{name}: no values")
    if not np.all(np.isfinite(arr)):
        raise ShammieError(f"{name}: non-finite values {arr.tolist()}")
    return arr


def mean_sd(values) -> tuple[float, float]:
    """Sample mean and standard deviation (ddof=1; 0 for a single value)."""
    x = as_values(values)
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean at `level`: mean -/+ t * sd / sqrt(n).

    Needs at least two values. Identical values give a zero-width interval at their value.
    """
    x = as_values(values)
    if x.size < 2:
        raise ShammieError("a t interval needs at least 2 values")
    _check_level(level)
    m, s = mean_sd(x)
    half = _sp.stdtrit(x.size - 1, 0.5 + level / 2) * s / math.sqrt(x.size)
    return m - half, m + half


def bootstrap_interval(values, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values with replacement `n_boot`
    times (a fixed seed, so the interval is deterministic) and take the central `level` quantiles."""
    x = as_values(values)
    if x.size < 2:
        raise ShammieError("a bootstrap interval needs at least 2 values")
    _check_level(level)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


def t_test(values, threshold: float = 0.0, alternative: str = "greater") -> float:
    """One-sample (or paired, on differences) t-test p-value of H1: mean > threshold ("greater") or
    mean < threshold ("less"). Identical values give p = 0 if they are on H1's side, else 1."""
    x = as_values(values) - float(threshold)
    _check_alternative(alternative)
    if x.size < 2:
        raise ShammieError("a t test needs at least 2 values")
    m, s = mean_sd(x)
    if s == 0.0:
        on_side = m > 0 if alternative == "greater" else m < 0
        return 0.0 if on_side else 1.0
    t = m / (s / math.sqrt(x.size))
    return float(_sp.stdtr(x.size - 1, -t) if alternative == "greater" else _sp.stdtr(x.size - 1, t))


def signed_rank_test(values, threshold: float = 0.0, alternative: str = "greater") -> float:
    """Exact Wilcoxon signed-rank p-value of H1: the values lie above ("greater") or below ("less")
    `threshold`, by enumerating all 2^n sign assignments (n <= 20; zero differences are dropped and
    tied magnitudes get average ranks). With n values the smallest attainable p is 2^-n: 3 seeds can
    never reach p < 0.05."""
    d = as_values(values) - float(threshold)
    _check_alternative(alternative)
    d = d[d != 0.0]
    if d.size == 0:
        return 1.0
    if d.size > 20:
        raise ShammieError("the exact signed-rank test enumerates 2^n signs; use at most 20 values")
    ranks = _average_ranks(np.abs(d))
    observed = ranks[d > 0].sum()
    total = 0
    at_least = 0
    for signs in itertools.product((0, 1), repeat=d.size):
        w = float(np.dot(signs, ranks))
        total += 1
        if (w >= observed - 1e-9) if alternative == "greater" else (w <= observed + 1e-9):
            at_least += 1
    return at_least / total


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `a` in increasing order, tied values sharing the mean of their ranks."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sorted_a = a[order]
    start = 0
    for i in range(1, a.size + 1):
        if i == a.size or sorted_a[i] != sorted_a[start]:
            ranks[order[start:i]] = (start + 1 + i) / 2.0  # mean of ranks start+1 .. i
            start = i
    return ranks


def min_signed_rank_n(alpha: float) -> int:
    """The fewest values with which the exact signed-rank test can reach p < alpha (2^-n < alpha)."""
    return math.floor(-math.log2(alpha)) + 1


def _check_level(level: float) -> None:
    if not 0.5 <= level < 1:
        raise ShammieError(f"confidence level must be in [0.5, 1), got {level!r}")


def _check_alternative(alternative: str) -> None:
    if alternative not in ("greater", "less"):
        raise ShammieError(f"alternative must be 'greater' or 'less', got {alternative!r}")


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean, sd, min and max of per-seed values (a compact summary for a metric)."""
    x = as_values(values)
    m, s = mean_sd(x)
    return {"n": int(x.size), "mean": m, "sd": s, "min": float(x.min()), "max": float(x.max())}
