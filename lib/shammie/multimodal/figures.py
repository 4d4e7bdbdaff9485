"""Figures of notebook 09 (each takes the per-seed results of `family.run_seed`, as SeedResults)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .tasks import CHANCE, VOCAB, decode

__all__ = ["plot_family", "plot_composition", "plot_pipelines", "plot_distillation", "plot_quantization",
           "plot_routing", "plot_examples"]

_SIZES = ("nano", "pro", "ultra")
_COLORS = {"nano": "tab:blue", "pro": "tab:orange", "ultra": "tab:green", "nano-KD": "tab:purple",
           "ultra-deep": "tab:red"}


def _mean_sd(results, model: str, task: str) -> tuple[float, float]:
    v = np.array([r.acc[model][task] for r in results])
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def plot_family(results, tasks=("P", "Tadd", "Tcmp", "Xadd", "XaddCoT", "Xcmp", "Xadd held", "XaddCoT held")) -> plt.Figure:
    """Accuracy per task and size (bars: mean over seeds, dots: seeds), chance as a dashed line per task."""
    models = [m for m in (*_SIZES, "ultra-deep") if m in results[0].acc]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        xs = np.arange(len(tasks)) + (j - (len(models) - 1) / 2) * width
        means = [_mean_sd(results, m, t)[0] for t in tasks]
        ax.bar(xs, means, width, color=_COLORS[m], label=f"{m} ({results[0].params[m]:,} params)")
        for r in results:
            ax.plot(xs, [r.acc[m][t] for t in tasks], ".", color="k", ms=3)
    for i, t in enumerate(tasks):
        ax.plot([i - 0.45, i + 0.45], [CHANCE[t.split()[0]]] * 2, "k--", lw=1)
    ax.set_xticks(range(len(tasks)), [t.replace("XaddCoT", "Xadd digit-first") for t in tasks], fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1.05), title="the family on every task (dashed: chance)")
    ax.legend(frameon=False, fontsize=8, ncol=len(models))
    fig.tight_layout()
    return fig


def plot_composition(results) -> plt.Figure:
    """Cross-modal sum accuracy (direct and digit-first) against P x Tadd of the same model, y = x line."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for m in (*_SIZES, "ultra-deep"):
        if m not in results[0].acc:
            continue
        prod = [r.acc[m]["P"] * r.acc[m]["Tadd"] for r in results]
        ax.plot(prod, [r.acc[m]["Xadd"] for r in results], "o", mfc="none", color=_COLORS[m], label=f"{m} direct")
        ax.plot(prod, [r.acc[m]["XaddCoT"] for r in results], "s", color=_COLORS[m], label=f"{m} digit-first")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="y = x")
    ax.set(xlabel="perception x text arithmetic", ylabel="cross-modal sum accuracy", xlim=(0, 1), ylim=(0, 1),
           title="does cross-modal reasoning compose?")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_pipelines(results) -> plt.Figure:
    """Joint ultra against the perception specialist (perception) and the pipelines (cross-modal tasks)."""
    rows = [("P: joint ultra", lambda r: r.acc["ultra"]["P"]), ("P: specialist", lambda r: r.acc["specialist"]["P"])]
    if "specialist-steps" in results[0].acc:
        rows.append(("P: specialist (matched steps)", lambda r: r.acc["specialist-steps"]["P"]))
    rows += [("Xadd: joint direct", lambda r: r.acc["ultra"]["Xadd"]),
             ("Xadd: joint digit-first", lambda r: r.acc["ultra"]["XaddCoT"]),
             ("Xadd: specialist -> text", lambda r: r.pipelines["Xadd specialist->text"])]
    if "Xadd specialist(steps)->text" in results[0].pipelines:
        rows.append(("Xadd: specialist (steps) -> text", lambda r: r.pipelines["Xadd specialist(steps)->text"]))
    rows += [("Xcmp: joint", lambda r: r.acc["ultra"]["Xcmp"]),
             ("Xcmp: joint's self-pipeline", lambda r: r.pipelines["Xcmp self ultra"]),
             ("Xcmp: specialist -> text", lambda r: r.pipelines["Xcmp specialist->text"])]
    if "Xcmp specialist(steps)->text" in results[0].pipelines:
        rows.append(("Xcmp: specialist (steps) -> text", lambda r: r.pipelines["Xcmp specialist(steps)->text"]))
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.2))
    for i, (label, f) in enumerate(rows):
        vals = [f(r) for r in results]
        color = "tab:green" if "joint" in label else "tab:gray"
        ax.barh(i, np.mean(vals), color=color)
        ax.plot(vals, [i] * len(vals), "k.", ms=4)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy", xlim=(0, 1), title="native (green) against narrow models and pipelines")
    fig.tight_layout()
    return fig


