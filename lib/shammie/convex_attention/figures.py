"""The theme's figures."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from .model import token_norms
from .solver import ConvexSolution, PathResult
from .training import Fit

# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


#: colours of the non-convex fits, in the order of their labels (FISTA is C0)
FIT_COLORS = ("C3", "C2", "C4", "C8", "C9", "C7")


def plot_objective_gap(
    p_star: float,
    convex: ConvexSolution | None = None,
    fits: dict[str, list[Fit]] | None = None,
    ax=None,
    relative: bool = True,
    floor: float = 1e-16,
):
    """Objective minus the convex optimum p* against wall-clock seconds (log-log), FISTA and every fit.

    `fits` maps a label (e.g. "h=2") to its runs, drawn in one colour. Relative gaps by default; gaps
    below `floor` are drawn at the floor.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    scale = abs(p_star) if relative else 1.0

    def draw(times, hist, **kw):
        t = np.maximum(np.asarray(times, dtype=float), 1e-4)
        g = np.maximum((np.asarray(hist, dtype=float) - p_star) / scale, floor)
        ax.plot(t, g, **kw)

    for i, (label, runs) in enumerate((fits or {}).items()):
        for j, f in enumerate(runs):
            draw(
                f.times,
                f.history,
                color=FIT_COLORS[i % len(FIT_COLORS)],
                lw=1.4,
                alpha=0.8,
                label=label if j == 0 else None,
            )
    if convex is not None:
        draw(
            convex.times,
            convex.history,
            color="C0",
            lw=2.5,
            marker=".",
            ms=3,
            label="convex (FISTA)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("(objective - p*) / p*" if relative else "objective - p*")
    ax.legend(frameon=False, fontsize=9)
    return ax


def plot_token_norms(Z: Any, support: tuple[int, ...], teacher: Any = None, ax=None):
    """Bar chart of the convex solution's per-token norms ||Z_k||, teacher tokens highlighted (and the
    teacher's own norms as open markers when given)."""
    norms = token_norms(Z).cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    colors = ["C3" if k in support else "C0" for k in range(len(norms))]
    ax.bar(np.arange(len(norms)), norms, color=colors)
    if teacher is not None:
        ax.plot(
            np.arange(len(norms)),
            token_norms(teacher).cpu().numpy(),
            "o",
            mfc="none",
            mec="k",
            label="teacher ||Z*_k||",
        )
        ax.legend(frameon=False, fontsize=9)
    ax.set_xticks(np.arange(len(norms)))
    ax.set_xlabel("token position k (red: read by the teacher)")
    ax.set_ylabel("||Z_k||")
    return ax


def plot_attention_maps(
    maps: dict[str, Any], support: tuple[int, ...] = (), magnitudes: dict[str, Any] | None = None
):
    """Heatmaps of attention rows (heads x tokens), one panel per entry of `maps`; teacher tokens are
    marked below each panel. `magnitudes` (optional, per entry) annotates each head with ||v_j|| ||b_j||."""
    k = len(maps)
    fig, axes = plt.subplots(1, k, figsize=(3.3 * k, 3.4), squeeze=False)
    for ax, (name, W) in zip(axes[0], maps.items()):
        W = torch.as_tensor(W).detach().cpu().numpy()
        ax.imshow(W, vmin=0, vmax=1, cmap="Blues", aspect="auto", interpolation="nearest")
        ax.grid(False)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("token")
        ax.set_ylabel("head")
        ax.set_yticks(np.arange(W.shape[0]), [str(j) for j in range(W.shape[0])])
        ax.set_xticks(np.arange(W.shape[1]), [str(t) for t in range(W.shape[1])])
        for t in support:
            ax.get_xticklabels()[t].set_color("C3")
            ax.get_xticklabels()[t].set_fontweight("bold")
        if magnitudes and name in magnitudes:
            ax.text(
                1.01,
                1.0,
                "||v||·||b||",
                transform=ax.transAxes,
                va="bottom",
                fontsize=7,
                color="0.3",
            )
            for j, m in enumerate(np.asarray(magnitudes[name], dtype=float)):
                ax.text(
                    1.01,
                    j,
                    f"{m:.2f}",
                    transform=ax.get_yaxis_transform(),
                    va="center",
                    fontsize=7,
                    color="0.3",
                )
    fig.tight_layout()
    return fig


def plot_path(path: PathResult, support: tuple[int, ...] = (), beta: float | None = None):
    """The regularization path: active tokens and per-token norms against beta / lambda_max, and the
    train/test MSE. The chosen `beta` is marked."""
    frac = np.asarray(path.betas) / path.lam_max
    norms = np.stack([s.token_norms.cpu().numpy() for s in path.solutions])  # (points, n)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].step(frac, path.num_active, where="post", color="C0", lw=2)
    axes[0].set_ylabel("active tokens")
    for k in range(norms.shape[1]):
        axes[1].plot(
            frac,
            norms[:, k],
            color="C3" if k in support else "0.6",
            lw=2 if k in support else 1,
            label=f"token {k}" if k in support else None,
        )
    axes[1].set_ylabel("||Z_k|| (red: teacher tokens)")
    axes[2].plot(frac, path.train_mse, label="train", color="C0")
    if path.test_mse is not None:
        axes[2].plot(frac, path.test_mse, label="test", color="C1")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("MSE")
    axes[2].legend(frameon=False)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("beta / lambda_max")
        if beta is not None:
            ax.axvline(beta / path.lam_max, color="k", ls=":", lw=1)
    fig.tight_layout()
    return fig


def plot_errors(table, noise_mse: float | None = None, ax=None):
    """Grouped bars of train and test MSE per model (a DataFrame indexed by model with columns
    'train MSE' and 'test MSE'); the label-noise floor as a dotted line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["train MSE"], width=0.4, label="train", color="C0")
    ax.bar(x + 0.2, table["test MSE"], width=0.4, label="test", color="C1")
    if noise_mse is not None:
        ax.axhline(noise_mse, color="0.3", ls=":", lw=1, label="noise floor")
    ax.set_xticks(x, [str(i) for i in table.index], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("MSE")
    ax.legend(frameon=False)
    return ax
