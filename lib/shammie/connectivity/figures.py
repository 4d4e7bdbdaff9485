"""The notebook's figures.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_METHOD_STYLE = {
    "naive": ("0.55", ":"),
    "aligned": ("C0", "--"),
    "aligned + BN reset": ("C2", "-"),
    "aligned + REPAIR": ("C3", "-"),
    "weight matching": ("C4", "--"),
    "weight matching + REPAIR": ("C4", "-"),
}


def plot_curves(curves, panels: Sequence[tuple[str, str, str]], split: str = "test"):
    """Interpolation curves: one column per (network, variant, title) in `panels`, accuracy on top and loss
    below, one line per method; the straight line between the endpoints is drawn faintly."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        2, len(panels), figsize=(4.6 * len(panels), 6.4), squeeze=False, sharex=True
    )
    for j, (network, variant, title) in enumerate(panels):
        sub = curves[
            (curves["network"] == network)
            & (curves["variant"] == variant)
            & (curves["split"] == split)
        ]
        for method, g in sub.groupby("method", sort=False):
            g = g.sort_values("alpha")
            color, ls = _METHOD_STYLE.get(method, (None, "-"))
            for i, metric in enumerate(("acc", "loss")):
                y = g[metric] * (100 if metric == "acc" else 1)
                axes[i][j].plot(
                    g["alpha"], y, ls=ls, color=color, lw=2, marker="o", ms=3, label=method
                )
                axes[i][j].plot([0, 1], [y.iloc[0], y.iloc[-1]], color=color, lw=0.8, alpha=0.35)
        axes[0][j].set_title(title)
        axes[0][j].set_ylabel(f"{split} accuracy (%)")
        axes[1][j].set_ylabel(f"{split} loss")
        axes[1][j].set_xlabel(r"$\alpha$ (0: network A, 1: network B aligned)")
        axes[1][j].set_yscale("log")
        axes[0][j].legend(frameon=False, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_variance_collapse(ratios: Mapping[str, Mapping[str, Any]], column: str = "std_ratio"):
    """Per-layer ratio of the interpolated network's pre-activation spread to its endpoints' (alpha 0.5):
    one panel per network, one line per method (e.g. naive, aligned, aligned + REPAIR)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(ratios), figsize=(4.8 * len(ratios), 3.6), squeeze=False)
    for ax, (title, per_method) in zip(axes[0], ratios.items()):
        for method, df in per_method.items():
            color, ls = _METHOD_STYLE.get(method, (None, "-"))
            ax.plot(df["layer"], df[column], marker="o", lw=2, color=color, ls=ls, label=method)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("hidden layer")
        ax.set_ylabel(
            "std(merged) / std(endpoints)"
            if column == "std_ratio"
            else "var(merged) / var(endpoints)"
        )
        ax.set_title(title)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _mean_sd(table, by: Sequence[str], column: str):
    """Mean and standard deviation of `column` over pairs, per group of `by` (sd 0 for a single pair)."""
    g = table.groupby(list(by), sort=False)[column]
    out = g.mean().to_frame("mean")
    out["sd"] = g.std(ddof=1).fillna(0.0)
    return out.reset_index()


def plot_width_sweep(table, family: str, column: str = "barrier"):
    """Barrier (`column`, e.g. the barrier or `norm_barrier`) against width (aligned; aligned + REPAIR on the
    folded networks; aligned + BN reset) and the relative barrier reduction, from a `barrier_summary` with
    `family` and `width` columns: the mean over pairs with one standard deviation, each pair as a dot."""
    import matplotlib.pyplot as plt

    t = table[(table["family"] == family) & (table["method"] != "naive")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (variant, method), g in t.groupby(["variant", "method"], sort=False):
        color, ls = _METHOD_STYLE.get(method, (None, "-"))
        label = f"{method} ({'folded, no norm' if variant == 'folded' else 'with BN'})"
        m = _mean_sd(g, ["width"], column).sort_values("width")
        axes[0].errorbar(m["width"], 100 * m["mean"], yerr=100 * m["sd"], marker="s" if variant == "bn" else "o",
                         color=color, ls=ls if variant == "folded" else "-.", lw=2, capsize=3, label=label)
        axes[0].scatter(g["width"], 100 * g[column], color=color, s=8, alpha=0.5)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("width")
    axes[0].set_ylabel("test accuracy barrier " + ("(points)" if column == "barrier" else "/ endpoints (%)"))
    axes[0].set_title(f"{family}: barrier against width")
    axes[0].legend(frameon=False, fontsize=8)
    red = t[t["reduction"].notna()]
    for variant, g in red.groupby("variant", sort=False):
        m = _mean_sd(g, ["width"], "reduction").sort_values("width")
        line = axes[1].errorbar(m["width"], 100 * m["mean"], yerr=100 * m["sd"], marker="o", lw=2, capsize=3,
                                label="REPAIR vs aligned (folded)" if variant == "folded"
                                else "BN reset vs aligned (with BN)")
        axes[1].scatter(g["width"], 100 * g["reduction"], s=8, alpha=0.5, color=line[0].get_color())
    axes[1].axhspan(60, 100, color="0.9", zorder=0, label="paper: 60-100%")
    axes[1].set_xscale("log", base=2)
    axes[1].set_ylim(0, 105)
    axes[1].set_xlabel("width")
    axes[1].set_ylabel("relative barrier reduction (%)")
    axes[1].set_title("reduction against width")
    axes[1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_depth_sweep(table, column: str = "barrier"):
    """Barrier against depth (number of hidden layers), aligned and aligned + REPAIR (folded networks), from a
    `barrier_summary` with a `depth` column: the mean over pairs with one standard deviation, pairs as dots."""
    import matplotlib.pyplot as plt

    t = table[(table["variant"] == "folded") & (table["method"] != "naive")]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for method, g in t.groupby("method", sort=False):
        color, ls = _METHOD_STYLE.get(method, (None, "-"))
        m = _mean_sd(g, ["depth"], column).sort_values("depth")
        ax.errorbar(m["depth"], 100 * m["mean"], yerr=100 * m["sd"], marker="o", color=color, ls=ls, lw=2,
                    capsize=3, label=method)
        ax.scatter(g["depth"], 100 * g[column], color=color, s=8, alpha=0.5)
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy barrier (points)")
    ax.set_title(f"{t['network'].iloc[0]} (folded, no norm): barrier against depth")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_paper_comparison(paper, ours, ours_label: str = "this run"):
    """Relative barrier reductions side by side: the paper's published ones (DataFrame with `label` and
    `reduction`) and ours (same columns), as horizontal bars."""
    import matplotlib.pyplot as plt

    rows = [(r.label, r.reduction, "paper") for r in paper.itertuples()] + [
        (r.label, r.reduction, "ours") for r in ours.itertuples()
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.28 * len(rows)))
    y = np.arange(len(rows))
    colors = ["C1" if src == "paper" else "C0" for _, _, src in rows]
    ax.barh(y, [100 * r for _, r, _ in rows], color=colors)
    ax.set_yticks(y, [label for label, _, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(60, color="0.4", ls=":", lw=1)
    ax.set_xlim(0, 105)
    ax.set_xlabel("relative barrier reduction (%), test accuracy")
    handles = [plt.Rectangle((0, 0), 1, 1, color="C1"), plt.Rectangle((0, 0), 1, 1, color="C0")]
    ax.legend(
        handles,
        ["paper (published)", f"ours ({ours_label})"],
        frameon=False,
        fontsize=8,
        ncol=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.09 - 1.2 / len(rows)),
    )
    fig.tight_layout()
    return fig
