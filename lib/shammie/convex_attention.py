"""Convex attention (Ergen, Neyshabur & Mehta, "Convexifying Transformers", arXiv 2211.11052).

The paper replaces the score matrix of self-attention by a trainable row-stochastic matrix shared by
all samples. With weight decay on the value and output weights, the multi-head model

    f(X) = sum_j (w_j^T X v_j) b_j,   w_j in the simplex,
    P_h = min  1/2 sum_i ||f(X_i) - y_i||^2 + beta/2 sum_j (||v_j||^2 + ||b_j||_1^2)

is a non-convex problem whose optimum, given at least as many heads as needed (h >= n tokens for a
scalar output, h >= n*c for c outputs), equals the group lasso with one group per token position

    D = min_Z  1/2 sum_i ||<Z, X_i> - y_i||^2 + beta sum_k ||Z_k||_2          (Theorem 1, corrected)

and every non-convex point scores at least D at its aggregate Z = sum_j w_j (b_j v_j)^T. We use the
corrected statements of the research note: the same 1/2 on the loss in both objectives, the width
condition, and the recovery map indexed by the *active* tokens.

Shapes. Inputs X are (N, n, d) (n tokens of d features). A scalar target y is (N,) and its convex
variable Z is (n, d); a vector target Y is (N, c) and Z is (c, n, d) (one matrix per output). Heads
hold W (h, n) attention rows, V (h, d) values and B (h,) or (h, c) outputs. Everything is float64.

Contents: the planted-teacher task; objectives, predictions and the maps between heads and Z; the
FISTA solver with group soft-thresholding, restarts and a duality-gap certificate; lambda_max and the
regularization path; cvxpy as a trusted reference; the non-convex model trained with Adam; a standard
softmax self-attention baseline; a modular-arithmetic task for exploration; the theme's figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .config import ConfigError, ProfileConfig
from .core import ShammieError
from .training import progress

__all__ = [
    "ConvexAttentionError",
    "ConvexAttentionConfig",
    "PlantedTask",
    "planted_task",
    "Heads",
    "as_tensor",
    "convex_predict",
    "convex_objective",
    "group_norms",
    "token_norms",
    "active_tokens",
    "heads_predict",
    "nonconvex_objective",
    "heads_to_convex",
    "recover_heads",
    "balanced_factor",
    "lambda_max",
    "duality_gap",
    "optimality_conditions",
    "group_soft_threshold",
    "ConvexSolution",
    "ConvexProblem",
    "solve_convex",
    "solve_convex_cvxpy",
    "PathResult",
    "regularization_path",
    "SimplexAttention",
    "SoftmaxAttention",
    "Fit",
    "train_nonconvex",
    "train_softmax_attention",
    "mse",
    "steps_to_reach",
    "head_magnitudes",
    "summarize_fits",
    "ModularTask",
    "modular_task",
    "random_gates",
    "gated_features",
    "accuracy",
    "FIT_COLORS",
    "plot_objective_gap",
    "plot_token_norms",
    "plot_attention_maps",
    "plot_path",
    "plot_errors",
]

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
    support: tuple[int, ...] = (1, 5)  # the token positions the teacher reads
    noise: float = 0.1  # std of the label noise
    beta_frac: float = 0.1  # beta = beta_frac * lambda_max
    heads: tuple[int, ...] = (1, 2, 8)  # head counts of the non-convex model; must include `tokens`
    seeds: int = 3  # non-convex runs per head count
    steps: int = 2000  # Adam steps (full batch) for the non-convex and the softmax models
    lr: float = 0.02  # Adam learning rate of the non-convex model
    softmax_heads: int = 2  # heads of the softmax self-attention baseline
    softmax_key_dim: int = 4  # query/key and value width per head of the baseline
    softmax_lr: float = 0.01  # Adam learning rate of the baseline
    fista_tol: float = 1e-12  # FISTA stops when the duality gap is below fista_tol * objective
    fista_max_iter: int = 20000
    reach_tol: float = 1e-3  # "reached the optimum" = objective <= p* (1 + reach_tol)
    path_points: int = 25  # penalties on the regularization path
    path_min_frac: float = 1e-3  # the path runs from lambda_max down to path_min_frac * lambda_max
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
        if self.seeds < 1 or self.steps < 1 or self.lr <= 0 or self.softmax_lr <= 0:
            raise ConfigError("seeds and steps must be >= 1, learning rates positive")
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


# ------------------------------------------------------------------------------------------------
# Input checks and the planted-teacher task
# ------------------------------------------------------------------------------------------------


def as_tensor(
    a: Any, name: str = "array", device: torch.device | str | None = None
) -> torch.Tensor:
    """`a` (array, list or tensor) as a float64 tensor on `device`; non-finite values are an error."""
    try:
        t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    except (TypeError, ValueError) as err:
        raise ConvexAttentionError(
            f"{name} must be a numeric array, got {type(a).__name__}"
        ) from err
    if t.dtype == torch.bool or not (
        t.is_floating_point()
        or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise ConvexAttentionError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.to(device=device if device is not None else t.device, dtype=DTYPE)
    if not torch.isfinite(t).all():
        raise ConvexAttentionError(
            f"{name} contains NaN or infinite values: clean or drop those samples first"
        )
    return t


def _check_beta(beta: float) -> float:
    try:
        beta = float(beta)
    except (TypeError, ValueError) as err:
        raise ConvexAttentionError(f"the penalty beta must be a number, got {beta!r}") from err
    if not math.isfinite(beta) or beta < 0:
        raise ConvexAttentionError(f"the penalty beta must be a finite number >= 0, got {beta}")
    return beta


def _check_xy(X: Any, y: Any, device=None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """X as (N, n, d) and y as (N, c); the flag says whether y was a vector of scalars."""
    X = as_tensor(X, "X", device)
    if X.dim() != 3:
        raise ConvexAttentionError(
            f"X must have shape (samples, tokens, features), got {tuple(X.shape)}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0 or X.shape[2] == 0:
        raise ConvexAttentionError(f"X must not be empty, got shape {tuple(X.shape)}")
    y = as_tensor(y, "y", X.device)
    if y.dim() not in (1, 2):
        raise ConvexAttentionError(
            f"y must have shape (samples,) or (samples, outputs), got {tuple(y.shape)}"
        )
    if y.shape[0] != X.shape[0]:
        raise ConvexAttentionError(
            f"X has {X.shape[0]} samples but y has {y.shape[0]}: they must match"
        )
    scalar = y.dim() == 1
    return X, (y[:, None] if scalar else y), scalar


def _z3(Z: Any, X: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Z as (c, n, d) for inputs X (N, n, d); the flag says whether Z was (n, d)."""
    Z = as_tensor(Z, "Z", X.device)
    n, d = X.shape[1:]
    if Z.dim() == 2 and tuple(Z.shape) == (n, d):
        return Z[None], True
    if Z.dim() == 3 and tuple(Z.shape[1:]) == (n, d):
        return Z, False
    raise ConvexAttentionError(
        f"Z must have shape (tokens, features) = {(n, d)} or (outputs, {n}, {d}) "
        f"for X of shape {tuple(X.shape)}, got {tuple(Z.shape)}"
    )


