"""Figures and tables of notebook 04 (accuracy by length, heat maps, attention, failure kinds)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from ..core import ShammieError
from ..transformer import TinyTransformer
from .experiments import summarize_runs
from .positions import Tokenizer, encode_example, position_ids
from .tasks import EOS, FAILURE_KINDS, Example


def plot_accuracy_by_length(results: dict[str, Sequence[dict]], train_max: int, ax=None, metric: str = "exact",
                            title: str = "", chance: float | None = None):
    """Accuracy against test length per variant: mean over seeds (line), each seed (faint), training
    lengths shaded."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.axvspan(0.5, train_max + 0.5, color="0.9", zorder=0, label="training lengths")
    markers = "osD^vPX*"
    for i, (name, runs) in enumerate(results.items()):
        s = summarize_runs(runs, metric)
        xs = list(s)
        for r in runs if len(runs) > 1 else []:
            ax.plot(xs, [getattr(r["eval"], metric)[n] for n in xs], color=f"C{i}", alpha=0.3, lw=1)
        ax.plot(xs, [s[n]["mean"] for n in xs], marker=markers[i % len(markers)], color=f"C{i}", lw=2, label=name)
    if chance is not None:
        ax.axhline(chance, color="0.4", ls=":", lw=1, label="chance")
    ax.set_xlabel("test length")
    ax.set_ylabel("exact-match accuracy" if metric == "exact" else "answer accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(0.5, None)
    if title:
        ax.set_title(title)
    return ax


def plot_length_heatmap(results: dict[str, Sequence[dict]], train_max: int, ax=None, metric: str = "exact",
                        title: str = ""):
    """Heatmap of variant (rows) by test length (columns), mean accuracy annotated, a line at the
    training maximum."""
    import matplotlib.pyplot as plt

    names = list(results)
    lengths = results[names[0]][0]["eval"].lengths
    grid = np.array([[summarize_runs(results[v], metric)[n]["mean"] for n in lengths] for v in names])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.8 * len(lengths), 0.6 + 0.45 * len(names)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if grid[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    inside = [j for j, n in enumerate(lengths) if n <= train_max]
    if inside and len(inside) < len(lengths):
        ax.axvline(max(inside) + 0.5, color="white", lw=2, ls="--")
    ax.set_xlabel("test length")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return ax


@torch.no_grad()
def attention_maps(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str,
                   max_positions: int | None = None) -> tuple[list[torch.Tensor], list[str]]:
    """Per-layer attention weights (H, T, T) of `model` reading `ex` (teacher forced), and the tokens."""
    ids, align, _ = encode_example(ex, tokenizer, scheme)
    pos = position_ids(scheme, align, np.random.default_rng(0), max_positions or model.spec.max_positions, train=False)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    _, maps = model(torch.tensor(ids[None], device=device), torch.tensor(pos[None], device=device), return_attention=True)
    model.train(was)
    return [m[0].cpu() for m in maps], tokenizer.decode(ids)


def plot_attention(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str, layer: int = -1,
                   ax=None, title: str = "", max_positions: int | None = None, targets_only: bool = True):
    """The attention of one layer (mean over heads) on `ex`: rows are queries (by default only the
    tokens that predict the target: ``=`` onwards), columns keys; square-root colour scale."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    maps, toks = attention_maps(model, ex, tokenizer, scheme, max_positions)
    w = maps[layer].mean(0).numpy()
    first = len(toks) - len(ex.target) - 1 if targets_only else 0
    w = w[first:-1] if targets_only else w
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(w, cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=max(float(w.max()), 1e-6)), aspect="auto")
    ax.grid(False)
    labels = [t.replace(EOS, "$") for t in toks]
    step = max(1, math.ceil(len(toks) / 45))
    ax.set_xticks(range(0, len(toks), step), labels[::step], fontsize=6)
    rows = list(range(first, first + w.shape[0]))
    ax.set_yticks(range(0, len(rows), step), [labels[r] for r in rows][::step], fontsize=6)
    ax.set_xlabel("key")
    ax.set_ylabel("query (predicts the next token)")
    if title:
        ax.set_title(title)
    return ax


def results_table(results: dict[str, Sequence[dict]], metric: str = "exact"):
    """A DataFrame: one row per variant, one column per test length, the mean over seeds of `metric`."""
    import pandas as pd

    rows = {name: {n: s["mean"] for n, s in summarize_runs(runs, metric).items()} for name, runs in results.items()}
    df = pd.DataFrame(rows).T
    df.columns.name = "test length"
    return df


def failure_counts(results: dict[str, Sequence[dict]], min_length: int = 1):
    """A DataFrame of failure-kind counts per variant, summed over seeds and test lengths >= `min_length`."""
    import pandas as pd

    rows = {}
    for name, runs in results.items():
        c = Counter()
        for r in runs:
            for n, kinds in r["eval"].kinds.items():
                if n >= min_length:
                    c.update(kinds)
        rows[name] = {k: int(c.get(k, 0)) for k in FAILURE_KINDS}
    return pd.DataFrame(rows).T[list(FAILURE_KINDS)]


def failure_examples(results: dict[str, Sequence[dict]], per_kind: int = 1):
    """A DataFrame with up to `per_kind` examples of each failure kind (first seed of each variant first)."""
    import pandas as pd

    rows, seen = [], Counter()
    for name, runs in results.items():
        for r in runs:
            for s in r["eval"].samples:
                if seen[s["kind"]] < per_kind:
                    seen[s["kind"]] += 1
                    step = s["first_wrong_step"]
                    rows.append({"variant": name, "seed": r["seed"], **s, "first_wrong_step": "-" if step is None else step})
    order = {k: i for i, k in enumerate(FAILURE_KINDS)}
    rows.sort(key=lambda row: order[row["kind"]])
    return pd.DataFrame(rows, columns=["kind", "variant", "seed", "length", "first_wrong_step", "prompt", "reference",
                                       "generated"])


def plot_failure_kinds(results: dict[str, Sequence[dict]], min_length: int = 1, ax=None, title: str = ""):
    """Stacked bars: the share of each failure kind per variant (test lengths >= `min_length`)."""
    import matplotlib.pyplot as plt

    counts = failure_counts(results, min_length)
    share = counts.div(counts.sum(axis=1), axis=0)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(share)))
    left = np.zeros(len(share))
    colors = {"correct": "tab:green", "wrong_length": "tab:orange", "wrong_step": "tab:red", "wrong_answer": "tab:purple"}
    for kind in FAILURE_KINDS:
        ax.barh(range(len(share)), share[kind], left=left, color=colors[kind], label=kind.replace("_", " "))
        left += share[kind].to_numpy()
    ax.set_yticks(range(len(share)), share.index)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of test instances")
    ax.legend(frameon=False, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8)
    if title:
        ax.set_title(title, pad=28)
    return ax


def plot_loss_curves(results: dict[str, Sequence[dict]], ax=None, title: str = ""):
    """Training loss (log scale) against step, one line per variant (its first seed)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, runs) in enumerate(results.items()):
        h = runs[0]["history"]
        ax.plot(h["step"], h["loss"], color=f"C{i}", lw=1.5, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (targets only)")
    if title:
        ax.set_title(title)
    return ax


def plot_relative_length(results: dict[str, Sequence[dict]], train_max: int, reference=None, ax=None,
                         metric: str = "answer", title: str = ""):
    """Accuracy against test length / maximum training length: our variants (mean over seeds, solid)
    beside a published table `reference` (dashed; a DataFrame with columns position_encoding,
    train_max, test_length, accuracy)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (name, runs) in enumerate(results.items()):
        s = summarize_runs(runs, metric)
        ax.plot([n / train_max for n in s], [v["mean"] for v in s.values()], marker="o", color=f"C{i}", lw=2,
                label=f"ours: {name}")
    if reference is not None:
        for j, (pe, df) in enumerate(reference.groupby("position_encoding", sort=False)):
            ax.plot(df["test_length"] / df["train_max"], df["accuracy"], ls="--", marker="s", ms=4,
                    color=f"C{len(results) + j}", label=f"published: {pe}")
    ax.axvline(1.0, color="0.5", lw=1)
    ax.axhline(0.5, color="0.4", ls=":", lw=1)
    ax.set_xlabel("test length / longest training length")
    ax.set_ylabel("answer accuracy" if metric == "answer" else "exact-match accuracy")
    ax.set_ylim(-0.03, 1.03)
    if title:
        ax.set_title(title)
    return ax


def lookup_attention(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str, layer: int = -1,
                     max_positions: int | None = None) -> dict[str, float]:
    """How much attention the target-writing queries of `ex` put on the input item they need next.

    For every query from ``=`` up to the last scratchpad step or answer digit, the weight (mean over
    heads of layer `layer`) on the prompt tokens whose coupled index is one above the query's (parity:
    the next bit; reversed addition: the next digit of both operands), and on all other prompt tokens.
    Returns the means over queries: {"needed": ..., "other_input": ...}.
    """
    maps, _ = attention_maps(model, ex, tokenizer, scheme, max_positions)
    ids, align, p = encode_example(ex, tokenizer, scheme)
    w = maps[layer].mean(0).numpy()
    needed, other = [], []
    for q in range(p - 1, len(ids) - 1):
        want = [k for k in range(p) if align[k] == align[q] + 1 and k < p - 1]
        if not want:
            continue
        row = w[q]
        needed.append(float(row[want].sum()))
        other.append(float(row[: p].sum() - row[want].sum()))
    if not needed:
        raise ShammieError("no query of this example has an input item one index ahead")
    return {"needed": float(np.mean(needed)), "other_input": float(np.mean(other))}
