"""Objectives, predictions and the maps between heads and the convex variable Z."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .config import DTYPE, ConvexAttentionError
from .tasks import _check_beta, _check_xy, _z3, as_tensor

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

def mse(pred: Any, y: Any) -> float:
    """Mean over samples of the squared error ||f(X_i) - y_i||^2."""
    pred, y = as_tensor(pred, "pred"), as_tensor(y, "y")
    if pred.shape != y.shape:
        raise ConvexAttentionError(
            f"predictions {tuple(pred.shape)} and targets {tuple(y.shape)} differ in shape"
        )
    diff = (pred - y).reshape(len(y), -1)
    return float((diff**2).sum(1).mean())

