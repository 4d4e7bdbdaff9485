"""Needle models and their recall: training on haystacks, the recall grid over length x depth, recall against
the number of needles, the key-ablation probe (is the key read at all?), MRCR-lite and an inference-time
window sweep. Models are the shared `shammie.transformer.TinyTransformer`, trained by `shammie.lm.train_lm`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..core import ShammieError
from ..lm import generate, train_lm
from ..transformer import TinyTransformer
from .config import LongContextConfig
from .haystack import (
    NeedleVocab,
    Probes,
    answer_distance,
    make_mrcr_probes,
    make_probes,
    needle_starts,
    receptive_field,
    training_batch,
)

__all__ = [
    "PATTERNS", "Trained", "needle_kwargs", "build_needle_model", "needle_schedule", "mrcr_schedule", "train_needle_model",
    "answer_hits", "recall", "recall_grid", "reachable_grid", "multi_needle_recall", "key_ablation",
    "mrcr_recall", "chance_recall", "window_edit", "window_sweep",
]

PATTERNS = {"GG": "global-global", "LG": "local-global", "LL": "local-local"}
METHODS = ("forced", "cached", "uncached")


@dataclass
class Trained:
    """A trained model, its training history and its CPU seconds (user + sys of this process)."""

    model: TinyTransformer
    history: dict = field(repr=False)
    cpu_s: float
    steps: int

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.cpu_s / self.steps


def needle_kwargs(cfg: LongContextConfig, vocab: NeedleVocab, pattern: str) -> dict:
    """TinyTransformer options of a needle model: `cfg.needle_layers` layers cycling `pattern` ('G' global,
    'L' local with `cfg.window` keys), RoPE (relative: any length can be evaluated), pre-LayerNorm, ReLU."""
    if not pattern or any(c not in "GL" for c in pattern):
        raise ShammieError(f"pattern must be a string of G (global) and L (local) layers, got {pattern!r}")
    d = cfg.needle_d
    return dict(vocab_size=vocab.size, d_model=d, n_heads=cfg.needle_heads, n_layers=cfg.needle_layers, d_ff=2 * d,
                position="rope", max_positions=max(cfg.grid_lengths + (cfg.train_max_length,)) + 8,
                layer_pattern=pattern, sliding_window=cfg.window if "L" in pattern else None)


def build_needle_model(cfg: LongContextConfig, vocab: NeedleVocab, pattern: str, seed: int) -> TinyTransformer:
    """A fresh needle model; torch is seeded with `seed` first, so the seed fixes the weights."""
    torch.manual_seed(seed)
    return TinyTransformer(**needle_kwargs(cfg, vocab, pattern))


def needle_schedule(cfg: LongContextConfig, vocab: NeedleVocab, seed: int, text: torch.Tensor | None = None):
    """`next_batch(step)` for train_lm: batch `step` of `seed` is fixed whatever was drawn before. Each batch has
    one haystack length in [train_min_length, train_max_length] and a needle count in [1, train_needles]
    (the same for the whole batch), depths and keys at random; loss on the two answer digits only."""
    def next_batch(step: int):
        rng = np.random.default_rng([seed, step])
        k = int(rng.integers(1, cfg.train_needles + 1))
        lo = max(cfg.train_min_length, 4 * k)
        length = int(rng.integers(lo, cfg.train_max_length + 1))
        return training_batch(make_probes(vocab, length, None, k, cfg.batch_size, rng, text))
    return next_batch


def mrcr_schedule(cfg: LongContextConfig, vocab: NeedleVocab, seed: int, text: torch.Tensor | None = None):
    """`next_batch(step)` of MRCR-lite probes (two same-key needles, "first" or "second" asked)."""
    def next_batch(step: int):
        rng = np.random.default_rng([seed, step, 9])
        length = int(rng.integers(max(cfg.train_min_length, 8), cfg.train_max_length + 1))
        return training_batch(make_mrcr_probes(vocab, length, cfg.batch_size, rng, text))
    return next_batch


def train_needle_model(cfg: LongContextConfig, vocab: NeedleVocab, pattern: str, seed: int,
                       text: torch.Tensor | None = None, steps: int | None = None, desc: str | None = None,
                       task: str = "needle") -> Trained:
    """Build (weights from `seed`) and train a needle model on its own batch schedule (also from `seed`);
    `task="mrcr"` trains on MRCR-lite probes instead."""
    if task not in ("needle", "mrcr"):
        raise ShammieError(f"task must be 'needle' or 'mrcr', got {task!r}")
    model = build_needle_model(cfg, vocab, pattern, seed)
    steps = steps or cfg.needle_steps
    schedule = needle_schedule if task == "needle" else mrcr_schedule
    t0 = time.process_time()
    hist = train_lm(model, schedule(cfg, vocab, 7919 * (seed + 1), text), steps=steps, lr=cfg.lr,
                    warmup=cfg.warmup, log_every=max(1, steps // 10), desc=desc or f"{pattern} seed {seed}")
    return Trained(model, hist, time.process_time() - t0, steps)


@torch.no_grad()
def answer_hits(model: TinyTransformer, probes: Probes, method: str = "forced") -> torch.Tensor:
    """Whether the model's greedy answer equals both digits, per probe (bool (B,)).

    "forced": one forward pass over prompt + first digit, the argmax at the last two positions; "cached" /
    "uncached": `shammie.lm.generate` with or without the KV cache. All three give the same hits: when the
    first greedy digit is right, teacher forcing feeds exactly what greedy decoding would; when it is
    wrong the probe is a miss either way."""
    if method not in METHODS:
        raise ShammieError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    was = model.training
    model.eval()
    try:
        if method == "forced":
            pred = model(probes.sequence()[:, :-1])[:, -2:].argmax(-1)
        else:
            pred = generate(model, probes.prompt, 2, use_cache=method == "cached").tokens
    finally:
        model.train(was)
    return (pred == probes.answer).all(1)


def recall(model: TinyTransformer, probes: Probes, method: str = "forced") -> float:
    """Exact-match recall (both digits) over a batch of probes."""
    return float(answer_hits(model, probes, method).float().mean())


def _cell_seed(seed: int, length: int, depth: float, extra: int = 0) -> list[int]:
    return [seed, length, int(round(depth * 1000)), extra]


def recall_grid(model: TinyTransformer, vocab: NeedleVocab, lengths, depths, n_probes: int, seed: int = 0,
                method: str = "forced", text: torch.Tensor | None = None) -> pd.DataFrame:
    """Single-needle recall per cell: a DataFrame indexed by depth (rows, 0 = beginning) with one column per
    context length, the Gemini figure's layout. The probes of a cell depend only on (seed, length, depth),
    so every model is scored on the same probes."""
    out = pd.DataFrame(index=pd.Index(list(depths), name="depth"), columns=pd.Index(list(lengths), name="length"),
                       dtype=float)
    for length in lengths:
        for d in depths:
            p = make_probes(vocab, length, d, 1, n_probes, np.random.default_rng(_cell_seed(seed, length, d)), text)
            out.loc[d, length] = recall(model, p, method)
    return out


def reachable_grid(lengths, depths, n_local_layers: int, window: int) -> pd.DataFrame:
    """True where a local-only stack can read the single needle of the cell (distance <= L (W - 1))."""
    rf = receptive_field(n_local_layers, window)
    return pd.DataFrame({length: [bool(answer_distance(length, needle_starts(length, d)[0, 0]) <= rf) for d in depths]
                         for length in lengths}, index=pd.Index(list(depths), name="depth"))


def multi_needle_recall(model: TinyTransformer, vocab: NeedleVocab, length: int, counts, n_probes: int,
                        seed: int = 0, text: torch.Tensor | None = None) -> dict[int, float]:
    """Recall of the queried needle when the haystack of `length` tokens holds k needles of distinct keys,
    for each k in `counts` (a model that ignores the key scores about 1/k)."""
    return {int(k): recall(model, make_probes(vocab, length, None, int(k), n_probes,
                                              np.random.default_rng([seed, length, int(k), 1]), text))
            for k in counts}


@torch.no_grad()
def key_ablation(model: TinyTransformer, vocab: NeedleVocab, lengths, n_probes: int, seed: int = 0,
                 text: torch.Tensor | None = None) -> dict[str, float]:
    """Single-needle probes whose query asks for a key that is *not* in the haystack.

    Returns {"recall": recall on the intact probes, "ablated": how often the model still answers the needle's
    value when asked for an absent key}. A model that reads the key has nothing to answer (ablated near
    chance); a model that copies "the digits after the needle marker" answers as before (ablated near recall).
    Depths at random; lengths cycled over `lengths`."""
    if vocab.n_keys < 2:
        raise ShammieError("key ablation needs at least two keys")
    intact, ablated = [], []
    for length in lengths:
        rng = np.random.default_rng([seed, int(length), 2])
        p = make_probes(vocab, int(length), None, 1, n_probes, rng, text)
        intact.append(answer_hits(model, p).float())
        shift = torch.from_numpy(rng.integers(1, vocab.n_keys, size=n_probes))
        other = (p.keys[:, 0] + shift) % vocab.n_keys  # never the needle's key
        q = Probes(p.prompt.clone(), p.answer, p.starts, p.keys, p.values, p.target)
        q.prompt[:, -1] = other + vocab.key0
        ablated.append(answer_hits(model, q).float())
    return {"recall": float(torch.cat(intact).mean()), "ablated": float(torch.cat(ablated).mean())}


def mrcr_recall(model: TinyTransformer, vocab: NeedleVocab, lengths, n_probes: int, seed: int = 0,
                text: torch.Tensor | None = None) -> dict[int, float]:
    """MRCR-lite recall (first / second of two same-key needles) per context length."""
    return {int(length): recall(model, make_mrcr_probes(vocab, int(length), n_probes,
                                                        np.random.default_rng([seed, int(length), 3]), text))
            for length in lengths}


def chance_recall(n_probes: int = 100_000, seed: int = 0) -> float:
    """Recall of a model that emits two uniform random digits, by simulation (expected 1/100)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, size=(n_probes, 2))
    guess = rng.integers(0, 10, size=(n_probes, 2))
    return float((truth == guess).all(1).mean())


@contextlib.contextmanager
def window_edit(model: TinyTransformer, window: int | None):
    """Temporarily give the local layers another window (None: make them global), restored afterwards."""
    spec = model.spec
    try:
        if window is None:
            model.reconfigure(layer_pattern="G", sliding_window=None)
        else:
            model.reconfigure(sliding_window=window)
        yield model
    finally:
        model.spec = spec


def window_sweep(model: TinyTransformer, vocab: NeedleVocab, windows, lengths, depths, n_probes: int, seed: int = 0,
                 ) -> dict:
    """Mean single-needle recall over the grid with the local layers' window changed at inference only
    ("global": every layer global)."""
    if "L" not in model.spec.layer_pattern:
        raise ShammieError("window_sweep needs a model with local layers")
    out = {}
    for w in list(windows) + [None]:
        with window_edit(model, w):
            out["global" if w is None else int(w)] = float(
                recall_grid(model, vocab, lengths, depths, n_probes, seed).to_numpy().mean())
    return out
