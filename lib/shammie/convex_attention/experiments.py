"""The experiments of notebook 03 beyond the identities: a softmax-attention teacher (outside the convex
class), how many tokens a model's predictions draw on, models tuned on a validation split, and the
optimization-speed comparison (steps to reach a stated gap to the certified optimum)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import DTYPE, ConvexAttentionError
from .model import Heads, convex_predict, mse
from .solver import ConvexProblem, lambda_max
from .tasks import _check_xy, as_tensor
from .training import (
    Fit,
    SoftmaxAttention,
    steps_to_reach,
    train_nonconvex,
    train_softmax_attention,
)

__all__ = [
    "TeacherTask",
    "softmax_teacher_task",
    "token_contributions",
    "effective_tokens",
    "TunedConvex",
    "tune_convex",
    "TunedSoftmax",
    "tune_softmax",
    "SpeedRace",
    "race_to_optimum",
]


# ------------------------------------------------------------------------------------------------
# A softmax-attention teacher (the paper's student-teacher setting at toy size)
# ------------------------------------------------------------------------------------------------


@dataclass
class TeacherTask:
    """Train / validation / test splits labelled by a fixed softmax self-attention teacher plus noise.

    Targets are scaled so that the teacher's outputs have unit variance; `noise` is then the noise std
    relative to the signal, and `noise**2` the test MSE of the teacher itself (the floor)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    teacher: SoftmaxAttention
    scale: float
    noise: float

    @property
    def tokens(self) -> int:
        """Tokens per sample."""
        return self.X_train.shape[1]

    def predict(self, X: Any) -> torch.Tensor:
        """The teacher's noiseless (scaled) output."""
        with torch.no_grad():
            return self.teacher(as_tensor(X, "X")) / self.scale

    def __repr__(self) -> str:
        return (
            f"TeacherTask(train {tuple(self.X_train.shape)}, val {len(self.X_val)}, test {len(self.X_test)}, "
            f"softmax teacher with {self.teacher.WQ.shape[0]} heads, noise {self.noise})"
        )


def softmax_teacher_task(
    n_train: int,
    n_val: int,
    n_test: int,
    tokens: int,
    features: int,
    *,
    heads: int = 2,
    key_dim: int = 4,
    sharpness: float = 2.0,
    noise: float = 0.1,
    seed: int = 0,
) -> TeacherTask:
    """Gaussian tokens labelled by a random softmax self-attention layer (`SoftmaxAttention`: position
    one-hots appended, read out at token 0), whose query and key weights are multiplied by `sharpness`
    (larger: more peaked, more input-dependent attention). The teacher is not a convex-model function
    (its attention depends on the input), and a softmax student of the same shape can represent it."""
    if min(n_train, n_val, n_test, tokens, features, heads, key_dim) < 1:
        raise ConvexAttentionError("sizes, heads and key_dim must be >= 1")
    if not sharpness > 0 or noise < 0:
        raise ConvexAttentionError(f"sharpness must be > 0 and noise >= 0, got {sharpness}, {noise}")
    g = torch.Generator().manual_seed(seed)
    teacher = SoftmaxAttention(tokens, features, heads, key_dim, generator=g)
    with torch.no_grad():
        teacher.WQ.mul_(sharpness)
        teacher.WK.mul_(sharpness)
    teacher.requires_grad_(False)
    N = n_train + n_val + n_test
    X = torch.randn(N, tokens, features, generator=g, dtype=DTYPE)
    with torch.no_grad():
        f = teacher(X)
    scale = float(f.std())
    y = f / scale + noise * torch.randn(N, generator=g, dtype=DTYPE)
    a, b = n_train, n_train + n_val
    return TeacherTask(X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:], teacher, scale, float(noise))


# ------------------------------------------------------------------------------------------------
# How many tokens a prediction draws on
# ------------------------------------------------------------------------------------------------


