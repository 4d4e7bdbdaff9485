"""The convex program: lambda_max, the duality-gap certificate and KKT conditions, FISTA with group
soft-thresholding, cvxpy as a trusted reference, and the regularization path."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core import ShammieError
from ..training import progress
from .config import _TIE, DTYPE, ConvexAttentionError
from .model import active_tokens, convex_predict, mse, token_norms
from .tasks import _check_beta, _check_xy, _z3, as_tensor

# ------------------------------------------------------------------------------------------------
# Optimality: lambda_max, the duality gap, KKT conditions
# ------------------------------------------------------------------------------------------------


def lambda_max(X: Any, y: Any) -> float:
    """The smallest beta for which Z = 0 is optimal: max_{l,k} ||sum_i y_il x_ik||_2."""
    X, Y, _ = _check_xy(X, y)
    return float(torch.einsum("ikd,ic->ckd", X, Y).norm(dim=-1).max())


def _certificate(r, grad, z, beta: float, n: int, d: int, c: int, ops) -> tuple[float, float]:
    """Primal value and duality gap of z, from its residual r = A z - Y and loss gradient A^T r.

    The dual point u = s r, s = min(1, beta / max_g ||grad_g||), is feasible. Its gap, written out with
    r^T Y = grad^T z - ||r||^2, is a sum of non-negative terms,

        primal - dual = (1 - s)^2 ||r||^2 / 2 + sum_g (beta ||z_g|| + s grad_g^T z_g),

    each of which is computed without cancelling large numbers against each other: near the optimum
    ||r||^2 and r^T Y are large and nearly cancel, which made the naive difference unreliable.
    Rounding can make a group's term a hair negative; it is clamped at 0 (its true value is >= 0).
    With beta = 0 the dual is infeasible (s = 0), so this is only used for beta > 0.
    """
    rr = ops.dot(r, r)
    z3, g3 = z.reshape(n, d, c), grad.reshape(n, d, c)
    znorm = ops.norm1(z3)  # (n, c)
    gmax = float(ops.norm1(g3).max())
    s = 1.0 if gmax <= beta else beta / gmax
    terms = beta * znorm + s * (z3 * g3).sum(1)
    gap = 0.5 * (1.0 - s) ** 2 * rr + float(ops.relu(terms).sum())
    primal = 0.5 * rr + beta * float(znorm.sum())
    return primal, gap


def _gap_scale(primal: float, yy: float) -> float:
    """What a relative gap is relative to: the objective, floored at the rounding level of the loss at
    Z = 0 (an objective near 0, e.g. an interpolating least-squares fit, cannot be certified relatively)."""
    return max(abs(primal), 1e-16 * 0.5 * yy, 1e-300)


def duality_gap(Z: Any, X: Any, y: Any, beta: float) -> dict[str, float]:
    """A certificate for Z: primal value, a dual lower bound on the optimum, and their gap.

    The dual point is u = s r with r = <Z, X_i> - y_i and s = min(1, beta / max_g ||(A^T r)_g||), which
    is dual feasible, so `dual <= optimum <= primal`; at the optimum the gap is zero. The gap is
    computed as a sum of non-negative terms (no cancellation; see `_certificate`) and the dual is
    reported as primal - gap. `relative_gap` is gap / max(primal, rounding level of 1/2 ||y||^2).
    beta = 0 (least squares) is certified by the gradient instead: see `ConvexProblem.solve`.
    """
    beta = _check_beta(beta)
    X, Y, _ = _check_xy(X, y)
    Z3, _ = _z3(Z, X)
    if Z3.shape[0] != Y.shape[1]:
        raise ConvexAttentionError(f"Z has {Z3.shape[0]} outputs but y has {Y.shape[1]}")
    N, n, d = X.shape
    A, z = X.reshape(N, n * d), _flat(Z3)
    r = A @ z - Y
    grad = A.T @ r
    if beta > 0:
        primal, gap = _certificate(r, grad, z, beta, n, d, Y.shape[1], _TorchOps)
    else:
        primal, gap = _least_squares_gap(r, grad, _least_squares_curvature(A))
    yy = float((Y * Y).sum())
    return {
        "primal": primal,
        "dual": primal - gap,
        "gap": gap,
        "relative_gap": gap / _gap_scale(primal, yy),
    }


def _least_squares_curvature(A: torch.Tensor) -> float:
    """The smallest nonzero eigenvalue of A^T A (numerical rank as in numpy's matrix_rank)."""
    M = A.T @ A if A.shape[1] <= A.shape[0] else A @ A.T
    ev = torch.linalg.eigvalsh(M)
    top = float(ev[-1])
    if top <= 0:
        return math.inf
    cut = top * max(M.shape) * torch.finfo(DTYPE).eps
    return float(ev[ev > cut].min())


def _least_squares_gap(r: torch.Tensor, grad: torch.Tensor, mu: float) -> tuple[float, float]:
    """Primal value and a suboptimality bound for least squares (beta = 0): the loss exceeds its minimum
    by 1/2 g^T (A^T A)^+ g <= ||g||^2 / (2 mu), g = A^T r, mu the smallest nonzero eigenvalue of A^T A."""
    rr = float((r * r).sum())
    gg = float((grad * grad).sum())
    return 0.5 * rr, (0.0 if gg == 0 else 0.5 * gg / mu)


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
    scale: float = 0.0  # what the gap is relative to (the objective, floored at rounding level)

    @property
    def relative_gap(self) -> float:
        """gap / objective (the objective floored at the rounding level of 1/2 ||y||^2). `converged` is
        exactly `relative_gap <= tol`."""
        return self.gap / max(self.scale, abs(self.objective), 1e-300)

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
        self.Aw = self.ops.wrap(self.A) if self.gram else self.K  # the residual is computed from A
        self.yy = float((self.Y * self.Y).sum())
        self.mu: float | None = None  # smallest nonzero eigenvalue of A^T A (beta = 0 only)

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
        if beta == 0 and self.L > 0:
            return self._solve_least_squares(tol, trace, t_start)
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

        Aw = K if not gram else self.Aw

        def certify(z) -> tuple[float, float]:  # primal value and duality gap, from the residual itself
            r = Aw @ z - Yb
            return _certificate(r, Aw.T @ r, z, beta, n, d, c, ops)

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
                primal, gap = certify(z)
                if gap <= tol * _gap_scale(primal, yy):
                    converged = True
                    break
        # `converged` and the reported gap come from the same computation on the same iterate
        Z = _unflat(ops.unwrap(z, self.X.device), n, d, self.scalar)
        return ConvexSolution(
            Z, beta, primal, primal - gap, gap, it, converged, self.L, history, times, restarts,
            scale=_gap_scale(primal, yy),
        )

    def _solve_least_squares(self, tol: float, trace: bool, t_start: float) -> ConvexSolution:
        """beta = 0: the program is least squares. Solve it directly (minimum-norm solution) and
        certify it with the bound 1/2 ||A^T r||^2 / mu on the suboptimality (mu: the smallest nonzero
        eigenvalue of A^T A); FISTA's dual scale would be 0 there and could never certify it."""
        N, n, d, c = self.shape
        z = torch.linalg.pinv(self.A) @ self.Y
        r = self.A @ z - self.Y
        if self.mu is None:
            self.mu = _least_squares_curvature(self.A)
        primal, gap = _least_squares_gap(r, self.A.T @ r, self.mu)
        scale = _gap_scale(primal, self.yy)
        t_end = time.perf_counter() - t_start
        return ConvexSolution(
            _unflat(z, n, d, self.scalar), 0.0, primal, primal - gap, gap, 0, gap <= tol * scale,
            self.L, [primal] if trace else [], [t_end] if trace else [], scale=scale,
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
    iterations the duality gap is computed from the residual itself (never from the Gram matrix, whose
    ||r||^2 cancels near a low-noise optimum); the solver stops when gap <= tol * objective (then
    `converged` is True; the objective is floored at the rounding level of 1/2 ||y||^2) or after
    `max_iter` iterations. `converged`, `gap` and `relative_gap` come from the same computation on the
    returned Z. `beta = 0` is least squares: solved directly (minimum-norm) and certified by the
    suboptimality bound ||A^T r||^2 / (2 mu), mu the smallest nonzero eigenvalue of A^T A. `Z0` warm-starts. With `trace` the objective
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