def plot_distillation(results, tasks=("P", "Tadd", "Tcmp", "Xadd", "XaddCoT", "Xcmp")) -> plt.Figure:
    """Nano from scratch against Nano distilled from ultra, per task (mean and seeds), ultra for reference."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for j, m in enumerate(("nano", "nano-KD", "ultra")):
        xs = np.arange(len(tasks)) + (j - 1) * 0.27
        ax.bar(xs, [_mean_sd(results, m, t)[0] for t in tasks], 0.27, color=_COLORS[m],
               alpha=0.45 if m == "ultra" else 1, label=m if m != "ultra" else "ultra (teacher)")
        for r in results:
            ax.plot(xs, [r.acc[m][t] for t in tasks], "k.", ms=3)
    ax.set_xticks(range(len(tasks)), [t.replace("XaddCoT", "Xadd digit-first") for t in tasks], fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1.05), title="Nano: from scratch vs distilled (same steps, batches, init)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_quantization(results, task: str = "P") -> plt.Figure:
    """Accuracy change (points) after post-training quantization, per model and scheme (mean, seeds), and
    the memory of each scheme against float32."""
    models = list(results[0].quant)
    schemes = [s for s in results[0].quant[models[0]] if s != "fp32"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    width = 0.8 / len(schemes)
    for j, s in enumerate(schemes):
        xs = np.arange(len(models)) + (j - (len(schemes) - 1) / 2) * width
        deltas = np.array([[100 * (r.quant[m][s][task] - r.quant[m]["fp32"][task]) for m in models] for r in results])
        axes[0].bar(xs, deltas.mean(0), width, label=s)
        for d in deltas:
            axes[0].plot(xs, d, "k.", ms=3)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(range(len(models)), models)
    axes[0].set(ylabel=f"{task} accuracy change (points)", title="post-training quantization cost")
    axes[0].legend(frameon=False, fontsize=8)
    mem = results[0].memory
    for j, s in enumerate(["fp32", *schemes]):
        xs = np.arange(len(models)) + (j - len(schemes) / 2) * 0.2
        axes[1].bar(xs, [mem[m][s] / 1024 for m in models], 0.2, label=s)
    axes[1].set_xticks(range(len(models)), models)
    axes[1].set(ylabel="KiB", title="model memory")
    axes[1].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_routing(results) -> plt.Figure:
    """Routed accuracy against the consensus threshold on validation (thin: seeds), the chosen thresholds,
    and the direct and vote-only levels."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    for ax, m in zip(axes, _SIZES):
        for r in results:
            curve = np.asarray(r.routing[m]["val_curve"])
            grid = np.linspace(0, 1, len(curve))
            ax.plot(grid, curve, color=_COLORS[m], lw=1, alpha=0.8)
            ax.axvline(r.routing[m]["threshold"], color=_COLORS[m], ls=":", lw=1)
            ax.plot([1.04], [r.routing[m]["val_direct"]], "k<", ms=4)
        ax.set(xlabel="consensus threshold", title=f"{m} (dotted: chosen; < direct)")
    axes[0].set_ylabel("validation accuracy (Xadd)")
    fig.suptitle("uncertainty routing: vote if consensus >= threshold, else answer directly", fontsize=10)
    fig.tight_layout()
    return fig


def plot_examples(models: dict, batches: dict, pool, n: int = 2) -> plt.Figure:
    """A few interleaved questions: the signal(s), the sequence, and each family member's answer."""
    from .experiments import cot_predict, predict

    rows = []
    for task in ("P", "Xadd", "XaddCoT", "Xcmp"):
        for i in range(n):
            rows.append((task, i))
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.05 * len(rows)))
    for ax, (task, i) in zip(axes, rows):
        b = batches[task].select([i])
        for which, idx in ((1, b.i1[0]), (2, b.i2[0])):
            if idx >= 0:
                ax.plot(np.arange(40) + (45 if which == 2 else 0), pool.x[idx], color="k" if which == 1 else "tab:gray")
        answers = []
        for name in ("nano", "pro", "ultra"):
            if task == "XaddCoT":
                d, a = cot_predict(models[name], b)
                answers.append(f"{name}: {VOCAB[int(d[0])]} -> {VOCAB[int(a[0])]}")
            else:
                answers.append(f"{name}: {VOCAB[int(predict(models[name], b)[0])]}")
        ax.set_title(f"{task}: {decode(b, 0)}   |   " + ", ".join(answers), fontsize=8, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
