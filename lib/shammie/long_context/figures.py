"""Figures of notebook 08: Gemini-style recall heat-maps, recall against the number of needles, per-position
NLL with the power-law fit, dense against MoE learning curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap

from .context_lm import cumulative_nll

__all__ = ["plot_recall_grids", "plot_needle_counts", "plot_position_nll", "plot_moe_curves"]

_RED_GREEN = LinearSegmentedColormap.from_list("recall", ["#c0392b", "#f1c40f", "#27ae60"])


def plot_recall_grids(grids: dict[str, pd.DataFrame], train_length: int, outlines: dict[str, pd.DataFrame] | None = None,
                      outline_label: str = "outlined: reachable"):
    """One heat-map per model (x: context length, y: depth, 0 % at the top as in Gemini's Fig. 8; green =
    recalled), a dashed line after the longest trained length and, for the models named in `outlines`, the
    cells where that boolean grid is True outlined (e.g. within a local-only model's receptive field)."""
    fig, axes = plt.subplots(1, len(grids), figsize=(4.0 * len(grids) + 1, 3.8), squeeze=False)
    for k, (ax, (name, grid)) in enumerate(zip(axes[0], grids.items())):
        lengths, depths = list(grid.columns), list(grid.index)
        im = ax.imshow(grid.to_numpy(dtype=float), cmap=_RED_GREEN, vmin=0, vmax=1, aspect="auto")
        ax.grid(False)
        for i in range(len(depths)):
            for j in range(len(lengths)):
                ax.text(j, i, f"{grid.iat[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
        ax.set_xlabel("context length (tokens)")
        if k == 0:
            ax.set_ylabel("needle depth")
        inside = [j for j, n in enumerate(lengths) if n <= train_length]
        if inside and inside[-1] < len(lengths) - 1:
            ax.axvline(inside[-1] + 0.5, color="k", ls="--", lw=1.2)
        title = name
        if outlines and name in outlines:
            mask = outlines[name].loc[depths, lengths].to_numpy()
            for i in range(len(depths)):
                for j in range(len(lengths)):
                    if mask[i, j]:
                        ax.add_patch(plt.Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, ec="navy", lw=2))
            title = f"{name}\n({outline_label})"
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"single-needle recall (dashed line: the longest trained length, {train_length}, lies to its left)",
                 fontsize=10, y=0.99)
    fig.subplots_adjust(top=0.78, bottom=0.17, wspace=0.25)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="recall")
    return fig


def plot_needle_counts(curves: list[dict[int, float]], chance: float, label: str = "local-global"):
    """Recall of the queried needle against the number of needles (each seed a thin line, the mean bold),
    beside 1/k (copying one needle at random) and chance (two random digits)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ks = sorted(curves[0])
    for c in curves:
        ax.plot(ks, [c[k] for k in ks], color="C0", alpha=0.35, lw=1)
    ax.plot(ks, [np.mean([c[k] for c in curves]) for k in ks], "o-", color="C0", lw=2, label=f"{label} (mean)")
    ax.plot(ks, [curves[0][1] * 1 / k for k in ks], "k--", lw=1, label="recall(k=1) / k: a needle at random")
    ax.axhline(chance, color="gray", ls=":", label="chance (random digits)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("needles in the haystack (k)")
    ax.set_ylabel("recall of the queried needle")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_position_nll(curves: dict[str, list[np.ndarray]], fits: dict[str, list[dict]]):
    """Left: per-position NLL (mean over seeds) per model. Right: the cumulative average NLL (log x) with the
    power-law fit of each seed's curve (Gemini's Fig. 7 layout)."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, runs) in enumerate(curves.items()):
        x = np.arange(1, len(runs[0]) + 1)
        ax0.plot(x, np.mean(runs, 0), color=f"C{i}", label=name)
        for nll, fit in zip(runs, fits.get(name, [])):
            ax1.plot(x, cumulative_nll(nll), color=f"C{i}", lw=1.5, alpha=0.6)
            ax1.plot(x, fit["a"] * x ** fit["b"] + fit["c"], color="k", ls="--", lw=0.8)
        ax1.plot([], [], color=f"C{i}", label=f"{name}: cumulative NLL")
    ax1.plot([], [], "k--", lw=0.8, label="power-law fit a x^b + c")
    ax0.set_xscale("log")
    ax0.set_xlabel("position (characters read)")
    ax0.set_ylabel("NLL (nats)")
    ax0.set_title("per-position NLL")
    ax0.legend(fontsize=8)
    ax1.set_xscale("log")
    ax1.set_xlabel("position")
    ax1.set_ylabel("cumulative average NLL")
    ax1.set_title("cumulative NLL and power-law fits")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_moe_curves(pairs: list[dict], steps_key: str = "step"):
    """Training loss of the dense and the MoE LM per seed (same batches, equal active parameters)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, pair in enumerate(pairs):
        for j, (name, run) in enumerate(pair.items()):
            ax.plot(run.history[steps_key], run.history["loss"], color=f"C{j}", alpha=0.7,
                    label=name if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/char)")
    ax.set_title("dense vs mixture of experts, equal active parameters")
    ax.legend()
    fig.tight_layout()
    return fig
