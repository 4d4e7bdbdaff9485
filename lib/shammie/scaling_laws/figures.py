"""Figures of notebook 05: per-curve 1x4 panels with the extrapolation region shaded, the sphere's
excess risk at three cut-offs (the paper's Fig. 2), RMSE against a fixed exponent (Fig. 3), the
extrapolation horizon, and win fractions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .estimators import ESTIMATORS
from .protocol import extrapolation_split

__all__ = ["plot_curve_panels", "plot_sphere_cutoffs", "plot_exponent_scan", "plot_horizon", "plot_win_fractions"]

_COLORS = dict(zip(ESTIMATORS, ("tab:gray", "tab:blue", "tab:green", "tab:red"), strict=True))


def plot_curve_panels(curve, models: dict, table: pd.DataFrame, factor: float = 2.0) -> plt.Figure:
    """One row of four panels (M1..M4) for `curve`: fit points black, held-out points orange, the fitted
    law over [x_min, 3 x_max], the extrapolation region shaded, the extrapolation RMSE in the title."""
    fit, held = extrapolation_split(curve.x, factor)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), sharey=True)
    grid = np.logspace(np.log10(curve.x.min()), np.log10(3 * curve.x.max()), 200)
    for ax, est in zip(axes, ESTIMATORS, strict=True):
        ax.axvspan(curve.x[fit].max(), grid[-1], color="0.93", zorder=0)
        ax.plot(curve.x[fit], curve.y[fit], "o", color="black", ms=3.5, label="fit")
        ax.plot(curve.x[held], curve.y[held], "o", color="tab:orange", ms=3.5, label="held out")
        ax.plot(grid, models[(curve.name, est)].predict(grid), color=_COLORS[est], lw=1.8)
        row = table[(table.curve == curve.name) & (table.estimator == est)].iloc[0]
        ax.set_title(f"{est}: RMSE {row.rmse_extrapolation:.3f}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("x")
    axes[0].set_ylabel("test error")
    axes[0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"{curve.name}: fitted on x ≤ x_max/{factor:g}, extrapolation region shaded", y=1.03, fontsize=10)
    fig.tight_layout()
    return fig


def plot_sphere_cutoffs(curve, models_by_cutoff: dict, delta: float) -> plt.Figure:
    """Excess risk (error - Bayes risk) on log-log axes, with each estimator's fit for each cut-off:
    the paper's Fig. 2 on our sphere curve."""
    cutoffs = sorted(models_by_cutoff)
    fig, axes = plt.subplots(1, len(cutoffs), figsize=(4.2 * len(cutoffs), 3.3), sharey=True)
    axes = np.atleast_1d(axes)
    grid = np.logspace(np.log10(curve.x.min()), np.log10(curve.x.max()), 200)
    for ax, cut in zip(axes, cutoffs, strict=True):
        ax.plot(curve.x, curve.y - delta, "o", color="black", ms=3.5, label="measured")
        for est in ESTIMATORS:
            m = models_by_cutoff[cut][est]
            ax.plot(grid, np.clip(m.predict(grid) - delta, 1e-4, None), color=_COLORS[est], lw=1.5,
                    label=f"{est} (c = {m.params['c']:.2f})")
        ax.axvline(max(cut, curve.x.min()), color="0.5", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="training examples n", title=f"cut-off {cut}")
        ax.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel(f"excess risk (error − {delta:g})")
    fig.tight_layout()
    return fig


def plot_exponent_scan(scans: dict[str, pd.DataFrame]) -> plt.Figure:
    """Interpolation and extrapolation RMSE of M2 against its fixed exponent c, per curve; the two
    minima marked (the paper's Fig. 3)."""
    fig, axes = plt.subplots(1, len(scans), figsize=(4.3 * len(scans), 3.2))
    axes = np.atleast_1d(axes)
    for ax, (name, s) in zip(axes, scans.items(), strict=True):
        for col, color, label in (("rmse_fit", "black", "interpolation"), ("rmse_extrapolation", "tab:orange", "extrapolation")):
            ax.plot(s.c, s[col], color=color, label=label)
            best = s.loc[s[col].idxmin()]
            ax.axvline(best.c, color=color, ls="--", lw=1)
        ax.set(yscale="log", xlabel="fixed exponent c", title=name)
        ax.invert_xaxis()
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel("RMSE of log error")
    fig.tight_layout()
    return fig


def plot_horizon(sweep: pd.DataFrame) -> plt.Figure:
    """Median extrapolation RMSE over curves against the horizon factor, per estimator."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    med = sweep.groupby(["estimator", "factor"]).rmse_extrapolation.median().unstack(0)
    for est in med.columns:
        ax.plot(med.index, med[est], "o-", color=_COLORS[est], label=est)
    ax.set(xscale="log", yscale="log", xlabel="fit on x ≤ x_max / factor", ylabel="median extrapolation RMSE")
    ax.set_xticks(med.index, [str(f) for f in med.index])
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_win_fractions(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> plt.Figure:
    """Bars of the share of curves each estimator extrapolates best on, per group (ours; the paper's
    beside it when given)."""
    frames = [ours.assign(source="ours")] + ([paper.assign(source="paper")] if paper is not None else [])
    df = pd.concat(frames)
    groups = list(dict.fromkeys(df["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.3 * len(groups), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, g in zip(axes, groups, strict=True):
        sub = df[df.group == g]
        for k, (src, hatch) in enumerate((("ours", ""), ("paper", "//"))):
            s = sub[sub.source == src].set_index("estimator").reindex(list(ESTIMATORS))["share"]
            if s.notna().any():
                ax.bar(np.arange(4) + (k - 0.5) * 0.38, s.fillna(0), width=0.38, hatch=hatch,
                       color=[_COLORS[e] for e in ESTIMATORS], alpha=0.85 if not hatch else 0.45, label=src)
        ax.set_xticks(range(4), ESTIMATORS)
        ax.set_title(g, fontsize=9)
    axes[0].set_ylabel("share of curves where best")
    axes[-1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
