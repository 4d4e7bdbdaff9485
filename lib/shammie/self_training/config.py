"""The knobs of notebook 06 per profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import ConfigError, ProfileConfig

__all__ = ["SelfTrainingConfig"]


@dataclass(frozen=True)
class SelfTrainingConfig(ProfileConfig):
    """Knobs of notebook 06. Defaults are the quick profile.

    One task (problem sets drawn with `data_seed`) and one base model (trained on the `n_human` worked
    solutions; with `base_per_seed` one per seed) are shared; each seed then runs SFT on the human
    solutions, ReST^EM restarting from the base and the continue-from-last variant, with its own sampling,
    shuffles and batch orders. Every M-step (SFT included) takes `m_steps` steps of `batch_size`.
    """

    seeds: int = 3
    data_seed: int = 0
    n_human: int = 500  # problems with a worked ("human") solution
    n_train: int = 1500  # problems with a final answer only: the E-step's inputs
    n_val: int = 200  # validation problems (the routed vote's threshold)
    n_test: int = 500
    n_heldout: int = 50  # longer problems (heldout_operands digits)
    n_train_eval: int = 200  # training problems on which train accuracy is measured
    min_operands: int = 3
    max_operands: int = 6
    heldout_operands: int = 8
    d_model: int = 48
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    base_steps: int = 400
    base_per_seed: bool = False
    m_steps: int = 50
    batch_size: int = 64
    lr: float = 3e-3  # the base model's learning rate
    m_lr: float = 2e-3  # the M-step's (and SFT's) fine-tuning learning rate
    iterations: int = 3
    n_samples: int = 2  # N: samples per problem in the E-step
    cap: int = 1  # K: kept solutions per problem
    temperature: float = 0.7  # E-step sampling temperature
    continue_variant: bool = True
    eval_samples: int = 8  # samples per problem for pass@k (T = 1) and voting
    n_passk: int = 200  # test problems for pass@k and voting
    vote_temperature: float = 0.7
    size_sweep: tuple[int, ...] = ()  # problem-set sizes for one iteration (Fig. 8 left); full only

    PROFILES: ClassVar[dict] = {
        "smoke": {"seeds": 2, "n_human": 50, "n_train": 60, "n_val": 20, "n_test": 40, "n_heldout": 10,
                  "n_train_eval": 30, "d_model": 16, "n_layers": 1, "d_ff": 32, "base_steps": 15, "m_steps": 6,
                  "batch_size": 16, "iterations": 2, "n_samples": 2, "eval_samples": 4, "n_passk": 20,
                  "size_sweep": (30, 60)},
        "quick": {},
        "full": {"seeds": 5, "n_train": 5000, "n_samples": 8, "n_test": 1000, "n_heldout": 300, "n_train_eval": 500, "d_model": 64,
                 "d_ff": 256, "base_steps": 600, "base_per_seed": True, "m_steps": 300, "cap": 2, "iterations": 4, "eval_samples": 32,
                 "n_passk": 500, "size_sweep": (250, 1000, 3000)},
    }
    LIMITS: ClassVar[dict] = {"n_train": 50_000, "n_test": 20_000, "eval_samples": 128, "n_samples": 64}

    def validate(self) -> None:
        if self.seeds < 1 or self.iterations < 1:
            raise ConfigError(f"need seeds >= 1 and iterations >= 1, got {self.seeds}, {self.iterations}")
        if self.n_samples < 1 or self.cap < 1:
            raise ConfigError(f"need N (n_samples) >= 1 and K (cap) >= 1, got {self.n_samples}, {self.cap}")
        if not self.temperature > 0 or not self.vote_temperature > 0:
            raise ConfigError("the sampling temperatures must be > 0 (the E-step samples; 0 would be greedy)")
        if self.d_model % (2 * self.n_heads):
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of 2 * n_heads: RoPE needs an even head dim")
        if not 1 <= self.min_operands <= self.max_operands:
            raise ConfigError(f"need 1 <= min_operands <= max_operands, got {self.min_operands}, {self.max_operands}")
        if self.n_train_eval > self.n_train or self.n_passk > self.n_test:
            raise ConfigError("n_train_eval must be <= n_train and n_passk <= n_test")
        if self.eval_samples < 8 and self.profile != "smoke":
            raise ConfigError("eval_samples must be >= 8 (pass@8 is compared)")
        if not (0 < self.lr < 1 and 0 < self.m_lr < 1):
            raise ConfigError(f"lr and m_lr must be in (0, 1), got {self.lr}, {self.m_lr}")
        if any(s < 1 or s > self.n_train for s in self.size_sweep):
            raise ConfigError(f"size_sweep sizes must lie in 1..n_train ({self.n_train}), got {self.size_sweep}")

    @property
    def ks(self) -> tuple[int, ...]:
        """The k of the pass@k curves: powers of two up to eval_samples."""
        out, k = [], 1
        while k <= self.eval_samples:
            out.append(k)
            k *= 2
        return tuple(out)
