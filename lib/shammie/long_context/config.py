"""The knobs of notebook 08 per profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import ConfigError, ProfileConfig

__all__ = ["LongContextConfig"]


@dataclass(frozen=True)
class LongContextConfig(ProfileConfig):
    """Knobs of notebook 08. Defaults are the quick profile.

    Needle models: per seed, one small decoder per layer pattern (GG global-global, LG local-global, LL
    local-local with a sliding window of `window` keys), trained on single needles (or 1..`train_needles`) in
    haystacks of `train_min_length`..`train_max_length` tokens, then scored on the recall grid
    `grid_lengths` x `grid_depths` with `grid_probes` probes per cell (lengths past training included).
    Character LMs: per seed, a dense and a mixture-of-experts LM of the standard library's source at equal
    active parameters per token and equal steps (same initial embedding/attention seed, same batches); the
    dense one's per-position NLL gives the power-law fit.
    """

    seeds: int = 3
    # needle models
    patterns: tuple[str, ...] = ("GG", "LG", "LL")
    global_seeds: int = 1  # how many of the seeds also train the patterns without a local layer (GG); claims use LG, LL
    needle_d: int = 32
    needle_heads: int = 2
    needle_layers: int = 2
    window: int = 16  # keys a local layer sees, itself included; receptive field of the LL stack = layers * (window - 1)
    needle_steps: int = 500
    batch_size: int = 48
    lr: float = 5e-3
    warmup: float = 0.05
    train_min_length: int = 8
    train_max_length: int = 72
    train_needles: int = 1  # needles per training haystack drawn from 1..train_needles
    filler: str = "random"  # random letters, or "text": windows of the standard-library corpus
    grid_lengths: tuple[int, ...] = (32, 64, 128, 256)
    grid_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    grid_probes: int = 64
    needle_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    multi_length: int = 64
    multi_probes: int = 64
    # character LMs (per-position NLL, dense vs mixture of experts)
    corpus_chars: int = 300_000
    lm_context: int = 64
    lm_d: int = 32
    lm_layers: int = 2
    lm_heads: int = 2
    lm_ff: int = 64  # feed-forward width of the dense LM = active width of the MoE (experts of lm_ff / top_k)
    n_experts: int = 4
    expert_top_k: int = 1
    lm_steps: int = 250
    lm_batch: int = 32
    lm_lr: float = 1e-2
    nll_windows: int = 1024
    # full-profile extras
    window_sweep: tuple[int, ...] = ()  # LG/LL windows at inference (the trained one is added)
    mrcr: bool = False  # train and score an MRCR-lite model ("which came first")

    PROFILES: ClassVar[dict] = {
        "smoke": {"seeds": 2, "needle_d": 16, "needle_steps": 12, "batch_size": 8, "train_max_length": 32,
                  "grid_lengths": (16, 48), "grid_depths": (0.0, 1.0), "grid_probes": 8, "needle_counts": (1, 2, 4),
                  "multi_length": 32, "multi_probes": 8, "window": 4, "corpus_chars": 20_000, "lm_context": 16,
                  "lm_d": 16, "lm_ff": 32, "lm_steps": 8, "lm_batch": 4, "nll_windows": 16},
        "quick": {},
        "full": {"seeds": 3, "global_seeds": 3, "needle_d": 64, "needle_heads": 4, "needle_layers": 3, "needle_steps": 1500, "train_max_length": 128,
                 "train_needles": 4, "grid_lengths": (32, 64, 128, 256, 512), "grid_probes": 128, "multi_length": 128,
                 "multi_probes": 128, "needle_counts": (1, 2, 4, 8, 16, 24), "corpus_chars": 1_200_000,
                 "lm_context": 256, "lm_d": 64, "lm_ff": 256, "n_experts": 8, "lm_steps": 1500, "lm_batch": 32,
                 "nll_windows": 2048, "window_sweep": (4, 8, 16, 32, 64), "mrcr": True, "filler": "text"},
    }

    def validate(self) -> None:
        if not self.patterns or any(not p or set(p) - {"G", "L"} for p in self.patterns):
            raise ConfigError(f"patterns must be strings of G (global) and L (local) layers, got {self.patterns}")
        if len(set(self.patterns)) != len(self.patterns):
            raise ConfigError(f"patterns must be distinct, got {self.patterns}")
        for name, heads in (("needle_d", "needle_heads"), ("lm_d", "lm_heads")):
            if getattr(self, name) % (2 * getattr(self, heads)):
                raise ConfigError(f"{name}={getattr(self, name)} must be a multiple of 2 * {heads} "
                                  f"({2 * getattr(self, heads)}): RoPE needs an even head dimension")
        if not 0 <= self.global_seeds <= self.seeds:
            raise ConfigError(f"global_seeds must be in 0..seeds, got {self.global_seeds}")
        if not {"LG", "LL"} <= set(self.patterns):
            raise ConfigError(f"patterns must include LG and LL (the claims are judged on them), got {self.patterns}")
        if not 2 <= self.window:
            raise ConfigError(f"window must be >= 2 (a local layer that sees only itself reads nothing), got {self.window}")
        if not (4 <= self.train_min_length <= self.train_max_length and 4 * self.train_needles <= self.train_max_length):
            raise ConfigError("need 4 <= train_min_length <= train_max_length and 4 * train_needles <= train_max_length "
                              "(a needle is 4 tokens; a batch of k needles uses lengths >= 4 k), "
                              f"got {self.train_needles}, {self.train_min_length}, {self.train_max_length}")
        if self.filler not in ("random", "text"):
            raise ConfigError(f"filler must be 'random' or 'text', got {self.filler!r}")
        if not self.grid_lengths or min(self.grid_lengths) < 4 or list(self.grid_lengths) != sorted(set(self.grid_lengths)):
            raise ConfigError(f"grid_lengths must be increasing and >= 4 (one needle), got {self.grid_lengths}")
        if not self.grid_depths or any(not 0.0 <= d <= 1.0 for d in self.grid_depths):
            raise ConfigError(f"grid_depths must lie in [0, 1] (0 = the beginning, 1 = just before the query), "
                              f"got {self.grid_depths}")
        if min(self.grid_lengths) > self.train_max_length:
            raise ConfigError("at least one grid length must lie within the trained lengths (the 'inside' cells)")
        if not self.needle_counts or min(self.needle_counts) != 1 or 4 * max(self.needle_counts) > self.multi_length:
            raise ConfigError(f"needle_counts must start at 1 and fit the haystack (4 * k <= multi_length), "
                              f"got {self.needle_counts} with multi_length={self.multi_length}")
        if max(self.needle_counts) > 26:
            raise ConfigError(f"at most 26 needles (26 distinct keys), got {max(self.needle_counts)}")
        if self.corpus_chars < 20 * self.lm_context or self.corpus_chars > 5_000_000:
            raise ConfigError(f"corpus_chars must be in 20 * lm_context .. 5,000,000, got {self.corpus_chars}")
        if self.n_experts < 2 or not 1 <= self.expert_top_k < self.n_experts or self.lm_ff % self.expert_top_k:
            raise ConfigError("need n_experts >= 2, 1 <= expert_top_k < n_experts and lm_ff divisible by expert_top_k, "
                              f"got {self.n_experts}, {self.expert_top_k}, {self.lm_ff}")
        if self.lm_context < 8:
            raise ConfigError(f"lm_context must be >= 8 (the NLL claims compare quarters of it), got {self.lm_context}")
        if self.lr <= 0 or self.lm_lr <= 0 or not 0 <= self.warmup < 1:
            raise ConfigError("learning rates must be positive and warmup a fraction in [0, 1)")
        if any(w < 1 for w in self.window_sweep):
            raise ConfigError(f"window_sweep windows must be >= 1, got {self.window_sweep}")
