"""Input checks and the tasks: the planted teacher (a convex-model function), and the modular-arithmetic
task of the exploratory section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import DTYPE, ConvexAttentionError

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