@dataclass
class PlantedTask:
    """A teacher that reads a few token positions: y = <Z*, X> + noise, with Z* zero off `support`."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    teacher: torch.Tensor
    support: tuple[int, ...]
    noise: float

    @property
    def tokens(self) -> int:
        """Tokens per sample."""
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (
            f"PlantedTask(train {tuple(self.X_train.shape)}, test {tuple(self.X_test.shape)}, "
            f"teacher tokens {list(self.support)}, noise {self.noise})"
        )


def planted_task(
    n_train: int,
    n_test: int,
    tokens: int,
    features: int,
    support: tuple[int, ...],
    noise: float = 0.1,
    outputs: int | None = None,
    seed: int = 0,
) -> PlantedTask:
    """Gaussian tokens X_i in R^{n x d} and targets <Z*, X_i> + noise * N(0, 1), where the teacher Z*
    has standard-normal rows at the token positions in `support` and zeros elsewhere.

    `outputs=None` gives scalar targets and Z* of shape (n, d); an int c gives (N, c) targets and
    Z* of shape (c, n, d). The same `seed` gives the same task.
    """
    if n_train < 1 or n_test < 1 or tokens < 1 or features < 1:
        raise ConvexAttentionError("n_train, n_test, tokens and features must be >= 1")
    support = tuple(int(k) for k in support)
    if (
        not support
        or min(support) < 0
        or max(support) >= tokens
        or len(set(support)) != len(support)
    ):
        raise ConvexAttentionError(
            f"support={support} must be distinct token positions in 0..{tokens - 1}"
        )
    if noise < 0:
        raise ConvexAttentionError(f"noise must be >= 0, got {noise}")
    c = 1 if outputs is None else int(outputs)
    if c < 1:
        raise ConvexAttentionError(f"outputs must be >= 1, got {outputs}")
    g = torch.Generator().manual_seed(seed)
    teacher = torch.zeros(c, tokens, features, dtype=DTYPE)
    teacher[:, list(support)] = torch.randn(c, len(support), features, generator=g, dtype=DTYPE)
    X = torch.randn(n_train + n_test, tokens, features, generator=g, dtype=DTYPE)
    Y = torch.einsum("ikd,ckd->ic", X, teacher) + noise * torch.randn(
        n_train + n_test, c, generator=g, dtype=DTYPE
    )
    if outputs is None:
        Y, teacher = Y[:, 0], teacher[0]
    return PlantedTask(
        X[:n_train], Y[:n_train], X[n_train:], Y[n_train:], teacher, support, float(noise)
    )


# ------------------------------------------------------------------------------------------------
# Objectives and the maps between heads and the convex variable
# ------------------------------------------------------------------------------------------------


def convex_predict(Z: Any, X: Any) -> torch.Tensor:
    """Predictions <Z, X_i>_F of the convex model: (N,) for Z of shape (n, d), (N, c) for (c, n, d)."""
    X = as_tensor(X, "X")
    if X.dim() != 3:
        raise ConvexAttentionError(
            f"X must have shape (samples, tokens, features), got {tuple(X.shape)}"
        )
    Z3, scalar = _z3(Z, X)
    out = torch.einsum("ikd,ckd->ic", X, Z3)
    return out[:, 0] if scalar else out


def group_norms(Z: Any) -> torch.Tensor:
    """Norms ||Z_k||_2 of the token rows: (n,) for Z of shape (n, d), (c, n) for (c, n, d)."""
    Z = as_tensor(Z, "Z")
    if Z.dim() not in (2, 3):
        raise ConvexAttentionError(f"Z must have shape (n, d) or (c, n, d), got {tuple(Z.shape)}")
    return Z.norm(dim=-1)


def token_norms(Z: Any) -> torch.Tensor:
    """One norm per token position (n,): ||Z_k|| for a scalar Z, sqrt(sum_l ||Z^(l)_k||^2) for vector outputs."""
    norms = group_norms(Z)
    return norms if norms.dim() == 1 else norms.norm(dim=0)


def active_tokens(Z: Any, tol: float = 0.0) -> list[int]:
    """Token positions whose row of Z (for any output) has norm above `tol` (0: exactly nonzero)."""
    return [int(k) for k in torch.nonzero(token_norms(Z) > tol).flatten()]


def _sq_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((pred - y) ** 2).sum()


def convex_objective(Z: Any, X: Any, y: Any, beta: float) -> float:
    """The group-lasso objective 1/2 sum_i ||<Z, X_i> - y_i||^2 + beta sum_{l,k} ||Z^(l)_k||_2 (Theorem 1
    with the loss scaled as in the non-convex problem, i.e. without the printed extra 1/2)."""
    beta = _check_beta(beta)
    X, Y, scalar = _check_xy(X, y)
    Z3, zscalar = _z3(Z, X)
    if Z3.shape[0] != Y.shape[1] or (scalar and not zscalar and Z3.shape[0] != 1):
        raise ConvexAttentionError(f"Z has {Z3.shape[0]} outputs but y has {Y.shape[1]}")
    pred = torch.einsum("ikd,ckd->ic", X, Z3)
    return float(_sq_loss(pred, Y) + beta * Z3.norm(dim=-1).sum())


@dataclass
class Heads:
    """A point of the non-convex model: attention rows W (h, n) on the simplex, values V (h, d),
    outputs B (h,) for a scalar model or (h, c) for c outputs."""

    W: torch.Tensor
    V: torch.Tensor
    B: torch.Tensor

    def __post_init__(self) -> None:
        self.W, self.V, self.B = (
            as_tensor(self.W, "W"),
            as_tensor(self.V, "V"),
            as_tensor(self.B, "B"),
        )
        if self.W.dim() != 2 or self.V.dim() != 2 or self.B.dim() not in (1, 2):
            raise ConvexAttentionError("Heads need W (h, n), V (h, d) and B (h,) or (h, c)")
        h = self.W.shape[0]
        if self.V.shape[0] != h or self.B.shape[0] != h:
            raise ConvexAttentionError(
                f"W, V and B must have one row per head, got {self.W.shape[0]}, "
                f"{self.V.shape[0]}, {self.B.shape[0]}"
            )

    @property
    def num_heads(self) -> int:
        """h."""
        return self.W.shape[0]

    @property
    def scalar(self) -> bool:
        """True for a scalar-output model."""
        return self.B.dim() == 1

    def check_simplex(self, tol: float = 1e-9) -> None:
        """Raise if an attention row is not on the simplex (entries >= 0, sum 1) within `tol`."""
        if (self.W < -tol).any() or ((self.W.sum(1) - 1).abs() > tol).any():
            raise ConvexAttentionError(
                "every attention row W_j must lie on the simplex (W_j >= 0, sum 1); "
                "use softmax of logits or project onto the simplex"
            )

    def penalty(self) -> torch.Tensor:
        """1/2 sum_j (||v_j||^2 + ||b_j||_1^2): the weight decay of the paper's eqs. (8) and (11), without beta."""
        b1 = self.B.abs() if self.scalar else self.B.abs().sum(1)
        return 0.5 * ((self.V**2).sum() + (b1**2).sum())


def heads_predict(heads: Heads, X: Any) -> torch.Tensor:
    """Predictions sum_j (w_j^T X_i v_j) b_j: (N,) or (N, c)."""
    X = as_tensor(X, "X")
    if X.dim() != 3 or X.shape[1] != heads.W.shape[1] or X.shape[2] != heads.V.shape[1]:
        raise ConvexAttentionError(
            f"X of shape {tuple(X.shape)} does not fit heads over "
            f"{heads.W.shape[1]} tokens of {heads.V.shape[1]} features"
        )
    s = torch.einsum("hk,ikd,hd->ih", heads.W, X, heads.V)
    return s @ heads.B


