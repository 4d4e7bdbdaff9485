"""One look for every figure (seaborn's white grid and colour-blind palette) and the plots more than one notebook draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "set_theme",
    "save_figure",
    "show_saved",
    "plot_history",
    "plot_confusion",
    "plot_signals",
    "plot_claims",
    "PALETTE",
]

PALETTE = "colorblind"


# seaborn's look as `sns.set_theme(style="whitegrid", palette="colorblind", context="notebook")` sets it
# (seaborn 0.13), written out: importing seaborn (which loads scipy.stats) costs every kernel 1.5 s for
# these settings. tests/test_plotting.py holds them equal to seaborn's own. One difference: seaborn also
# makes its "rocket" colour map the default for images, which only seaborn can register; images keep
# matplotlib's viridis.
_COLORBLIND = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
               "#56b4e9")
_COLOR_CODES = {"b": "#0173b2", "g": "#029e73", "r": "#d55e00", "m": "#cc78bc", "y": "#ece133", "c": "#56b4e9",
                "k": (0.1, 0.1, 0.1)}
_SEABORN_RC = {
    "axes.axisbelow": True, "axes.edgecolor": ".8", "axes.grid": True, "axes.labelcolor": ".15",
    "axes.labelsize": 12.0, "axes.linewidth": 1.25, "axes.titlesize": 12.0,
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "font.size": 12.0, "grid.color": ".8", "grid.linewidth": 1.0, "legend.fontsize": 11.0,
    "legend.title_fontsize": 12.0, "lines.solid_capstyle": "round", "patch.edgecolor": "w",
    "patch.force_edgecolor": True, "text.color": ".15",
    "xtick.bottom": False, "xtick.color": ".15", "xtick.labelsize": 11.0, "xtick.major.size": 6.0,
    "xtick.major.width": 1.25, "xtick.minor.size": 4.0, "xtick.minor.width": 1.0,
    "ytick.left": False, "ytick.color": ".15", "ytick.labelsize": 11.0, "ytick.major.size": 6.0,
    "ytick.major.width": 1.25, "ytick.minor.size": 4.0, "ytick.minor.width": 1.0,
}
_OURS_RC = {"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold",
            "figure.autolayout": False}


def set_theme() -> None:
    """The workbook's look: seaborn's white grid and colour-blind palette at its notebook sizes, bold
    titles, PNG at 110 dpi inline and 150 dpi in files (set without importing seaborn)."""
    import matplotlib as mpl
    from cycler import cycler
    from matplotlib import colors

    mpl.rcParams.update(_SEABORN_RC)
    mpl.rcParams["axes.prop_cycle"] = cycler("color", [colors.to_rgb(c) for c in _COLORBLIND])
    for code, color in _COLOR_CODES.items():  # "r", "b", ... name the palette's colours, as under seaborn
        colors.get_named_colors_mapping()[code] = colors.to_rgb(color)
    mpl.rcParams.update(_OURS_RC)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save `fig` as a PNG at `path` (".png" appended when missing) and return the path."""
    path = Path(path)
    if path.suffix != ".png":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def show_saved(fig: plt.Figure, path: str | Path) -> bool:
    """In a notebook drawing figures inline, show the PNG just saved at `path` in place of `fig` and
    close `fig`, so the `plt.show()` that follows has nothing left to draw: each figure is drawn once,
    not once for the file and again for the page. It is shown at the size the inline backend would
    give it (the file is drawn at savefig.dpi, the page at figure.dpi, so it is also sharper).
    Elsewhere (a script, an interactive backend such as ipympl) nothing happens: False."""
    import matplotlib

    if "backend_inline" not in str(matplotlib.get_backend()):
        return False
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - the inline backend comes with IPython
        return False
    if get_ipython() is None:
        return False
    data = Path(path).read_bytes()
    width, height = _png_size(data)
    saved_dpi = plt.rcParams["savefig.dpi"]
    scale = 1.0 if saved_dpi == "figure" else fig.dpi / float(saved_dpi)
    display(Image(data=data, format="png", width=max(1, round(width * scale)), height=max(1, round(height * scale))))
    plt.close(fig)
    return True


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
