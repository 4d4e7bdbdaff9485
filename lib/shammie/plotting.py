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


def plot_claims(claims: Sequence[Mapping], ax=None) -> plt.Axes:
    """Measured value against the expected range for each numeric claim: green inside, red outside."""
    rows = [c for c in claims if isinstance(c.get("expected"), (list, tuple)) and isinstance(c.get("measured"), (int, float))]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * max(1, len(rows))))
    for i, c in enumerate(rows):
        lo, hi = c["expected"]
        lo_ = lo if lo is not None else c["measured"]
        hi_ = hi if hi is not None else c["measured"]
        ax.plot([lo_, hi_], [i, i], color="0.75", lw=8, solid_capstyle="round")
        ax.plot(c["measured"], i, "o", color="tab:green" if c["reproduced"] else "tab:red", ms=9)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([c["name"] for c in rows])
    ax.invert_yaxis()
    ax.set_xlabel("measured (dot) vs expected range (bar)")
    return ax