def nonconvex_objective(heads: Heads, X: Any, y: Any, beta: float) -> float:
    """The non-convex objective 1/2 sum_i ||f(X_i) - y_i||^2 + beta/2 sum_j (||v_j||^2 + ||b_j||_1^2)
    (eq. (8); eq. (11) for vector outputs). Attention rows off the simplex are an error."""
    beta = _check_beta(beta)
    heads.check_simplex()
    X, Y, scalar = _check_xy(X, y)
    pred = heads_predict(heads, X)
    pred = pred[:, None] if pred.dim() == 1 else pred
    if pred.shape[1] != Y.shape[1]:
        raise ConvexAttentionError(f"the heads have {pred.shape[1]} outputs but y has {Y.shape[1]}")
    return float(_sq_loss(pred, Y) + beta * heads.penalty())


def heads_to_convex(heads: Heads) -> torch.Tensor:
    """The convex point of a non-convex setting: Z = sum_j w_j (b_j v_j)^T ((c, n, d) for vector outputs).

    It gives the same predictions, and its group penalty is at most the heads' weight decay
    (Appendix A.3), so convex_objective(Z) <= nonconvex_objective(heads) for every h.
    """
    if heads.scalar:
        return torch.einsum("h,hk,hd->kd", heads.B, heads.W, heads.V)
    return torch.einsum("hc,hk,hd->ckd", heads.B, heads.W, heads.V)


