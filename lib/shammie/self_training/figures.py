"""Figures of notebook 06 (each takes the list of per-seed `SeedResult`s)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .evaluation import DIFFICULTY_BINS

__all__ = ["plot_accuracy_by_iteration", "plot_pass_k", "plot_e_step", "plot_difficulty", "plot_votes",
           "plot_size_sweep"]

_COLORS = {"restart": "tab:blue", "continue": "tab:orange", "SFT(human)": "tab:green", "base": "k"}


def _lines(ax, x, rows, color, label, ls="-"):
    rows = np.asarray(rows, dtype=float)
    for r in rows:
        ax.plot(x, r, color=color, lw=0.6, alpha=0.35, ls=ls)
    ax.plot(x, rows.mean(0), "o" + ls, color=color, lw=2, ms=4, label=f"{label} (mean of {len(rows)})")


def plot_accuracy_by_iteration(results) -> plt.Figure:
    """Greedy train and test accuracy by iteration (0 = base) for ReST^EM restarting from the base and
    continuing from the last iterate, SFT(human) as a dashed line (the paper's Fig. 4 shape)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    its = np.arange(len(results[0].test_by_iteration()))
    for ax, split in zip(axes, ("train", "test")):
        get = "train_by_iteration" if split == "train" else "test_by_iteration"
        _lines(ax, its, [getattr(r, get)("restart") for r in results], _COLORS["restart"], "ReST^EM (restart)")
        if results[0].cont is not None:
            _lines(ax, its, [getattr(r, get)("continue") for r in results], _COLORS["continue"], "continue", ls="--")
        ax.axhline(np.mean([r.sft.greedy[split] for r in results]), color=_COLORS["SFT(human)"], ls=":",
                   label="SFT(human), equal steps")
        ax.set(xlabel="iteration (0 = base)", ylabel=f"greedy pass@1 ({split} problems)", title=f"{split} accuracy",
               xticks=its)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_pass_k(results) -> plt.Figure:
    """pass@k at T = 1 on the test problems: base, SFT(human), the last ReST^EM iterate (restart and
    continue) (the paper's Fig. 5 shape), and the gain over the base by k."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ks = sorted(results[0].last.pass_k)
    models = {"base": [r.base for r in results], "SFT(human)": [r.sft for r in results],
              "restart": [r.last for r in results]}
    if results[0].cont_last is not None:
        models["continue"] = [r.cont_last for r in results]
    for name, reps in models.items():
        vals = np.array([[rep.pass_k[k] for k in ks] for rep in reps])
        axes[0].plot(ks, vals.mean(0), "o-", color=_COLORS[name], label=name)
        if name != "base":
            gains = vals - np.array([[r.base.pass_k[k] for k in ks] for r in results])
            _lines(axes[1], ks, gains, _COLORS[name], name)
    axes[1].axhline(0, color="grey", lw=0.8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (samples at T = 1)")
    axes[0].set(ylabel="pass@k (test)", title="pass@k")
    axes[1].set(ylabel="pass@k minus the base's", title="gain over the base")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_e_step(results) -> plt.Figure:
    """Kept-set size and the fraction of training problems the E-step solves, by iteration."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    runs = [("restart", "restart")] + ([("continue", "cont")] if results[0].cont is not None else [])
    for label, attr in runs:
        its = np.arange(1, len(getattr(results[0], attr).iterations) + 1)
        for ax, key in zip(axes, ("kept", "solved_fraction")):
            _lines(ax, its, [getattr(r, attr).series(key) for r in results], _COLORS[label], label,
                   ls="-" if label == "restart" else "--")
    axes[0].set(xlabel="iteration", ylabel="kept samples", title="kept set (at most K per problem)")
    axes[1].set(xlabel="iteration", ylabel="fraction of problems", title="training problems the E-step solves")
    for ax in axes:
        ax.set_xticks(its)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_difficulty(results) -> plt.Figure:
    """Greedy test accuracy per difficulty bin (problems binned by the base model's solve rate at T = 1;
    the paper's Fig. 8 right), mean over seeds, with each bin's problem count."""
    names = [b[0] for b in DIFFICULTY_BINS]
    models = list(results[0].bins)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        vals = np.array([[r.bins[m][b][0] for b in names] for r in results], dtype=float)
        ax.bar(np.arange(len(names)) + (i - (len(models) - 1) / 2) * width, np.nanmean(vals, 0), width,
               color=_COLORS.get(m, "tab:blue"), label=m)
    counts = [int(np.mean([r.bins[models[0]][b][1] for r in results])) for b in names]
    ax.set_xticks(np.arange(len(names)), [f"{b}\n(n={c})" for b, c in zip(names, counts)])
    ax.set(ylabel="greedy test accuracy", title="by difficulty (base solve rate at T = 1)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_votes(results) -> plt.Figure:
    """Greedy vs majority vote vs uncertainty-routed vote for the last ReST^EM model, per seed."""
    kinds = ["greedy", "vote", "routed"]
    vals = np.array([[r.routed[k] for k in kinds] for r in results])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for row in vals:
        ax.plot(kinds, row, "o-", color="tab:blue", alpha=0.4, lw=0.8)
    ax.plot(kinds, vals.mean(0), "s-", color="tab:blue", lw=2, label="ReST^EM, mean")
    base = np.array([[r.base.greedy_sub, r.base.vote_acc] for r in results]).mean(0)
    ax.plot(kinds[:2], base, "s--", color="k", label="base, mean")
    ax.set(ylabel="test accuracy", title="answer by greedy decoding or by vote")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_size_sweep(sweeps: list[dict[int, float]], base_test: float) -> plt.Figure:
    """Test accuracy after one ReST^EM iteration against the problem-set size (the paper's Fig. 8 left)."""
    sizes = sorted(sweeps[0])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    _lines(ax, sizes, [[s[p] for p in sizes] for s in sweeps], "tab:blue", "one iteration")
    ax.axhline(base_test, color="k", ls=":", label="base")
    ax.set(xscale="log", xlabel="training problems P", ylabel="greedy test accuracy", title="problem-set size")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