def token_contributions(model: Any, X: Any) -> torch.Tensor:
    """The exact split of each scalar prediction into one term per token: (N, n) with f(X_i) = sum_k C_ik.

    `model` is a convex solution Z (n, d): C_ik = z_k . x_ik; `Heads` (the non-convex model):
    C_ik = sum_j W_jk (x_ik . v_j) b_j; a `SoftmaxAttention`: C_ik = sum_h a_ihk (x~_ik W_V^h W_O^h),
    with a_ih the attention of the query token (values are linear given the attention, so the split is
    exact). The same definition for every model: the paper's attention maps, made comparable.
    """
    X = as_tensor(X, "X")
    if X.dim() != 3:
        raise ConvexAttentionError(f"X must have shape (samples, tokens, features), got {tuple(X.shape)}")
    if isinstance(model, SoftmaxAttention):
        if not model.scalar:
            raise ConvexAttentionError("token_contributions needs a scalar-output model")
        with torch.no_grad():
            a = model.attention(X)  # (N, h, n)
            vals = torch.einsum("ikw,hwe,he->ihk", model._inputs(X), model.WV, model.WO[:, :, 0])
            return (a * vals).sum(1)
    if isinstance(model, Heads):
        if not model.scalar:
            raise ConvexAttentionError("token_contributions needs a scalar-output model")
        return torch.einsum("hk,ikd,hd,h->ik", model.W, X, model.V, model.B)
    Z = as_tensor(model, "Z").to(X.device)
    if Z.dim() != 2 or tuple(Z.shape) != tuple(X.shape[1:]):
        raise ConvexAttentionError(f"Z must have shape {tuple(X.shape[1:])}, got {tuple(Z.shape)}")
    return (X * Z[None]).sum(-1)


def effective_tokens(model: Any, X: Any) -> float:
    """The number of tokens a prediction draws on, averaged over the samples of X: exp of the entropy of
    |C_ik| / sum_k |C_ik| (1 when one token carries the whole prediction, n when all carry the same)."""
    P = token_contributions(model, X).abs()
    tot = P.sum(1, keepdim=True)
    keep = tot[:, 0] > 0
    if not keep.any():
        return 0.0
    P = P[keep] / tot[keep]
    H = -(P * torch.log(P.clamp_min(1e-300))).sum(1)
    return float(H.exp().mean())


# ------------------------------------------------------------------------------------------------
# Models tuned on a validation split
# ------------------------------------------------------------------------------------------------


@dataclass
class TunedConvex:
    """The convex model with beta chosen on validation from a regularization path."""

    Z: torch.Tensor
    beta: float
    beta_frac: float
    val_mse: float
    test_mse: float | None
    train_mse: float
    path_betas: list[float] = field(default_factory=list)
    path_val_mse: list[float] = field(default_factory=list)


def tune_convex(
    X: Any,
    y: Any,
    X_val: Any,
    y_val: Any,
    *,
    points: int = 25,
    min_frac: float = 1e-4,
    X_test: Any = None,
    y_test: Any = None,
    tol: float = 1e-10,
) -> TunedConvex:
    """Solve the convex program on a log grid of `points` penalties from lambda_max down to
    `min_frac` lambda_max (warm-started) and keep the one with the lowest validation MSE."""
    problem = ConvexProblem(X, y)
    lam = lambda_max(problem.X, problem.Y)
    betas = (lam * np.logspace(0, math.log10(min_frac), points)).tolist()
    Xv = as_tensor(X_val, "X_val")
    yv = as_tensor(y_val, "y_val")
    best, Z, vals = None, None, []
    for b in betas:
        sol = problem.solve(b, Z0=Z, tol=tol, trace=False)
        Z = sol.Z
        v = mse(convex_predict(Z, Xv), yv)
        vals.append(v)
        if best is None or v < best[0]:
            best = (v, b, Z)
    v, b, Zb = best
    yy = problem.Y[:, 0] if problem.scalar else problem.Y
    te = mse(convex_predict(Zb, X_test), y_test) if X_test is not None else None
    return TunedConvex(Zb, b, b / lam, v, te, mse(convex_predict(Zb, problem.X), yy), betas, vals)


@dataclass
class TunedSoftmax:
    """The softmax attention baseline with learning rate and weight decay chosen on validation."""

    fit: Fit
    lr: float
    decay: float
    val_mse: float
    test_mse: float | None
    grid: list[dict[str, float]] = field(default_factory=list)


