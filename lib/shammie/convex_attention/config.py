"""Config of notebook 03, the theme's error type and its float type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..config import ConfigError, ProfileConfig
from ..core import ShammieError

DTYPE = torch.float64
_TIE = 1e-12  # relative tolerance of the group threshold for rounding ties (beta = lambda_max)


class ConvexAttentionError(ShammieError, ValueError):
    """Bad input to a convex-attention function (shapes, penalties, non-finite data); says the fix."""


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvexAttentionConfig(ProfileConfig):
    """Knobs of notebook 03. Defaults are the quick profile (planted teacher, 8 tokens x 8 features)."""

    n_train: int = 200  # training samples
    n_test: int = 1000  # test samples
    tokens: int = 8  # n, tokens per sample
    features: int = 8  # d, features per token
    support: tuple[int, ...] = (1, 5)  # the token positions the planted teacher reads
    noise: float = 0.1  # std of the label noise of the planted teacher
    beta_frac: float = 0.1  # beta = beta_frac * lambda_max on the planted task
    heads: tuple[int, ...] = (1, 2, 8)  # head counts of the non-convex model; must include `tokens`
    seeds: int = 3  # data seeds (each with its own initialization) of every stochastic claim
    steps: int = 1500  # Adam steps (full batch) of the non-convex runs with fewer than n heads
    lr: float = 0.03  # Adam learning rate of those runs
    race_lrs: tuple[float, ...] = (0.1, 0.3, 1.0)  # learning-rate grid of the h = n speed comparison
    race_steps: int = 2000  # budget of each h = n run (stopped once within reach_tol of p*)
    vector_outputs: int = 2  # c, outputs of the vector-output runs (h = n c heads)
    vector_lrs: tuple[float, ...] = (0.03, 0.1)  # learning-rate grid of the vector-output runs (cfg.steps each)
    reach_tol: float = 1e-3  # "reached the optimum" = objective <= p* (1 + reach_tol)
    stall_tol: float = 1e-2  # "stalled" = final objective > p* (1 + stall_tol)
    fista_tol: float = 1e-12  # FISTA stops when the duality gap is below fista_tol * objective
    fista_max_iter: int = 20000
    path_points: int = 25  # penalties on the regularization path
    path_min_frac: float = 1e-3  # the path runs from lambda_max down to path_min_frac * lambda_max
    n_val: int = 200  # validation samples of the softmax-teacher task
    teacher_heads: int = 2  # heads of the softmax attention teacher
    teacher_sharpness: float = 2.0  # factor on the teacher's query and key weights (peakier attention)
    teacher_noise: float = 0.1  # label noise std relative to the teacher's output std
    softmax_heads: int = 2  # heads of the softmax self-attention student
    softmax_key_dim: int = 4  # query/key and value width per head (teacher and student)
    softmax_steps: int = 800  # Adam steps of each softmax student
    softmax_lrs: tuple[float, ...] = (0.01, 0.03)  # learning rates tried (chosen on validation)
    softmax_decays: tuple[float, ...] = (1e-3, 1e-1)  # weight decays tried (chosen on validation)
    tune_points: int = 25  # penalties tried for the convex student (chosen on validation)
    tune_min_frac: float = 1e-4  # smallest penalty tried, as a fraction of lambda_max
    run_modular: bool = True  # the exploratory modular-arithmetic section
    modular_p: int = 23  # modulus
    modular_op: str = "add"  # add | div
    modular_train_frac: float = 0.5  # fraction of the p*p (or p*(p-1)) pairs used for training
    modular_gates: int = 64  # random gates of the gated (ReLU-like) convex model
    modular_beta_frac: float = 1e-3  # beta = modular_beta_frac * lambda_max for the modular fits
    modular_iters: int = (
        300  # FISTA iterations of the modular fits (exploration: not run to optimality)
    )

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "n_train": 60,
            "n_test": 200,
            "seeds": 1,
            "steps": 150,
            "race_steps": 200,
            "n_val": 60,
            "softmax_steps": 40,
            "softmax_lrs": (0.03,),
            "softmax_decays": (1e-3,),
            "tune_points": 8,
            "path_points": 6,
            "fista_max_iter": 5000,
            "modular_p": 7,
            "modular_gates": 8,
        },
        "quick": {},
        "full": {
            "n_train": 4000,
            "n_test": 20000,
            "tokens": 32,
            "features": 64,
            "support": (3, 11, 20, 27),
            "heads": (1, 2, 4, 32),
            "seeds": 5,
            "steps": 20000,
            "race_steps": 20000,
            "n_val": 2000,
            "softmax_steps": 5000,
            "softmax_lrs": (0.003, 0.01, 0.03),
            "softmax_decays": (1e-3, 1e-2, 1e-1, 1.0),
            "path_points": 50,
            "modular_p": 97,
            "modular_op": "div",
            "modular_gates": 128,
        },
    }

    def validate(self) -> None:
        if self.n_train < 2 or self.n_test < 1:
            raise ConfigError("n_train must be >= 2 and n_test >= 1")
        if self.tokens < 1 or self.features < 1:
            raise ConfigError("tokens and features must be >= 1")
        if not self.support or len(set(self.support)) != len(self.support):
            raise ConfigError(
                f"support={self.support} must be a non-empty tuple of distinct token positions"
            )
        if min(self.support) < 0 or max(self.support) >= self.tokens:
            raise ConfigError(
                f"support={self.support} must lie in 0..{self.tokens - 1} (tokens={self.tokens})"
            )
        if not self.heads or min(self.heads) < 1:
            raise ConfigError(f"heads={self.heads} must be a non-empty tuple of head counts >= 1")
        if self.tokens not in self.heads:
            raise ConfigError(
                f"heads={self.heads} must include tokens={self.tokens} (e.g. heads=(1, 2, {self.tokens})): the equivalence "
                "with the convex program needs h >= n, and the notebook checks it with h = n"
            )
        if self.noise < 0 or not 0 < self.beta_frac < 1:
            raise ConfigError(
                "noise must be >= 0 and beta_frac in (0, 1) (beta >= lambda_max gives Z = 0)"
            )
        if self.seeds < 1 or self.steps < 1 or self.race_steps < 1 or self.softmax_steps < 1:
            raise ConfigError("seeds, steps, race_steps and softmax_steps must be >= 1")
        if self.lr <= 0 or not self.race_lrs or min(self.race_lrs) <= 0 or not self.softmax_lrs or min(self.softmax_lrs) <= 0:
            raise ConfigError("lr, race_lrs and softmax_lrs must be positive (and the grids non-empty)")
        if self.vector_outputs < 1 or not self.vector_lrs or min(self.vector_lrs) <= 0:
            raise ConfigError("vector_outputs must be >= 1 and vector_lrs a non-empty tuple of positive rates")
        if not self.softmax_decays or min(self.softmax_decays) < 0:
            raise ConfigError("softmax_decays must be a non-empty tuple of decays >= 0")
        if self.n_val < 1 or self.teacher_heads < 1 or not self.teacher_sharpness > 0 or self.teacher_noise < 0:
            raise ConfigError("n_val and teacher_heads must be >= 1, teacher_sharpness > 0, teacher_noise >= 0")
        if self.tune_points < 2 or not 0 < self.tune_min_frac < 1 or not self.stall_tol > 0:
            raise ConfigError("tune_points must be >= 2, tune_min_frac in (0, 1), stall_tol > 0")
        if self.softmax_heads < 1 or self.softmax_key_dim < 1:
            raise ConfigError("softmax_heads and softmax_key_dim must be >= 1")
        if not 0 < self.fista_tol < 1 or self.fista_max_iter < 1 or self.reach_tol <= 0:
            raise ConfigError("fista_tol must be in (0, 1), fista_max_iter >= 1, reach_tol > 0")
        if self.path_points < 2 or not 0 < self.path_min_frac < 1:
            raise ConfigError("path_points must be >= 2 and path_min_frac in (0, 1)")
        if self.modular_p < 3 or self.modular_op not in ("add", "div"):
            raise ConfigError("modular_p must be >= 3 and modular_op 'add' or 'div'")
        if (
            not 0 < self.modular_train_frac < 1
            or self.modular_gates < 1
            or not 0 < self.modular_beta_frac < 1
            or self.modular_iters < 1
        ):
            raise ConfigError(
                "modular_train_frac and modular_beta_frac must be in (0, 1), modular_gates and modular_iters >= 1"
            )

