"""Figures of notebook 07."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..transformer import softcap

__all__ = ["plot_curves", "plot_window_sweep", "plot_caps", "plot_kv_heads", "plot_size_sweep"]


def plot_curves(runs: dict[str, list], teacher_val: float) -> plt.Figure:
    """Validation loss by step for each kind of student (one thin line per seed, the mean thick), the
    teacher's final loss as a horizontal line (Table 6/7 analog)."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for (name, trained), color in zip(runs.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        steps = np.asarray(trained[0].history["eval_step"])
        vals = np.array([t.history["val"] for t in trained])
        for v in vals:
            ax.plot(steps, v, color=color, lw=0.7, alpha=0.5)
        ax.plot(steps, vals.mean(0), color=color, lw=2, label=f"{name} (mean of {len(vals)})")
    ax.axhline(teacher_val, color="k", ls="--", lw=1, label="teacher (final)")
    ax.set(xlabel="training step", ylabel="validation loss (nats/char, curve windows)", title="students at equal steps")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_window_sweep(sweeps: dict[str, list[dict]], trained: int) -> plt.Figure:
    """Validation loss against the inference window (mean and per-model points) for each group of models,
    with the trained window marked and the all-global edit as a separate point on the right."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for (name, rows), color in zip(sweeps.items(), ("tab:orange", "k", "tab:blue")):
        sizes = sorted(k for k in rows[0] if k != "global")
        vals = np.array([[r[w] for w in sizes] for r in rows])
        glob = np.array([r["global"] for r in rows])
        ax.plot(sizes, vals.mean(0), "o-", color=color, label=name)
        last = sizes[-1] * 2
        ax.plot([last] * len(glob), glob, "x", color=color)
    ax.axvline(trained, color="grey", ls=":", label=f"trained window {trained}")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="inference window of the local layers (x at right: all layers global)",
           ylabel="validation loss (nats/char)", title="changing the window at inference only")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_caps(raw: dict[str, np.ndarray], attn_cap: float, final_cap: float) -> plt.Figure:
    """Histograms of raw attention and final logits against their caps, and the soft-cap function
    against the identity and hard clipping."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, cap in ((axes[0], "attention", attn_cap), (axes[1], "final", final_cap)):
        ax.hist(raw[key], bins=80, histtype="stepfilled", color="tab:blue", edgecolor="tab:blue", alpha=0.7)
        for s in (-cap, cap):
            ax.axvline(s, color="tab:red", ls="--")
        ax.set(xlabel=f"raw {key} logit", ylabel="count", title=f"{key} logits vs cap ±{cap:g}", yscale="log")
    x = torch.linspace(-3 * final_cap, 3 * final_cap, 400)
    axes[2].plot(x, x, color="grey", ls=":", label="identity")
    axes[2].plot(x, x.clamp(-final_cap, final_cap), color="k", ls="--", label="hard clip")
    axes[2].plot(x, softcap(x, final_cap), color="tab:red", label=f"{final_cap:g}·tanh(x/{final_cap:g})")
    axes[2].set(xlabel="logit", ylabel="after the cap", title="soft-cap", ylim=(-2 * final_cap, 2 * final_cap))
    axes[2].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_kv_heads(params: dict[str, int], vals: dict[str, list[float]]) -> plt.Figure:
    """Parameters and validation loss (per seed and mean) for MHA / GQA / MQA students."""
    names = list(vals)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    axes[0].bar(names, [params[n] for n in names], color="tab:gray")
    axes[0].set(ylabel="parameters", title="parameters")
    for i, n in enumerate(names):
        axes[1].plot([i] * len(vals[n]), vals[n], "o", color="tab:blue", alpha=0.6)
        axes[1].plot([i - 0.2, i + 0.2], [np.mean(vals[n])] * 2, color="k", lw=2)
    axes[1].set_xticks(range(len(names)), names)
    axes[1].set(ylabel="validation loss (nats/char)", title="quality at equal steps")
    fig.tight_layout()
    return fig


def plot_size_sweep(table) -> plt.Figure:
    """NTP and KD validation loss against student parameters (one point per seed, the mean joined), the
    paper's Table 7 analog; `table` has columns params, NTP, KD."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for name, color in (("NTP", "tab:blue"), ("KD", "tab:orange")):
        ax.plot(table["params"], table[name], "o", color=color, alpha=0.5)
        mean = table.groupby("params")[name].mean()
        ax.plot(mean.index, mean.values, "-", color=color, label=name)
    ax.set(xscale="log", xlabel="student parameters", ylabel="validation loss (nats/char)",
           title="distillation gain against student size")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
