"""One look for every figure (a seaborn theme) and the plots more than one notebook draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "set_theme",
    "save_figure",
    "plot_history",
    "plot_confusion",
    "plot_signals",
    "plot_claims",
    "PALETTE",
]

PALETTE = "colorblind"


def set_theme() -> None:
    """The workbook's seaborn theme: white grid, colour-blind palette, readable sizes, PNG at 110 dpi inline."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                      "axes.titleweight": "bold", "figure.autolayout": False})


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save `fig` as a PNG at `path` (".png" appended when missing) and return the path."""
    path = Path(path)
    if path.suffix != ".png":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_history(histories: Mapping[str, object], keys: Sequence[str] = ("train_loss", "val_acc"),
                 titles: Sequence[str] | None = None) -> plt.Figure:
    """Learning curves: one panel per key in `keys`, one line per named History (or dict of lists)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key, title in zip(axes[0], keys, titles or keys):
        for name, h in histories.items():
            values = h[key] if not isinstance(h, Mapping) else h.get(key, [])
            ax.plot(range(1, len(values) + 1), values, label=name, lw=2)
        ax.set_xlabel("epoch")
        ax.set_title(title.replace("_", " "))
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_confusion(y_true, y_pred, labels: Sequence[str], ax=None, normalize: bool = True, title: str = "") -> plt.Axes:
    """A confusion-matrix heatmap (rows: true class; normalised per row by default)."""
    import seaborn as sns

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(labels)
    cm = np.zeros((k, k))
    np.add.at(cm, (y_true, y_pred), 1)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.4))
    sns.heatmap(cm, ax=ax, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", cbar=False,
                xticklabels=labels, yticklabels=labels, annot_kws={"fontsize": 7}, vmin=0, vmax=1 if normalize else None)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return ax


def plot_signals(x, y, labels: Sequence[str], per_class: int = 1, t=None) -> plt.Figure:
    """A grid of example 1D signals, `per_class` per class, titled by label."""
    x, y = np.asarray(x), np.asarray(y)
    k = len(labels)
    fig, axes = plt.subplots(per_class, k, figsize=(1.6 * k, 1.6 * per_class), sharey=True, squeeze=False)
    t = np.arange(x.shape[-1]) if t is None else np.asarray(t)
    for c in range(k):
        idx = np.flatnonzero(y == c)[:per_class]
        for r, i in enumerate(idx):
            ax = axes[r][c]
            ax.plot(x[i], t, lw=2, color=f"C{c % 10}")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[c])
    fig.tight_layout()
    return fig


def plot_claims(claims: Sequence[Mapping], width: float = 7.0) -> plt.Figure:
    """One row per judged claim (dicts as in metrics.json): each seed's value (dots, coloured by the
    verdict), the confidence interval (black bar) and the rule's threshold (red line) or range (grey
    band), each row on its own scale."""
    rows = [c for c in claims if c.get("values")]
    fig, axes = plt.subplots(max(1, len(rows)), 1, figsize=(width, 0.2 + 0.62 * max(1, len(rows))), squeeze=False)
    colors = {"reproduced": "tab:green", "not reproduced": "tab:red", "inconclusive": "goldenrod"}
    for ax, c in zip(axes[:, 0], rows):
        rule = c["rule"]
        if rule.get("direction") == "within":
            lo = rule.get("low", min(c["values"]))
            hi = rule.get("high", max(c["values"]))
            ax.axvspan(lo, hi, color="0.88", zorder=0)
        elif rule.get("threshold") is not None:
            ax.axvline(rule["threshold"], color="tab:red", lw=1.2)
        if c.get("ci"):
            ax.plot(c["ci"], [0, 0], color="black", lw=2.5, solid_capstyle="butt")
        ax.plot(c["values"], [0] * len(c["values"]), "o", color=colors[c["verdict"]], alpha=0.75, ms=6)
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.set_title(f"{c['name']}: {c['verdict']}", fontsize=8, loc="left", pad=2)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.15)
    fig.tight_layout(h_pad=0.3)
    return fig