def tune_softmax(
    X: Any,
    y: Any,
    X_val: Any,
    y_val: Any,
    *,
    lrs: tuple[float, ...] = (0.01, 0.03),
    decays: tuple[float, ...] = (1e-3, 1e-1),
    heads: int = 2,
    key_dim: int = 4,
    steps: int = 800,
    seed: int = 0,
    X_test: Any = None,
    y_test: Any = None,
    show_progress: bool = False,
) -> TunedSoftmax:
    """Train the softmax attention baseline (weight decay on all four matrices, the paper's eq. 3) for
    every (learning rate, decay) pair and keep the one with the lowest validation MSE."""
    X, Y, scalar = _check_xy(X, y)
    if not scalar:
        raise ConvexAttentionError("tune_softmax needs scalar targets")
    Xv, yv = as_tensor(X_val, "X_val"), as_tensor(y_val, "y_val")
    best, grid = None, []
    for lr in lrs:
        for decay in decays:
            try:
                fit = train_softmax_attention(X, Y[:, 0], decay, heads=heads, key_dim=key_dim, steps=steps,
                                              lr=lr, seed=seed, show_progress=show_progress)
            except Exception as err:  # a diverged setting is a bad setting, not a crash
                if "became" not in str(err):
                    raise
                grid.append({"lr": lr, "decay": decay, "val_mse": math.inf})
                continue
            with torch.no_grad():
                v = mse(fit.model(Xv), yv)
            grid.append({"lr": lr, "decay": decay, "val_mse": v})
            if best is None or v < best[0]:
                best = (v, lr, decay, fit)
    if best is None:
        raise ConvexAttentionError("every softmax setting diverged: lower the learning rates")
    v, lr, decay, fit = best
    te = None
    if X_test is not None:
        with torch.no_grad():
            te = mse(fit.model(as_tensor(X_test, "X_test")), y_test)
    return TunedSoftmax(fit, lr, decay, v, te, grid)


# ------------------------------------------------------------------------------------------------
# Optimization speed: steps to reach a stated gap to the certified optimum
# ------------------------------------------------------------------------------------------------


@dataclass
class SpeedRace:
    """Full-data gradient evaluations until the objective is within `tol` (relative) of p*: FISTA's
    iterations, and the non-convex model's Adam steps for each learning rate of the grid (None: not
    within the budget). `best_lr` is the rate that got there first (or the lowest final objective)."""

    p_star: float
    tol: float
    fista_steps: int | None
    fista_seconds: float | None
    adam_steps: dict[float, int | None]
    adam_seconds: dict[float, float | None]
    fits: dict[float, Fit]
    best_lr: float
    budget: int

    @property
    def best_adam_steps(self) -> int | None:
        """Steps of the best learning rate (None: no rate reached the target)."""
        return self.adam_steps[self.best_lr]

    def log10_ratio(self) -> float:
        """log10(Adam steps / FISTA iterations), with a rate that never reached the target counted as
        reaching it at the budget (in Adam's favour)."""
        a = self.best_adam_steps if self.best_adam_steps is not None else self.budget
        f = self.fista_steps if self.fista_steps is not None else math.inf
        return math.log10(a / f)


def race_to_optimum(
    X: Any,
    y: Any,
    beta: float,
    fista_history: list[float],
    fista_times: list[float],
    p_star: float,
    *,
    heads: int,
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1),
    steps: int = 2000,
    tol: float = 1e-3,
    seed: int = 0,
    show_progress: bool = False,
) -> SpeedRace:
    """Train the non-convex model with `heads` heads for each learning rate in `lrs` (same init), each
    stopped once within `tol` of p* (or after `steps`), and count the steps against FISTA's iterations
    (`fista_history[t]` is FISTA's objective after t + 1 iterations, `fista_times[t]` its seconds)."""
    target = p_star * (1 + tol)
    at = steps_to_reach(fista_history, target)
    fsteps = None if at is None else at + 1
    fsec = None if at is None else float(fista_times[at])
    adam, secs, fits = {}, {}, {}
    for lr in lrs:
        try:
            fit = train_nonconvex(X, y, heads, beta, steps=steps, lr=lr, seed=seed, stop_below=target,
                                  show_progress=show_progress)
        except Exception as err:
            if "became" not in str(err):
                raise
            adam[lr], secs[lr] = None, None
            continue
        s = steps_to_reach(fit.history, target)
        adam[lr] = s
        secs[lr] = None if s is None else float(fit.times[s])
        fits[lr] = fit
    reached = [lr for lr in fits if adam[lr] is not None]
    if reached:
        best = min(reached, key=lambda lr: adam[lr])
    elif fits:
        best = min(fits, key=lambda lr: fits[lr].objective)
    else:
        raise ConvexAttentionError("every learning rate diverged: lower them")
    return SpeedRace(p_star, tol, fsteps, fsec, adam, secs, fits, best, steps)
