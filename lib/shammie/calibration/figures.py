"""Figures of the calibration theme."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .experiment import CalibrationData
from .metrics import ece, reliability_data

__all__ = [
    "plot_reliability",
    "plot_layers",
    "plot_severity",
    "plot_corruptions",
]


# =============================================================================================
# Figures of this theme


def plot_reliability(logits_by_method: dict[str, np.ndarray], labels: np.ndarray, n_bins: int = 15):
    """Reliability diagrams, one panel per method: accuracy per equal-width confidence bin (blue bars),
    the gap between accuracy and mean confidence (hatched red), the share of examples per bin (grey,
    bottom strip), ECE in the title. Bars below the diagonal are over-confident bins."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(logits_by_method), figsize=(3.7 * len(logits_by_method), 3.9),
                             sharey=True, squeeze=False)
    width = 1.0 / n_bins
    for ax, (name, z) in zip(axes[0], logits_by_method.items()):
        rd = reliability_data(z, labels, n_bins=n_bins, kind="logits")
        full = (rd["count"] > 0).to_numpy()
        centers = ((rd["lower"] + rd["upper"]) / 2).to_numpy()
        acc, conf = rd["accuracy"].to_numpy(), rd["confidence"].to_numpy()
        share = (rd["count"] / rd["count"].sum()).to_numpy()
        ax.bar(centers[full], acc[full], width=width * 0.92, color="C0", alpha=0.85)
        lo = np.minimum(acc, conf)[full]
        ax.bar(centers[full], np.abs(acc - conf)[full], bottom=lo, width=width * 0.92, facecolor=(0.84, 0.37, 0.0, 0.25),
               edgecolor="C3", hatch="///", lw=0.8)
        ax.bar(centers, -0.12 * share / max(share.max(), 1e-12), width=width * 0.92, color="0.55")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.13, 1.0)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name}\nECE = {ece(z, labels, n_bins, kind='logits'):.4f}")
    axes[0][0].set_ylabel("accuracy in bin")
    axes[0][0].legend(handles=[Patch(color="C0", alpha=0.85, label="accuracy"),
                               Patch(facecolor=(0.84, 0.37, 0.0, 0.25), edgecolor="C3", hatch="///", label="gap to confidence"),
                               Patch(color="0.55", label="share of examples")],
                      frameon=False, loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_layers(names: Sequence[str], probe_acc: np.ndarray, weights: dict[str, np.ndarray]):
    """Per layer: probe test accuracy (mean ± std over seeds, left) and learned LATES weights (right),
    one line per fitted variant; arrays are (seeds, layers)."""
    import matplotlib.pyplot as plt

    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    acc = np.asarray(probe_acc)
    axes[0].errorbar(x, acc.mean(0), yerr=acc.std(0), marker="o", capsize=4, lw=2)
    for s in acc:
        axes[0].plot(x, s, color="C0", alpha=0.25, lw=1)
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("each layer's own vote (probe accuracy)")
    for i, (label, w) in enumerate(weights.items()):
        w = np.asarray(w)
        axes[1].bar(x + (i - (len(weights) - 1) / 2) * 0.35, w.mean(0), width=0.35, yerr=w.std(0), capsize=3,
                    label=label, color=f"C{i + 1}", alpha=0.85)
    axes[1].set_xticks(x, names)
    axes[1].set_ylabel("weight $w_l = 1/T_l$")
    top = max(float((np.asarray(w).mean(0) + np.asarray(w).std(0)).max()) for w in weights.values())
    axes[1].set_ylim(0, 1.3 * top)
    axes[1].set_title("learned LATES weights")
    axes[1].legend(frameon=False, loc="upper center", ncol=len(weights))
    fig.tight_layout()
    return fig


def plot_severity(ece_table, acc_table, methods: Sequence[str] | None = None, reference: str = "TS"):
    """Against shift severity (0 = clean test), one line per method: ECE, ECE minus the `reference`
    method's ECE (below 0 = better calibrated than it), and accuracy."""
    import matplotlib.pyplot as plt

    methods = list(methods) if methods is not None else list(ece_table.index)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    styles = {"uncalibrated": ":", "VS": "-.", "LATES (equal)": "--", "MC + TS": (0, (3, 1, 1, 1)), "MC + LATES": (0, (5, 1))}
    delta = ece_table - ece_table.loc[reference]
    for i, m in enumerate(methods):
        for ax, table in zip(axes, (ece_table, delta, acc_table)):
            ax.plot(table.columns, table.loc[m], marker="o", ms=4, lw=2.4 if m in ("LATES", reference) else 1.4,
                    ls=styles.get(m, "-"), color=f"C{i}", label=m)
    axes[0].set_ylabel("ECE (15 equal-width bins)")
    axes[1].set_ylabel(f"ECE minus {reference}'s ECE")
    axes[1].axhline(0, color="0.3", lw=0.8)
    axes[2].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xlabel("severity (0 = clean test)")
        ax.set_xticks(list(ece_table.columns))
    axes[0].set_title("calibration under shift")
    axes[1].set_title(f"calibration relative to {reference}")
    axes[2].set_title("accuracy under shift")
    axes[2].legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_corruptions(data: CalibrationData, severities: Sequence[int] = (1, 3, 5), max_corruptions: int = 6):
    """The first test input under each corruption at a few severities, taken from the shifted test sets:
    overlaid signals for 1D inputs (one panel per corruption), a grid for images (rows: corruptions)."""
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(c for c, _ in data.ood))[:max_corruptions]
    severities = [s for s in severities if (kinds[0], s) in data.ood]
    clean = data.x_test[0]
    if clean.dim() == 3:  # images: rows = corruptions, columns = clean + severities
        fig, axes = plt.subplots(len(kinds), len(severities) + 1, squeeze=False,
                                 figsize=(1.6 * (len(severities) + 1), 1.6 * len(kinds)))
        for r, c in enumerate(kinds):
            imgs = [clean] + [data.ood[(c, s)][0][0] for s in severities]
            for k, (ax, img) in enumerate(zip(axes[r], imgs)):
                a = img.permute(1, 2, 0).numpy()
                ax.imshow((a - a.min()) / (a.max() - a.min() + 1e-12))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("clean" if k == 0 else f"severity {severities[k - 1]}", fontsize=8)
            axes[r][0].set_ylabel(c.replace("_", " "), fontsize=8)
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 2.8), sharey=True, squeeze=False)
    t = np.arange(clean.shape[-1])
    for ax, c in zip(axes[0], kinds):
        ax.plot(clean.numpy(), t, color="0.2", lw=2.2, label="clean")
        for j, s in enumerate(severities):
            ax.plot(data.ood[(c, s)][0][0].numpy(), t, lw=1.2, color=f"C{j + 1}", label=f"severity {s}")
        ax.set_title(c.replace("_", " "))
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
