"""Character LMs of the standard library's source: per-position NLL with Gemini 1.5's power-law fit
(sec. 5.2.1.1, Fig. 7: the cumulative average NLL against the token position, L(x) = a x^b + c), and a dense
against a sparse mixture-of-experts LM at equal active parameters per token and equal steps.

Everything trains through `shammie.lm.train_lm` on `shammie.transformer.TinyTransformer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import ShammieError
from ..lm import (
    CharCorpus,
    fit_power_law,
    next_token_loss,
    per_position_nll,
    random_windows,
    stdlib_corpus,
    train_lm,
)
from ..transformer import TinyTransformer
from .config import LongContextConfig

__all__ = [
    "load_corpus", "val_windows", "lm_kwargs", "build_lm", "lm_schedule", "LMRun", "train_lm_pair",
    "cumulative_nll", "power_law", "r_squared", "nll_drop", "active_parameter_gap", "router_parameters",
]


def load_corpus(cfg: LongContextConfig) -> CharCorpus:
    """The standard-library character corpus cut at `cfg.corpus_chars` (90/10 split by position)."""
    return stdlib_corpus(cfg.corpus_chars, val_fraction=0.1)


def val_windows(corpus: CharCorpus, cfg: LongContextConfig, seed: int = 12345) -> torch.Tensor:
    """Fixed validation windows (nll_windows, lm_context + 1), the same for every model."""
    return random_windows(corpus.val, cfg.lm_context + 1, cfg.nll_windows, torch.Generator().manual_seed(seed))


def lm_kwargs(cfg: LongContextConfig, vocab_size: int, moe: bool) -> dict:
    """A small all-global char LM (RoPE, pre-LayerNorm, ReLU, no biases). Dense: a feed-forward of width
    `lm_ff`; MoE: `n_experts` experts of width lm_ff / top_k, top-`expert_top_k` routing, so both read the same
    number of feed-forward parameters per token (the MoE adds only its router; that needs no biases: with
    them a token would read top_k expert biases where the dense layer has one)."""
    return dict(vocab_size=vocab_size, d_model=cfg.lm_d, n_heads=cfg.lm_heads, n_layers=cfg.lm_layers,
                d_ff=cfg.lm_ff, position="rope", max_positions=cfg.lm_context, bias=False,
                n_experts=cfg.n_experts if moe else 0, expert_top_k=cfg.expert_top_k if moe else 1)


def build_lm(cfg: LongContextConfig, vocab_size: int, moe: bool, seed: int) -> TinyTransformer:
    """A fresh char LM; torch is seeded with `seed` first, so the seed fixes the weights (the dense and MoE
    models of a seed differ in their feed-forward layers, so their other weights differ too)."""
    torch.manual_seed(seed)
    return TinyTransformer(**lm_kwargs(cfg, vocab_size, moe))


def lm_schedule(corpus: CharCorpus, cfg: LongContextConfig, seed: int):
    """`next_batch(step)`: batch `step` of `seed` is fixed, so the dense and MoE models read the same windows."""
    def next_batch(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + step)
        return random_windows(corpus.train, cfg.lm_context + 1, cfg.lm_batch, g)
    return next_batch


@dataclass
class LMRun:
    """A trained char LM: validation loss, per-position NLL on the validation windows, CPU seconds."""

    model: TinyTransformer
    history: dict = field(repr=False)
    val: float
    nll: np.ndarray = field(repr=False)
    cpu_s: float


def _train_one(cfg: LongContextConfig, corpus: CharCorpus, moe: bool, seed: int, windows: torch.Tensor) -> LMRun:
    model = build_lm(cfg, corpus.vocab_size, moe, seed)
    t0 = time.process_time()
    hist = train_lm(model, lm_schedule(corpus, cfg, seed), steps=cfg.lm_steps, lr=cfg.lm_lr, warmup=cfg.warmup,
                    log_every=max(1, cfg.lm_steps // 10), desc=f"{'MoE' if moe else 'dense'} LM seed {seed}")
    nll = per_position_nll(model, windows)
    with torch.no_grad():
        val = float(next_token_loss(model, windows))
    return LMRun(model, hist, val, nll, time.process_time() - t0)


def train_lm_pair(cfg: LongContextConfig, corpus: CharCorpus, seed: int, windows: torch.Tensor) -> dict[str, LMRun]:
    """The dense and the MoE LM of one seed: same batches, same steps, equal active parameters per token."""
    return {"dense": _train_one(cfg, corpus, False, seed, windows), "MoE": _train_one(cfg, corpus, True, seed, windows)}


def cumulative_nll(nll) -> np.ndarray:
    """Cumulative average of a per-position NLL curve: entry t is the mean NLL over positions 0..t (Fig. 7)."""
    nll = np.asarray(nll, dtype=float)
    return np.cumsum(nll) / np.arange(1, nll.size + 1)


def r_squared(y, fitted) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot."""
    y, fitted = np.asarray(y, dtype=float), np.asarray(fitted, dtype=float)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0:
        raise ShammieError("r_squared is undefined for a constant curve")
    return 1.0 - float(((y - fitted) ** 2).sum()) / ss_tot


def power_law(nll, cumulative: bool = True) -> dict[str, float]:
    """Fit L(x) = a x^b + c (`shammie.lm.fit_power_law`) to the cumulative average NLL (Gemini's procedure) or
    to the raw per-position NLL, with x = 1, 2, ... the number of tokens read; adds "r2"."""
    y = cumulative_nll(nll) if cumulative else np.asarray(nll, dtype=float)
    x = np.arange(1, y.size + 1, dtype=float)
    fit = fit_power_law(x, y)
    fit["r2"] = r_squared(y, fit["a"] * x ** fit["b"] + fit["c"])
    return fit


def nll_drop(nll) -> float:
    """Mean NLL over the second quarter of the positions minus the mean over the second half: > 0 when the
    loss keeps falling after the first quarter of the context (not only at the first few tokens)."""
    nll = np.asarray(nll, dtype=float)
    t = nll.size
    if t < 8:
        raise ShammieError(f"nll_drop needs at least 8 positions, got {t}")
    return float(nll[t // 4: t // 2].mean() - nll[t // 2:].mean())


def router_parameters(model: TinyTransformer) -> int:
    """Parameters of the MoE routers (d_model x n_experts per MoE block)."""
    return sum(b.moe.router.weight.numel() for b in model.blocks if b.moe is not None)


def active_parameter_gap(dense: TinyTransformer, moe: TinyTransformer) -> int:
    """Active parameters per token of the MoE model minus the dense one's, routers left out (0 when the MoE
    reads exactly as many parameters per token as the dense model)."""
    return moe.parameter_counts()["active"] - router_parameters(moe) - dense.parameter_counts()["active"]
