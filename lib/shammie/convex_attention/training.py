"""The non-convex model (the paper's eq. 8) and the softmax self-attention baseline, trained with Adam."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import ShammieError
from ..training import progress
from .config import DTYPE, ConvexAttentionError
from .model import Heads, mse, nonconvex_objective
from .tasks import _check_beta, _check_xy, as_tensor

# ------------------------------------------------------------------------------------------------
# The non-convex model and the softmax baseline, trained with Adam
# ------------------------------------------------------------------------------------------------


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
    stop_below: float | None = None,
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
        if stop_below is not None and float(loss.detach()) <= stop_below:
            times.pop()  # the final point's time is appended below
            break  # reached: this point is the final one (its objective is appended by the caller)
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
    stop_below: float | None = None,
    show_progress: bool = True,
) -> Fit:
    """Train the non-convex model with `heads` heads (softmax-parameterized simplex rows) by full-batch
    Adam on 1/2 sum ||f - y||^2 + beta/2 sum_j (||v_j||^2 + ||b_j||_1^2). The history starts at the
    initialization; `objective` is the exact objective of the final point. With `stop_below`, training
    stops at the first point whose objective is <= stop_below (then `len(history) - 1` steps were taken)."""
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
        stop_below,
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

