"""The paper's evaluation protocol: fit on the early part of a curve, score by extrapolation.

- split: fit on x <= x_max / factor, hold out the rest (factor 2 is the paper's tau = x_max / 2);
- score: RMSE of the log loss on the held-out part (eq. 6), so 0.99 vs 1.0 and 0.099 vs 0.1 count alike;
- compare: per curve, the estimator with the lowest RMSE after truncation to 3 decimals wins, tied
  winners share the win (the released notebook's rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core import ShammieError
from .estimators import ESTIMATORS, M2, ScalingLaw, check_curve, make_estimator

__all__ = ["extrapolation_split", "rmse_log", "CurveFit", "fit_curve", "win_fractions", "exponent_scan",
           "horizon_sweep"]


def extrapolation_split(x, factor: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, held out): fit on x <= max(x) / factor, hold out the rest."""
    x = np.asarray(x, dtype=np.float64)
    if factor <= 1:
        raise ShammieError(f"the extrapolation factor must exceed 1, got {factor}")
    fit = x <= x.max() / factor
    return fit, ~fit


def rmse_log(pred, target) -> float:
    """sqrt(mean((log pred - log target)^2)): the paper's extrapolation error (eq. 6)."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.size == 0:
        raise ShammieError(f"rmse_log needs two arrays of one non-empty shape, got {p.shape} and {t.shape}")
    if np.any(t <= 0):
        raise ShammieError("rmse_log needs positive targets")
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(p) - np.log(t)
    return float(np.sqrt(np.mean(d**2))) if np.all(np.isfinite(d)) else float("nan")


@dataclass
class CurveFit:
    """One estimator fitted on one curve: its parameters and its fit and extrapolation errors."""

    curve: str
    estimator: str
    params: dict
    rmse_fit: float
    rmse_extrapolation: float
    model: ScalingLaw


def fit_curve(name: str, x, y, factor: float = 2.0, eps0: float | str = 1.0, einf_rule: str = "paper",
              estimators=ESTIMATORS) -> list[CurveFit]:
    """Fit every estimator on the early part of curve (x, y) and score it on the held-out part."""
    x, y = check_curve(x, y, 1, name)
    fit, held = extrapolation_split(x, factor)
    if held.sum() == 0:
        raise ShammieError(f"{name}: no point lies beyond x_max/{factor}; nothing to extrapolate to")
    out = []
    for est in estimators:
        m = make_estimator(est, eps0=eps0, einf_rule=einf_rule).fit(x[fit], y[fit])
        out.append(CurveFit(name, est, dict(m.params), rmse_log(m.predict(x[fit]), y[fit]),
                            rmse_log(m.predict(x[held]), y[held]), m))
    return out


def win_fractions(table: pd.DataFrame, by: str = "curve", score: str = "rmse_extrapolation") -> pd.Series:
    """Per estimator, the share of curves where it extrapolates best: scores truncated to 3 decimals,
    NaN counted as 1, tied winners sharing the curve."""
    wins = {e: 0.0 for e in table["estimator"].unique()}
    curves = table[by].unique()
    for curve in curves:
        rows = table[table[by] == curve]
        s = np.floor(rows[score].fillna(1.0).to_numpy() * 1000) / 1000
        best = rows["estimator"].to_numpy()[s == s.min()]
        for e in best:
            wins[e] += 1.0 / len(best)
    return pd.Series(wins) / max(len(curves), 1)


def exponent_scan(x, y, factor: float = 2.0, exponents=None, einf_rule: str = "global") -> pd.DataFrame:
    """The paper's Fig. 3 analysis: M2 with its exponent c fixed on a grid, beta and eps_inf refitted on
    the fit window; the interpolation RMSE (fit window) and extrapolation RMSE (held out) per c."""
    x, y = check_curve(x, y, 3, "curve")
    fit, held = extrapolation_split(x, factor)
    exponents = np.round(np.arange(-0.05, -1.0001, -0.01), 4) if exponents is None else np.asarray(exponents)
    rows = []
    for c in exponents:
        m = M2(c=float(c), einf_rule=einf_rule).fit(x[fit], y[fit])
        rows.append({"c": float(c), "rmse_fit": rmse_log(m.predict(x[fit]), y[fit]),
                     "rmse_extrapolation": rmse_log(m.predict(x[held]), y[held]), "eps_inf": m.params["eps_inf"]})
    return pd.DataFrame(rows)


def horizon_sweep(name: str, x, y, factors=(2, 4, 8), min_points: int = 5, **kw) -> pd.DataFrame:
    """Extrapolation RMSE of each estimator when fitting on x <= x_max / factor, for each factor
    (factors leaving fewer than `min_points` fit points are skipped)."""
    rows = []
    for f in factors:
        fit, _ = extrapolation_split(x, f)
        if fit.sum() < min_points:
            continue
        for r in fit_curve(name, x, y, factor=f, **kw):
            rows.append({"curve": name, "factor": f, "estimator": r.estimator, "rmse_extrapolation": r.rmse_extrapolation})
    return pd.DataFrame(rows, columns=["curve", "factor", "estimator", "rmse_extrapolation"])