def balanced_factor(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The balanced factorization v = z / sqrt||z||, b = sqrt||z|| (zero for z = 0): v b = z and
    (||v||^2 + b^2)/2 = ||z||, the smallest weight decay of any factorization (Lemma 1)."""
    z = as_tensor(z, "z")
    r = z.norm()
    if r == 0:
        return torch.zeros_like(z), torch.zeros((), dtype=DTYPE, device=z.device)
    s = r.sqrt()
    return z / s, s


def recover_heads(Z: Any, num_heads: int | None = None, tol: float = 0.0) -> Heads:
    """Heads from a convex solution (Proposition 1, corrected): one head per nonzero row k_j, with
    w_j = e_{k_j} (the j-th *active* token), v_j = z_{k_j}/sqrt||z_{k_j}||, b_j = sqrt||z_{k_j}||.

    For vector outputs one head per nonzero (output l, token k) pair, with b_j = sqrt||z|| e_l.
    `num_heads` pads with zero heads (uniform attention, zero weights); fewer than needed is an error.
    Rows with norm <= `tol` count as zero. The heads' objective equals the convex objective of Z.
    """
    Z = as_tensor(Z, "Z")
    if Z.dim() not in (2, 3):
        raise ConvexAttentionError(f"Z must have shape (n, d) or (c, n, d), got {tuple(Z.shape)}")
    scalar = Z.dim() == 2
    Z3 = Z[None] if scalar else Z
    c, n, d = Z3.shape
    pairs = [(o, k) for o in range(c) for k in range(n) if Z3[o, k].norm() > tol]
    h = len(pairs) if num_heads is None else int(num_heads)
    if h < len(pairs):
        raise ConvexAttentionError(
            f"Z has {len(pairs)} nonzero (output, token) rows: it needs at least "
            f"that many heads, got num_heads={num_heads}"
        )
    h = max(h, 1)
    W = torch.full((h, n), 1.0 / n, dtype=DTYPE, device=Z.device)
    V = torch.zeros(h, d, dtype=DTYPE, device=Z.device)
    B = torch.zeros(h, c, dtype=DTYPE, device=Z.device)
    for j, (o, k) in enumerate(pairs):
        v, b = balanced_factor(Z3[o, k])
        W[j] = 0.0
        W[j, k] = 1.0
        V[j], B[j, o] = v, b
    return Heads(W, V, B[:, 0] if scalar else B)


# ------------------------------------------------------------------------------------------------
# Optimality: lambda_max, the duality gap, KKT conditions
# ------------------------------------------------------------------------------------------------


def lambda_max(X: Any, y: Any) -> float:
    """The smallest beta for which Z = 0 is optimal: max_{l,k} ||sum_i y_il x_ik||_2."""
    X, Y, _ = _check_xy(X, y)
    return float(torch.einsum("ikd,ic->ckd", X, Y).norm(dim=-1).max())


def _gap_parts(A: torch.Tensor, z: torch.Tensor, Y: torch.Tensor, beta: float, n: int, d: int):
    """Primal, dual, and the gradient's group norms for the flattened problem A z ~ Y."""
    r = A @ z - Y
    grad = A.T @ r
    gnorm = grad.reshape(n, d, -1).norm(dim=1)  # (n, c)
    primal = 0.5 * (r * r).sum() + beta * z.reshape(n, d, -1).norm(dim=1).sum()
    gmax = gnorm.max()
    s = 1.0 if gmax <= beta else beta / gmax
    dual = -0.5 * s * s * (r * r).sum() - s * (r * Y).sum()
    return float(primal), float(dual), gnorm, grad


def duality_gap(Z: Any, X: Any, y: Any, beta: float) -> dict[str, float]:
    """A certificate for Z: primal value, a dual lower bound on the optimum, and their gap.

    The dual point is u = s r with r = <Z, X_i> - y_i and s = min(1, beta / max_g ||(A^T r)_g||), which
    is dual feasible, so `dual <= optimum <= primal`; at the optimum the gap is zero.
    """
    beta = _check_beta(beta)
    X, Y, _ = _check_xy(X, y)
    Z3, _ = _z3(Z, X)
    if Z3.shape[0] != Y.shape[1]:
        raise ConvexAttentionError(f"Z has {Z3.shape[0]} outputs but y has {Y.shape[1]}")
    N, n, d = X.shape
    primal, dual, _, _ = _gap_parts(X.reshape(N, n * d), _flat(Z3), Y, beta, n, d)
    gap = primal - dual
    return {
        "primal": primal,
        "dual": dual,
        "gap": gap,
        "relative_gap": gap / max(abs(primal), 1e-300),
    }


def optimality_conditions(Z: Any, X: Any, y: Any, beta: float) -> dict[str, float]:
    """The group-lasso KKT conditions at Z, with g_k = sum_i r_i x_ik the loss gradient of row k:
    `active_residual` = max over nonzero rows of ||g_k + beta z_k/||z_k|| || / beta (0 at an optimum),
    `inactive_ratio` = max over zero rows of ||g_k|| / beta (<= 1 at an optimum)."""
    beta = _check_beta(beta)
    if beta == 0:
        raise ConvexAttentionError("the KKT conditions are scaled by beta: use beta > 0")
    X, Y, _ = _check_xy(X, y)
    Z3, _ = _z3(Z, X)
    N, n, d = X.shape
    r = torch.einsum("ikd,ckd->ic", X, Z3) - Y
    G = torch.einsum("ikd,ic->ckd", X, r)
    norms = Z3.norm(dim=-1)
    act = norms > 0
    resid = (G + beta * Z3 / norms.clamp_min(1e-300)[..., None]).norm(dim=-1)
    gnorm = G.norm(dim=-1)
    return {
        "active_residual": float(resid[act].max() / beta) if act.any() else 0.0,
        "inactive_ratio": float(gnorm[~act].max() / beta) if (~act).any() else 0.0,
        "active_groups": int(act.sum()),
    }


# ------------------------------------------------------------------------------------------------
# FISTA with group soft-thresholding
# ------------------------------------------------------------------------------------------------


def group_soft_threshold(Z: Any, threshold: float) -> torch.Tensor:
    """The prox of threshold * sum_k ||Z_k||: each token row shrunk to z_k max(0, 1 - threshold/||z_k||)
    (rows within a relative 1e-12 of the threshold, a rounding tie, become exactly zero)."""
    Z = as_tensor(Z, "Z")
    threshold = _check_beta(threshold)
    norms = Z.norm(dim=-1, keepdim=True)
    return (
        Z
        * (1 - threshold / norms.clamp_min(1e-300)).clamp_min(0)
        * (norms > threshold * (1 + _TIE))
    )


def _flat(Z3: torch.Tensor) -> torch.Tensor:
    """(c, n, d) -> (n*d, c), column l = vec(Z^(l)) in C order."""
    return Z3.reshape(Z3.shape[0], -1).T.contiguous()


def _unflat(z: torch.Tensor, n: int, d: int, scalar: bool) -> torch.Tensor:
    Z3 = z.T.reshape(-1, n, d).contiguous()
    return Z3[0] if scalar else Z3


def _lipschitz(A: torch.Tensor) -> float:
    """||A||_2^2, the Lipschitz constant of the gradient of 1/2 ||A z - y||^2."""
    M = A.T @ A if A.shape[1] <= A.shape[0] else A @ A.T
    return float(torch.linalg.eigvalsh(M)[-1])


_NUMPY_MAX_ELEMENTS = 1 << 16


class _NumpyOps:
    """The few array operations of the FISTA loop, in NumPy."""

    @staticmethod
    def wrap(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().copy()

    @staticmethod
    def unwrap(a: np.ndarray, device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=DTYPE)

    @staticmethod
    def norm1(a: np.ndarray) -> np.ndarray:
        return np.sqrt(np.einsum("ndc,ndc->nc", a, a))

    @staticmethod
    def dot(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.vdot(a, b))

    @staticmethod
    def relu(a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0.0)

    @staticmethod
    def clamp_tiny(a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 1e-300)


class _TorchOps:
    """The same operations in torch (for accelerators)."""

    @staticmethod
    def wrap(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def unwrap(a: torch.Tensor, device) -> torch.Tensor:
        return a.to(device)

    @staticmethod
    def norm1(a: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a, dim=1)

    @staticmethod
    def dot(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.vdot(a.reshape(-1), b.reshape(-1)))

    @staticmethod
    def relu(a: torch.Tensor) -> torch.Tensor:
        return a.clamp_min(0.0)

    @staticmethod
    def clamp_tiny(a: torch.Tensor) -> torch.Tensor:
        return a.clamp_min(1e-300)


@dataclass
class ConvexSolution:
    """The result of `solve_convex`: the solution Z, its objective, the certificate and the trace.

    `history[t]` is the objective after iteration t+1 and `times[t]` the seconds since the solver
    started (setup included), so the pair draws objective against wall-clock time.
    """

    Z: torch.Tensor
    beta: float
    objective: float
    dual: float
    gap: float
    iterations: int
    converged: bool
    lipschitz: float
    history: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    restarts: int = 0

    @property
    def relative_gap(self) -> float:
        """gap / objective."""
        return self.gap / max(abs(self.objective), 1e-300)

    @property
    def active_tokens(self) -> list[int]:
        """Token positions with a nonzero row."""
        return active_tokens(self.Z)

    @property
    def token_norms(self) -> torch.Tensor:
        """One norm per token position."""
        return token_norms(self.Z)

    def __repr__(self) -> str:
        return (
            f"ConvexSolution(objective={self.objective:.10g}, gap={self.gap:.2e}, iterations={self.iterations}, "
            f"converged={self.converged}, active tokens={self.active_tokens})"
        )


class ConvexProblem:
    """The convex program for fixed data, set up once and solved for any penalty:
    min_Z 1/2 sum_i ||<Z, X_i> - y_i||^2 + beta sum_{l,k} ||Z^(l)_k||_2.

    The setup (validation, the Gram matrix or the data matrix, the Lipschitz constant) is shared by
    every `solve`, which is what a regularization path needs.
    """

    def __init__(self, X: Any, y: Any, device: torch.device | str | None = None):
        self.X, self.Y, self.scalar = _check_xy(X, y, device)
        N, n, d = self.X.shape
        self.shape = (N, n, d, self.Y.shape[1])
        self.A = self.X.reshape(N, n * d)
        # With no more unknowns per output than samples, iterate on the Gram matrix K = A^T A (one
        # small product per iteration); otherwise on A itself (K = A, two products per iteration).
        self.gram = n * d <= N
        if self.gram:
            K, b = self.A.T @ self.A, self.A.T @ self.Y
            self.L = float(torch.linalg.eigvalsh(K)[-1])
        else:
            K, b = self.A, None
            self.L = _lipschitz(self.A)
        # Small problems are many tiny operations: on the CPU they run in NumPy, whose per-call
        # overhead is a few times smaller than torch's. Large ones (matrix products dominate) and
        # accelerators use torch, which keeps to the session's thread count. Same float64 arithmetic.
        small = K.numel() * self.shape[3] <= _NUMPY_MAX_ELEMENTS
        self.ops = _NumpyOps if self.X.device.type == "cpu" and small else _TorchOps
        self.K, self.b, self.Yb = (
            self.ops.wrap(K),
            None if b is None else self.ops.wrap(b),
            self.ops.wrap(self.Y),
        )
        self.yy = float((self.Y * self.Y).sum())

    @property
    def lambda_max(self) -> float:
        """The smallest beta for which Z = 0 is optimal."""
        return lambda_max(self.X, self.Y)

    def solve(
        self,
        beta: float,
        *,
        Z0: Any = None,
        tol: float = 1e-10,
        max_iter: int = 20000,
        check_every: int = 10,
        restart: bool = True,
        trace: bool = True,
    ) -> ConvexSolution:
        """FISTA for penalty `beta`; see `solve_convex`."""
        t_start = time.perf_counter()
        beta = _check_beta(beta)
        if not tol > 0 or max_iter < 1 or check_every < 1:
            raise ConvexAttentionError("tol must be > 0, max_iter and check_every >= 1")
        N, n, d, c = self.shape
        ops, K, b, Yb, yy, gram = self.ops, self.K, self.b, self.Yb, self.yy, self.gram
        if Z0 is None:
            z0 = torch.zeros(n * d, c, dtype=DTYPE, device=self.X.device)
        else:
            Z03, _ = _z3(Z0, self.X)
            if Z03.shape[0] != c:
                raise ConvexAttentionError(f"Z0 has {Z03.shape[0]} outputs but y has {c}")
            z0 = _flat(Z03)
        if self.L <= 0:  # X == 0: any Z predicts 0, so Z = 0 is optimal
            obj = 0.5 * yy
            Z = _unflat(torch.zeros_like(z0), n, d, self.scalar)
            t_end = time.perf_counter() - t_start
            return ConvexSolution(
                Z,
                beta,
                obj,
                obj,
                0.0,
                0,
                True,
                0.0,
                [obj] if trace else [],
                [t_end] if trace else [],
            )
        z = ops.wrap(z0)
        step, thr = 1.0 / self.L, beta / self.L
        # a row at the threshold up to rounding is zeroed (e.g. at beta = lambda_max)
        thr_tie = thr * (1.0 + _TIE)

        def loss_of(z, Kz) -> float:  # 1/2 ||A z - Y||^2
            if gram:
                return 0.5 * (ops.dot(z, Kz - 2 * b) + yy)
            r = Kz - Yb
            return 0.5 * ops.dot(r, r)

        def gap_of(z, Kz) -> tuple[float, float]:  # primal and dual values
            if gram:
                zb = ops.dot(z, b)
                rr = ops.dot(z, Kz) - 2 * zb + yy
                grad = Kz - b
                ry = zb - yy
            else:
                r = Kz - Yb
                rr, ry = ops.dot(r, r), ops.dot(r, Yb)
                grad = K.T @ r
            gmax = float(ops.norm1(grad.reshape(n, d, c)).max())
            s = 1.0 if gmax <= beta else beta / gmax
            primal = 0.5 * rr + beta * float(ops.norm1(z.reshape(n, d, c)).sum())
            return primal, -0.5 * s * s * rr - s * ry

        Kz = K @ z
        z_prev, Kz_prev = z, Kz
        t = 1.0
        history: list[float] = []
        times: list[float] = []
        converged, restarts, it = False, 0, 0
        for it in range(1, max_iter + 1):
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            m = (t - 1.0) / t_next
            if m > 0:
                yk = z + m * (z - z_prev)
                Kyk = Kz + m * (Kz - Kz_prev)
            else:
                yk, Kyk = z, Kz
            grad = Kyk - b if gram else K.T @ (Kyk - Yb)
            v3 = (yk - step * grad).reshape(n, d, c)
            vn = ops.norm1(v3)  # (n, c)
            scale = ops.relu(1.0 - thr / ops.clamp_tiny(vn)) * (vn > thr_tie)
            z_new = (v3 * scale[:, None, :]).reshape(n * d, c)
            Kz_new = K @ z_new
            if trace:
                history.append(loss_of(z_new, Kz_new) + beta * ops.dot(vn, scale))
                times.append(time.perf_counter() - t_start)
            if restart and ops.dot(yk - z_new, z_new - z) > 0:
                t_next = 1.0
                restarts += 1
            z_prev, Kz_prev, z, Kz, t = z, Kz, z_new, Kz_new, t_next
            if it % check_every == 0 or it == max_iter:
                primal, dual = gap_of(z, Kz)
                if primal - dual <= tol * max(abs(primal), 1e-300):
                    converged = True
                    break
        z = ops.unwrap(z, self.X.device)
        # the reported values are computed from the residuals directly (no Gram-matrix cancellation)
        primal, dual, _, _ = _gap_parts(self.A, z, self.Y, beta, n, d)
        Z = _unflat(z, n, d, self.scalar)
        return ConvexSolution(
            Z, beta, primal, dual, primal - dual, it, converged, self.L, history, times, restarts
        )


def solve_convex(
    X: Any,
    y: Any,
    beta: float,
    *,
    Z0: Any = None,
    tol: float = 1e-10,
    max_iter: int = 20000,
    check_every: int = 10,
    restart: bool = True,
    device: torch.device | str | None = None,
    trace: bool = True,
) -> ConvexSolution:
    """Solve the convex program min_Z 1/2 sum_i ||<Z, X_i> - y_i||^2 + beta sum_{l,k} ||Z^(l)_k||_2.

    FISTA (step 1/L, L = ||A||_2^2 with A the N x nd matrix of flattened samples) with group
    soft-thresholding and the gradient-mapping restart of O'Donoghue and Candes. Every `check_every`
    iterations the duality gap is computed; the solver stops when gap <= tol * objective (then
    `converged` is True) or after `max_iter` iterations. `Z0` warm-starts. With `trace` the objective
    and the elapsed time (setup included) after each iteration are kept. Rows below the threshold
    become exactly zero.
    """
    t_start = time.perf_counter()
    problem = ConvexProblem(X, y, device)
    setup = time.perf_counter() - t_start
    sol = problem.solve(
        beta,
        Z0=Z0,
        tol=tol,
        max_iter=max_iter,
        check_every=check_every,
        restart=restart,
        trace=trace,
    )
    sol.times = [t + setup for t in sol.times]
    return sol


def solve_convex_cvxpy(
    X: Any, y: Any, beta: float, solver: str = "CLARABEL", **solver_kwargs: Any
) -> tuple[np.ndarray, float]:
    """The same convex program solved by cvxpy (a dev dependency), as a trusted reference.

    Returns (Z as a NumPy array of the same shape `solve_convex` returns, the optimal value).
    """
    try:
        import cvxpy as cp
    except ImportError as err:  # pragma: no cover - cvxpy is a dev dependency
        raise ShammieError(
            "solve_convex_cvxpy needs cvxpy: pip install 'cvxpy>=1.5' (or the package's [dev] extra)"
        ) from err
    beta = _check_beta(beta)
    X, Y, scalar = _check_xy(X, y)
    N, n, d = X.shape
    A = X.reshape(N, n * d).cpu().numpy()
    Yn = Y.cpu().numpy()
    Zs = [cp.Variable((n, d)) for _ in range(Yn.shape[1])]
    loss = sum(cp.sum_squares(A @ cp.vec(Zo, order="C") - Yn[:, o]) for o, Zo in enumerate(Zs))
    pen = sum(cp.sum(cp.norm(Zl, 2, axis=1)) for Zl in Zs)
    prob = cp.Problem(cp.Minimize(0.5 * loss + beta * pen))
    prob.solve(solver=solver, **solver_kwargs)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise ShammieError(f"cvxpy ({solver}) did not solve the problem: status {prob.status}")
    Z = np.stack([Zl.value for Zl in Zs])
    return (Z[0] if scalar else Z), float(prob.value)


# ------------------------------------------------------------------------------------------------
# Regularization path
# ------------------------------------------------------------------------------------------------


@dataclass
class PathResult:
    """The regularization path: per penalty, the solution's active tokens, objective and errors."""

    betas: list[float]
    lam_max: float
    solutions: list[ConvexSolution]
    active: list[list[int]]
    train_mse: list[float]
    test_mse: list[float] | None = None

    @property
    def num_active(self) -> list[int]:
        """Number of active token positions per penalty."""
        return [len(a) for a in self.active]

    def to_frame(self):
        """A pandas DataFrame, one row per penalty."""
        import pandas as pd

        rows = {
            "beta": self.betas,
            "beta / lambda_max": [b / self.lam_max for b in self.betas],
            "active tokens": self.num_active,
            "which": [str(a) for a in self.active],
            "train MSE": self.train_mse,
        }
        if self.test_mse is not None:
            rows["test MSE"] = self.test_mse
        return pd.DataFrame(rows)


def regularization_path(
    X: Any,
    y: Any,
    betas: Any = None,
    *,
    points: int = 25,
    min_frac: float = 1e-3,
    X_test: Any = None,
    y_test: Any = None,
    tol: float = 1e-10,
    max_iter: int = 20000,
    show_progress: bool = True,
) -> PathResult:
    """Solve the convex program for decreasing penalties, each warm-started from the previous solution.

    Default penalties: `points` values log-spaced from lambda_max down to `min_frac` * lambda_max
    (the first one gives Z = 0 exactly). Train (and test, when given) MSE per penalty.
    """
    problem = ConvexProblem(X, y)
    X, Y, scalar = problem.X, problem.Y, problem.scalar
    lam = lambda_max(X, Y)
    if betas is None:
        if points < 2 or not 0 < min_frac < 1:
            raise ConvexAttentionError("points must be >= 2 and min_frac in (0, 1)")
        betas = (lam * np.logspace(0, np.log10(min_frac), points)).tolist()
    betas = [_check_beta(b) for b in betas]
    if sorted(betas, reverse=True) != betas:
        raise ConvexAttentionError(
            "betas must be in decreasing order (the path warm-starts downwards)"
        )
    yy = Y[:, 0] if scalar else Y
    sols, active, tr, te = [], [], [], []
    Z = None
    for b in progress(betas, desc="regularization path", disable=not show_progress, leave=False):
        sol = problem.solve(b, Z0=Z, tol=tol, max_iter=max_iter, trace=False)
        Z = sol.Z
        sols.append(sol)
        active.append(sol.active_tokens)
        tr.append(mse(convex_predict(Z, X), yy))
        if X_test is not None:
            te.append(mse(convex_predict(Z, X_test), y_test))
    return PathResult(betas, lam, sols, active, tr, te if X_test is not None else None)


# ------------------------------------------------------------------------------------------------
# The non-convex model and the softmax baseline, trained with Adam
# ------------------------------------------------------------------------------------------------


def mse(pred: Any, y: Any) -> float:
    """Mean over samples of the squared error ||f(X_i) - y_i||^2."""
    pred, y = as_tensor(pred, "pred"), as_tensor(y, "y")
    if pred.shape != y.shape:
        raise ConvexAttentionError(
            f"predictions {tuple(pred.shape)} and targets {tuple(y.shape)} differ in shape"
        )
    diff = (pred - y).reshape(len(y), -1)
    return float((diff**2).sum(1).mean())


class SimplexAttention(nn.Module):
    """The paper's non-convex alternative to attention (eq. (8); eq. (11) for c outputs):
    f(X) = sum_j (w_j^T X v_j) b_j with w_j = softmax(theta_j) on the simplex (theta is not penalized).
    """

    def __init__(
        self,
        tokens: int,
        features: int,
        heads: int,
        outputs: int | None = None,
        init_scale: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if tokens < 1 or features < 1 or heads < 1 or (outputs is not None and outputs < 1):
            raise ConvexAttentionError("tokens, features, heads and outputs must be >= 1")
        c = 1 if outputs is None else outputs
        self.scalar = outputs is None
        self.logits = nn.Parameter(torch.randn(heads, tokens, generator=generator, dtype=DTYPE))
        self.V = nn.Parameter(
            init_scale
            * torch.randn(heads, features, generator=generator, dtype=DTYPE)
            / math.sqrt(features)
        )
        self.B = nn.Parameter(init_scale * torch.randn(heads, c, generator=generator, dtype=DTYPE))

    @property
    def attention(self) -> torch.Tensor:
        """The attention rows W (h, n), each on the simplex."""
        return torch.softmax(self.logits, dim=1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        s = torch.einsum("hk,ikd,hd->ih", self.attention, X, self.V)
        out = s @ self.B
        return out[:, 0] if self.scalar else out

    def penalty(self) -> torch.Tensor:
        """1/2 sum_j (||v_j||^2 + ||b_j||_1^2)."""
        return 0.5 * ((self.V**2).sum() + (self.B.abs().sum(1) ** 2).sum())

    def heads(self) -> Heads:
        """The current point as Heads (detached)."""
        B = self.B.detach()
        return Heads(
            self.attention.detach().clone(),
            self.V.detach().clone(),
            (B[:, 0] if self.scalar else B).clone(),
        )


class SoftmaxAttention(nn.Module):
    """Standard softmax self-attention, read out at one query token:
    f(X) = sum_j softmax(x~_q W_Q^j (X~ W_K^j)^T / sqrt(k)) X~ W_V^j  W_O^j,  X~ = [X, onehot(position)].

    The position one-hots let content-based attention select fixed token positions (without them it
    cannot); there are no skip connections or layer norms, as in the paper's analysis.
    """

    def __init__(
        self,
        tokens: int,
        features: int,
        heads: int = 2,
        key_dim: int = 4,
        outputs: int | None = None,
        positional: bool = True,
        query_token: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if min(tokens, features, heads, key_dim) < 1 or not 0 <= query_token < tokens:
            raise ConvexAttentionError(
                "tokens, features, heads, key_dim >= 1 and 0 <= query_token < tokens"
            )
        c = 1 if outputs is None else outputs
        self.scalar, self.positional, self.query_token, self.key_dim = (
            outputs is None,
            positional,
            query_token,
            key_dim,
        )
        width = features + (tokens if positional else 0)
        self.register_buffer("pos", torch.eye(tokens, dtype=DTYPE))

        def init(*shape, fan_in):
            return nn.Parameter(
                torch.randn(*shape, generator=generator, dtype=DTYPE) / math.sqrt(fan_in)
            )

        self.WQ = init(heads, width, key_dim, fan_in=width)
        self.WK = init(heads, width, key_dim, fan_in=width)
        self.WV = init(heads, width, key_dim, fan_in=width)
        self.WO = init(heads, key_dim, c, fan_in=heads * key_dim)

    def _inputs(self, X: torch.Tensor) -> torch.Tensor:
        if not self.positional:
            return X
        return torch.cat([X, self.pos.expand(X.shape[0], -1, -1)], dim=2)

    def attention(self, X: torch.Tensor) -> torch.Tensor:
        """Attention weights (N, h, n) of the query token over the tokens."""
        Xt = self._inputs(X)
        q = torch.einsum("iw,hwe->ihe", Xt[:, self.query_token], self.WQ)
        k = torch.einsum("ikw,hwe->ihke", Xt, self.WK)
        return torch.softmax(torch.einsum("ihe,ihke->ihk", q, k) / math.sqrt(self.key_dim), dim=2)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Xt = self._inputs(X)
        a = self.attention(X)
        vals = torch.einsum("ihk,ikw,hwe->ihe", a, Xt, self.WV)
        out = torch.einsum("ihe,hec->ic", vals, self.WO)
        return out[:, 0] if self.scalar else out

    def penalty(self, qk: bool = True) -> torch.Tensor:
        """1/2 (||W_Q||^2 + ||W_K||^2 + ||W_V||^2 + ||W_O||^2) (eq. (3)); `qk=False` leaves out W_Q, W_K."""
        p = (self.WV**2).sum() + (self.WO**2).sum()
        if qk:
            p = p + (self.WQ**2).sum() + (self.WK**2).sum()
        return 0.5 * p


@dataclass
class Fit:
    """A model trained full-batch with Adam. `history`, `mse_history` and `times` have steps + 1 entries:
    the objective (loss + beta * penalty), the train MSE, and the seconds since training started, at the
    initialization, before each later step and at the end; then the final objective and train/test MSE."""

    model: nn.Module
    objective: float
    train_mse: float
    test_mse: float | None
    history: list[float]
    mse_history: list[float]
    times: list[float]
    label: str = ""
    heads: Heads | None = None

    def __repr__(self) -> str:
        test = f"{self.test_mse:.4g}" if self.test_mse is not None else "-"
        return f"Fit({self.label!r}: objective {self.objective:.8g}, train MSE {self.train_mse:.4g}, test MSE {test})"


def _train(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    penalty,
    beta: float,
    steps: int,
    lr: float,
    desc: str,
    show_progress: bool,
):
    if steps < 1 or not lr > 0:
        raise ConvexAttentionError(f"steps must be >= 1 and lr > 0, got {steps}, {lr}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history, mse_hist, times = [], [], []
    t0 = time.perf_counter()
    for step in progress(range(steps), desc=desc, disable=not show_progress, leave=False):
        times.append(time.perf_counter() - t0)  # when this point's objective is evaluated
        pred = model(X)
        sq = ((pred - y) ** 2).sum()
        loss = 0.5 * sq + beta * penalty()
        if not torch.isfinite(loss):
            raise ShammieError(
                f"{desc}: the objective became {loss.item()} at step {step}; lower lr (lr={lr})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        mse_hist.append(float(sq.detach()) / len(y))
    times.append(time.perf_counter() - t0)  # the final point
    return history, mse_hist, times


def train_nonconvex(
    X: Any,
    y: Any,
    heads: int,
    beta: float,
    *,
    steps: int = 2000,
    lr: float = 0.02,
    seed: int = 0,
    X_test: Any = None,
    y_test: Any = None,
    init_scale: float = 0.5,
    show_progress: bool = True,
) -> Fit:
    """Train the non-convex model with `heads` heads (softmax-parameterized simplex rows) by full-batch
    Adam on 1/2 sum ||f - y||^2 + beta/2 sum_j (||v_j||^2 + ||b_j||_1^2). The history starts at the
    initialization; `objective` is the exact objective of the final point."""
    beta = _check_beta(beta)
    X, Y, scalar = _check_xy(X, y)
    yy = Y[:, 0] if scalar else Y
    g = torch.Generator().manual_seed(seed)
    model = SimplexAttention(
        X.shape[1], X.shape[2], heads, None if scalar else Y.shape[1], init_scale, g
    ).to(X.device)
    hist, mh, times = _train(
        model,
        X,
        yy,
        model.penalty,
        beta,
        steps,
        lr,
        f"non-convex h={heads} seed {seed}",
        show_progress,
    )
    final = model.heads()
    with torch.no_grad():
        tr = mse(model(X), yy)
        te = (
            mse(model(as_tensor(X_test, "X_test", X.device)), y_test)
            if X_test is not None
            else None
        )
    obj = nonconvex_objective(final, X, yy, beta)
    return Fit(model, obj, tr, te, hist + [obj], mh + [tr], times, f"h={heads}", final)


def train_softmax_attention(
    X: Any,
    y: Any,
    beta: float,
    *,
    heads: int = 2,
    key_dim: int = 4,
    steps: int = 2000,
    lr: float = 0.01,
    seed: int = 0,
    decay_qk: bool = True,
    X_test: Any = None,
    y_test: Any = None,
    show_progress: bool = True,
) -> Fit:
    """Train the softmax self-attention baseline by full-batch Adam on 1/2 sum ||f - y||^2 plus
    beta/2 times the squared norms of W_Q, W_K, W_V, W_O (`decay_qk=False`: W_V, W_O only). Its objective
    is a different model's and penalty's: compare it on train/test error, not on objective value."""
    beta = _check_beta(beta)
    X, Y, scalar = _check_xy(X, y)
    yy = Y[:, 0] if scalar else Y
    g = torch.Generator().manual_seed(seed)
    model = SoftmaxAttention(
        X.shape[1], X.shape[2], heads, key_dim, None if scalar else Y.shape[1], generator=g
    ).to(X.device)
    hist, mh, times = _train(
        model,
        X,
        yy,
        lambda: model.penalty(decay_qk),
        beta,
        steps,
        lr,
        f"softmax attention seed {seed}",
        show_progress,
    )
    with torch.no_grad():
        tr = mse(model(X), yy)
        te = (
            mse(model(as_tensor(X_test, "X_test", X.device)), y_test)
            if X_test is not None
            else None
        )
        obj = float(0.5 * ((model(X) - yy) ** 2).sum() + beta * model.penalty(decay_qk))
    return Fit(model, obj, tr, te, hist + [obj], mh + [tr], times, "softmax attention")


def head_magnitudes(heads: Heads) -> torch.Tensor:
    """||v_j|| ||b_j||_1 per head: how much each head contributes (0 for an idle head)."""
    b1 = heads.B.abs() if heads.scalar else heads.B.abs().sum(1)
    return heads.V.norm(dim=1) * b1


def summarize_fits(fits: dict[str, list[Fit]], p_star: float, reach_tol: float):
    """One row per run: final objective, its relative gap to p*, the Adam steps until the objective
    was within reach_tol of p* (None: never), train/test MSE, and the tokens its working heads attend
    to most (heads contributing at least 1% of the largest contribution)."""
    import pandas as pd

    rows = []
    for label, runs in fits.items():
        for k, f in enumerate(runs):
            row = {
                "model": label,
                "run": k,
                "objective": f.objective,
                "gap to p*": (f.objective - p_star) / abs(p_star),
                "steps to reach": steps_to_reach(f.history, p_star * (1 + reach_tol)),
                "train MSE": f.train_mse,
                "test MSE": f.test_mse,
            }
            if f.heads is not None:
                mag = head_magnitudes(f.heads)
                working = mag >= 0.01 * mag.max() if mag.max() > 0 else mag > 0
                row["attended tokens"] = sorted({int(t) for t in f.heads.W[working].argmax(1)})
            rows.append(row)
    return pd.DataFrame(rows)


def steps_to_reach(history: Any, target: float) -> int | None:
    """The number of steps after which the objective trace first is <= target (None: never).

    For FISTA's trace (objective after each iteration) that is the iteration count; for a `Fit`
    history (objective before each step, entry 0 = the initialization) it is the number of Adam steps.
    """
    h = np.asarray(history, dtype=float)
    idx = np.flatnonzero(h <= target)
    return int(idx[0]) if len(idx) else None


# ------------------------------------------------------------------------------------------------
# Modular arithmetic (exploratory)
# ------------------------------------------------------------------------------------------------


@dataclass
class ModularTask:
    """a op b (mod p) with two one-hot tokens per sample: X (N, 2, p), labels (N,), one-hot targets (N, p)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    p: int
    op: str

    def targets(self, split: str = "train") -> torch.Tensor:
        """One-hot targets of `split` as float64 (N, p)."""
        y = self.y_train if split == "train" else self.y_test
        return torch.nn.functional.one_hot(y, self.p).to(DTYPE)


def modular_task(
    p: int = 23, op: str = "add", train_frac: float = 0.5, seed: int = 0
) -> ModularTask:
    """All pairs (a, b) with label a + b or a * b^-1 (mod p; b != 0 for division), split at random
    into `train_frac` for training and the rest for testing (the grokking task of Power et al.)."""
    if p < 2 or op not in ("add", "div") or not 0 < train_frac < 1:
        raise ConvexAttentionError(
            "modular_task needs p >= 2, op 'add' or 'div', 0 < train_frac < 1"
        )
    if op == "div" and any(p % q == 0 for q in range(2, int(p**0.5) + 1)):
        raise ConvexAttentionError(f"division mod {p} needs a prime modulus")
    a, b = np.meshgrid(np.arange(p), np.arange(0 if op == "add" else 1, p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    lab = (a + b) % p if op == "add" else (a * np.array([pow(int(v), -1, p) for v in b])) % p
    eye = torch.eye(p, dtype=DTYPE)
    X = torch.stack([eye[torch.as_tensor(a)], eye[torch.as_tensor(b)]], dim=1)
    y = torch.as_tensor(lab, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(round(train_frac * len(y)))
    tr, te = order[:cut], order[cut:]
    return ModularTask(X[tr], y[tr], X[te], y[te], p, op)


def random_gates(num_gates: int, tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    """Gaussian gate vectors (num_gates, tokens, features) for `gated_features`."""
    if num_gates < 1:
        raise ConvexAttentionError(f"num_gates must be >= 1, got {num_gates}")
    return torch.randn(
        num_gates, tokens, features, generator=torch.Generator().manual_seed(seed), dtype=DTYPE
    )


def gated_features(X: Any, gates: Any) -> torch.Tensor:
    """Gated copies of the tokens, 1(<g_m, X_i> > 0) X_i stacked over gates m: (N, M*n, d).

    A convex attention model on these pseudo-tokens is a gated-ReLU network (fixed gates, as in
    Mishkin, Sahiner & Pilanci's convex gated-ReLU networks); the group lasso then selects
    (gate, token) pairs. This is our exploratory extension, not the paper's section 3.4 model.
    """
    X, gates = as_tensor(X, "X"), as_tensor(gates, "gates")
    if X.dim() != 3 or gates.dim() != 3 or gates.shape[1:] != X.shape[1:]:
        raise ConvexAttentionError(
            f"gates must have shape (M, {X.shape[1]}, {X.shape[2]}) for X of shape {tuple(X.shape)}"
        )
    on = (torch.einsum("ikd,mkd->im", X, gates) > 0).to(DTYPE)  # (N, M)
    N, n, d = X.shape
    return (on[:, :, None, None] * X[:, None]).reshape(N, -1, d)


def accuracy(scores: Any, labels: Any) -> float:
    """Fraction of rows whose largest score is at the label."""
    scores = as_tensor(scores, "scores")
    labels = torch.as_tensor(labels)
    return float((scores.argmax(1).cpu() == labels.cpu()).double().mean())


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


#: colours of the non-convex fits, in the order of their labels (FISTA is C0)
FIT_COLORS = ("C3", "C2", "C4", "C8", "C9", "C7")


def plot_objective_gap(
    p_star: float,
    convex: ConvexSolution | None = None,
    fits: dict[str, list[Fit]] | None = None,
    ax=None,
    relative: bool = True,
    floor: float = 1e-16,
):
    """Objective minus the convex optimum p* against wall-clock seconds (log-log), FISTA and every fit.

    `fits` maps a label (e.g. "h=2") to its runs, drawn in one colour. Relative gaps by default; gaps
    below `floor` are drawn at the floor.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    scale = abs(p_star) if relative else 1.0

    def draw(times, hist, **kw):
        t = np.maximum(np.asarray(times, dtype=float), 1e-4)
        g = np.maximum((np.asarray(hist, dtype=float) - p_star) / scale, floor)
        ax.plot(t, g, **kw)

    for i, (label, runs) in enumerate((fits or {}).items()):
        for j, f in enumerate(runs):
            draw(
                f.times,
                f.history,
                color=FIT_COLORS[i % len(FIT_COLORS)],
                lw=1.4,
                alpha=0.8,
                label=label if j == 0 else None,
            )
    if convex is not None:
        draw(
            convex.times,
            convex.history,
            color="C0",
            lw=2.5,
            marker=".",
            ms=3,
            label="convex (FISTA)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("(objective - p*) / p*" if relative else "objective - p*")
    ax.legend(frameon=False, fontsize=9)
    return ax


def plot_token_norms(Z: Any, support: tuple[int, ...], teacher: Any = None, ax=None):
    """Bar chart of the convex solution's per-token norms ||Z_k||, teacher tokens highlighted (and the
    teacher's own norms as open markers when given)."""
    norms = token_norms(Z).cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    colors = ["C3" if k in support else "C0" for k in range(len(norms))]
    ax.bar(np.arange(len(norms)), norms, color=colors)
    if teacher is not None:
        ax.plot(
            np.arange(len(norms)),
            token_norms(teacher).cpu().numpy(),
            "o",
            mfc="none",
            mec="k",
            label="teacher ||Z*_k||",
        )
        ax.legend(frameon=False, fontsize=9)
    ax.set_xticks(np.arange(len(norms)))
    ax.set_xlabel("token position k (red: read by the teacher)")
    ax.set_ylabel("||Z_k||")
    return ax


def plot_attention_maps(
    maps: dict[str, Any], support: tuple[int, ...] = (), magnitudes: dict[str, Any] | None = None
):
    """Heatmaps of attention rows (heads x tokens), one panel per entry of `maps`; teacher tokens are
    marked below each panel. `magnitudes` (optional, per entry) annotates each head with ||v_j|| ||b_j||."""
    k = len(maps)
    fig, axes = plt.subplots(1, k, figsize=(3.3 * k, 3.4), squeeze=False)
    for ax, (name, W) in zip(axes[0], maps.items()):
        W = torch.as_tensor(W).detach().cpu().numpy()
        ax.imshow(W, vmin=0, vmax=1, cmap="Blues", aspect="auto", interpolation="nearest")
        ax.grid(False)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("token")
        ax.set_ylabel("head")
        ax.set_yticks(np.arange(W.shape[0]), [str(j) for j in range(W.shape[0])])
        ax.set_xticks(np.arange(W.shape[1]), [str(t) for t in range(W.shape[1])])
        for t in support:
            ax.get_xticklabels()[t].set_color("C3")
            ax.get_xticklabels()[t].set_fontweight("bold")
        if magnitudes and name in magnitudes:
            ax.text(
                1.01,
                1.0,
                "||v||·||b||",
                transform=ax.transAxes,
                va="bottom",
                fontsize=7,
                color="0.3",
            )
            for j, m in enumerate(np.asarray(magnitudes[name], dtype=float)):
                ax.text(
                    1.01,
                    j,
                    f"{m:.2f}",
                    transform=ax.get_yaxis_transform(),
                    va="center",
                    fontsize=7,
                    color="0.3",
                )
    fig.tight_layout()
    return fig


def plot_path(path: PathResult, support: tuple[int, ...] = (), beta: float | None = None):
    """The regularization path: active tokens and per-token norms against beta / lambda_max, and the
    train/test MSE. The chosen `beta` is marked."""
    frac = np.asarray(path.betas) / path.lam_max
    norms = np.stack([s.token_norms.cpu().numpy() for s in path.solutions])  # (points, n)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].step(frac, path.num_active, where="post", color="C0", lw=2)
    axes[0].set_ylabel("active tokens")
    for k in range(norms.shape[1]):
        axes[1].plot(
            frac,
            norms[:, k],
            color="C3" if k in support else "0.6",
            lw=2 if k in support else 1,
            label=f"token {k}" if k in support else None,
        )
    axes[1].set_ylabel("||Z_k|| (red: teacher tokens)")
    axes[2].plot(frac, path.train_mse, label="train", color="C0")
    if path.test_mse is not None:
        axes[2].plot(frac, path.test_mse, label="test", color="C1")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("MSE")
    axes[2].legend(frameon=False)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("beta / lambda_max")
        if beta is not None:
            ax.axvline(beta / path.lam_max, color="k", ls=":", lw=1)
    fig.tight_layout()
    return fig


def plot_errors(table, noise_mse: float | None = None, ax=None):
    """Grouped bars of train and test MSE per model (a DataFrame indexed by model with columns
    'train MSE' and 'test MSE'); the label-noise floor as a dotted line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["train MSE"], width=0.4, label="train", color="C0")
    ax.bar(x + 0.2, table["test MSE"], width=0.4, label="test", color="C1")
    if noise_mse is not None:
        ax.axhline(noise_mse, color="0.3", ls=":", lw=1, label="noise floor")
    ax.set_xticks(x, [str(i) for i in table.index], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("MSE")
    ax.legend(frameon=False)
    return ax
