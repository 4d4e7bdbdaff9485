"""The four scaling-law estimators of Alabdulmohsin, Neyshabur & Zhai (arXiv 2209.06640), fitted by
variable projection on the paper's square-log loss.

    M1  eps = beta x^c
    M2  eps - eps_inf = beta x^c
    M3  eps = beta (1/x + gamma)^(-c)                      (Bansal et al. 2022)
    M4  (eps - eps_inf) / (eps_0 - eps)^alpha = beta x^c   (this paper)

with beta > 0, c <= 0, alpha >= 0, gamma >= 0, 0 <= eps_inf < min(y), eps_0 > max(y).

For fixed non-linear parameters (eps_inf, eps_0, gamma) the rest enter the log-loss linearly, e.g.
for M4  log(y - eps_inf) = log beta + c log x + alpha log(eps_0 - y),  so they are a bounded linear
least-squares solve; the non-linear ones are found by a 1-D search. Two rules pick eps_inf:

- ``"paper"``: the first local minimum of the loss profile when moving down from min(y) - margin,
  which is where the released optimiser (started at min(y) - 1e-3) stops;
- ``"global"``: the global minimiser, which often drives eps_inf to 0 (M2 collapses to M1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear, minimize_scalar

from ..core import ShammieError

__all__ = ["ScalingLaw", "M1", "M2", "M3", "M4", "ESTIMATORS", "make_estimator", "check_curve", "m4_curve"]

_T_GRID = np.linspace(-6.0, 0.0, 241)  # eps_inf = top - (top - lo) * 10^t: dense near min(y)


def check_curve(x, y, n_params: int = 1, name: str = "curve") -> tuple[np.ndarray, np.ndarray]:
    """`x`, `y` as float arrays after checking what a fit needs: same length, finite, positive, x
    strictly increasing (sorted, no duplicates), at least `n_params` + 1 points. A clear error otherwise."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ShammieError(f"{name}: x and y differ in length ({x.size} vs {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ShammieError(f"{name}: x and y must be finite (found NaN or inf)")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ShammieError(f"{name}: x and y must be positive (a scaling law fits logs)")
    if np.any(np.diff(x) <= 0):
        raise ShammieError(f"{name}: x must be strictly increasing (sort the curve and average duplicated x)")
    if x.size < n_params + 1:
        raise ShammieError(f"{name}: {x.size} points cannot fit {n_params} parameters; give at least {n_params + 1}")
    return x, y


def _bounded_lsq(a: np.ndarray, b: np.ndarray, lower: list[float], upper: list[float]) -> tuple[np.ndarray, float]:
    """argmin ||a w - b||^2 within bounds, and the mean squared residual."""
    res = lsq_linear(a, b, bounds=(lower, upper), method="bvls", tol=1e-12)
    r = a @ res.x - b
    return res.x, float(np.mean(r**2))


def _profile_search(loss, lo: float, hi: float, rule: str) -> float:
    """Minimise the 1-D profile `loss(v)` over v in [lo, hi] on the grid v = hi - (hi - lo) 10^t,
    picking the first local minimum from `hi` downwards ("paper") or the global one ("global"), then
    refine it by bounded Brent between its grid neighbours."""
    if rule not in ("paper", "global"):
        raise ShammieError(f"eps_inf rule must be 'paper' or 'global', got {rule!r}")
    ts = _T_GRID
    vals = np.array([loss(hi - (hi - lo) * 10.0**t) for t in ts])
    if rule == "global":
        i = int(np.argmin(vals))
    else:
        i = next((k for k in range(len(ts) - 1) if vals[k] <= vals[k + 1]), len(ts) - 1)
    a, b = ts[max(i - 1, 0)], ts[min(i + 1, len(ts) - 1)]
    if b > a:
        res = minimize_scalar(lambda t: loss(hi - (hi - lo) * 10.0**t), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-9})
        if res.fun <= vals[i]:
            return hi - (hi - lo) * 10.0 ** float(res.x)
    return hi - (hi - lo) * 10.0 ** ts[i]


@dataclass
class ScalingLaw:
    """Base class: `fit(x, y)` then `predict(x)`; `params` holds the fitted values and `objective` the
    square-log loss at them."""

    params: dict[str, float] = field(default_factory=dict, init=False)
    objective: float = field(default=math.nan, init=False)
    n_params: int = field(default=2, init=False)
    name: str = field(default="", init=False)

    def fit(self, x, y) -> ScalingLaw:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, x) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _need_fit(self) -> None:
        if not self.params:
            raise ShammieError(f"{self.name}: call fit(x, y) before predict")

    @property
    def exponent(self) -> float:
        """The fitted power-law exponent c (negative)."""
        self._need_fit()
        return self.params["c"]


@dataclass
class M1(ScalingLaw):
    """eps = beta x^c: a straight line in log-log."""

    def __post_init__(self) -> None:
        self.name, self.n_params = "M1", 2

    def fit(self, x, y) -> M1:
        x, y = check_curve(x, y, self.n_params, self.name)
        a = np.column_stack([np.ones_like(x), np.log(x)])
        w, loss = _bounded_lsq(a, np.log(y), [-np.inf, -np.inf], [np.inf, 0.0])
        self.params = {"beta": float(np.exp(w[0])), "c": float(w[1])}
        self.objective = loss
        return self

    def predict(self, x) -> np.ndarray:
        self._need_fit()
        return self.params["beta"] * np.asarray(x, dtype=np.float64) ** self.params["c"]


@dataclass
class M2(ScalingLaw):
    """eps - eps_inf = beta x^c; eps_inf by the `einf_rule` profile search (or fixed with `eps_inf=`);
    `c=` fixes the exponent (the paper's Fig. 3 analysis), leaving beta and eps_inf to the fit."""

    einf_rule: str = "paper"
    margin: float = 1e-3
    eps_inf: float | None = None
    c: float | None = None

    def __post_init__(self) -> None:
        self.name, self.n_params = "M2", 3 if self.c is None else 2
        if self.c is not None and not self.c <= 0:
            raise ShammieError(f"M2: a fixed exponent must be <= 0, got {self.c}")

    def _solve(self, x, y, einf):
        if self.c is not None:  # only log beta is linear: its least-squares value is a mean
            r = np.log(y - einf) - self.c * np.log(x)
            return np.array([r.mean(), self.c]), float(np.mean((r - r.mean()) ** 2))
        a = np.column_stack([np.ones_like(x), np.log(x)])
        return _bounded_lsq(a, np.log(y - einf), [-np.inf, -np.inf], [np.inf, 0.0])

    def fit(self, x, y) -> M2:
        x, y = check_curve(x, y, self.n_params, self.name)
        top = float(y.min()) - self.margin
        if self.eps_inf is not None:
            einf = float(self.eps_inf)
            if not 0 <= einf < y.min():
                raise ShammieError(f"M2: eps_inf={einf} must lie in [0, min(y)={y.min():.4g})")
        elif top <= 0:
            einf = 0.0
        else:
            einf = _profile_search(lambda e: self._solve(x, y, e)[1], 0.0, top, self.einf_rule)
        w, loss = self._solve(x, y, einf)
        self.params = {"beta": float(np.exp(w[0])), "c": float(w[1]), "eps_inf": float(einf)}
        self.objective = loss
        return self

    def predict(self, x) -> np.ndarray:
        self._need_fit()
        p = self.params
        return p["eps_inf"] + p["beta"] * np.asarray(x, dtype=np.float64) ** p["c"]


@dataclass
class M3(ScalingLaw):
    """eps = beta (1/x + gamma)^(-c): a power law that bends into the floor beta gamma^(-c)."""

    n_gamma: int = 161

    def __post_init__(self) -> None:
        self.name, self.n_params = "M3", 3

    def _solve(self, x, y, gamma):
        a = np.column_stack([np.ones_like(x), np.log(1.0 / x + gamma)])
        return _bounded_lsq(a, np.log(y), [-np.inf, 0.0], [np.inf, np.inf])  # k = -c >= 0

    def fit(self, x, y) -> M3:
        x, y = check_curve(x, y, self.n_params, self.name)
        grid = np.concatenate([[0.0], np.logspace(math.log10(1e-4 / x.max()), math.log10(1e4 / x.min()), self.n_gamma)])
        losses = np.array([self._solve(x, y, g)[1] for g in grid])
        i = int(np.argmin(losses))
        gamma = float(grid[i])
        if 0 < i:
            lo = math.log10(grid[max(i - 1, 1)])
            hi = math.log10(grid[min(i + 1, len(grid) - 1)])
            res = minimize_scalar(lambda t: self._solve(x, y, 10.0**t)[1], bounds=(lo, hi), method="bounded",
                                  options={"xatol": 1e-10})
            if res.fun <= losses[i]:
                gamma = float(10.0**res.x)
        w, loss = self._solve(x, y, gamma)
        self.params = {"beta": float(np.exp(w[0])), "c": float(-w[1]), "gamma": gamma}
        self.objective = loss
        return self

    def predict(self, x) -> np.ndarray:
        self._need_fit()
        p = self.params
        return p["beta"] * (1.0 / np.asarray(x, dtype=np.float64) + p["gamma"]) ** (-p["c"])


def m4_curve(x, beta: float, c: float, alpha: float, eps_inf: float, eps0: float, iters: int = 200) -> np.ndarray:
    """M4's prediction: the unique root eps in (eps_inf, eps0) of (eps - eps_inf) = beta x^c (eps0 - eps)^alpha.

    With w = eps - eps_inf and b = eps0 - eps_inf, h(w) = w - beta x^c (b - w)^alpha increases strictly
    on [0, b] from h(0) < 0 to h(b) > 0, so bisection (vectorised over x) finds it to machine precision.
    alpha = 0 is M2 in closed form.
    """
    x = np.asarray(x, dtype=np.float64)
    u = beta * x**c
    if alpha == 0:
        return eps_inf + u
    b = eps0 - eps_inf
    lo = np.zeros_like(u)
    hi = np.full_like(u, b)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        h = mid - u * (b - mid) ** alpha
        lo = np.where(h < 0, mid, lo)
        hi = np.where(h < 0, hi, mid)
        if np.all(hi - lo <= 4 * np.finfo(float).eps * b):
            break
    return eps_inf + 0.5 * (lo + hi)


@dataclass
class M4(ScalingLaw):
    """(eps - eps_inf) / (eps0 - eps)^alpha = beta x^c.

    eps0: a number (the random-guessing level, fixed as in the paper's evaluation) or "learned" (a
    profile search in [max(y) + margin, eps0_max], as the released code does).
    """

    eps0: float | str = 1.0
    einf_rule: str = "paper"
    margin: float = 1e-3
    eps0_max: float = 1.0 + 1e-3

    def __post_init__(self) -> None:
        self.name, self.n_params = "M4", 4
        if not (self.eps0 == "learned" or (isinstance(self.eps0, (int, float)) and self.eps0 > 0)):
            raise ShammieError(f"M4: eps0 must be a positive number or 'learned', got {self.eps0!r}")

    def _solve(self, x, y, einf, eps0):
        a = np.column_stack([np.ones_like(x), np.log(x), np.log(eps0 - y)])
        return _bounded_lsq(a, np.log(y - einf), [-np.inf, -np.inf, 0.0], [np.inf, 0.0, np.inf])

    def _fit_einf(self, x, y, eps0):
        top = float(y.min()) - self.margin
        if top <= 0:
            return 0.0, self._solve(x, y, 0.0, eps0)[1]
        einf = _profile_search(lambda e: self._solve(x, y, e, eps0)[1], 0.0, top, self.einf_rule)
        return einf, self._solve(x, y, einf, eps0)[1]

    def fit(self, x, y) -> M4:
        x, y = check_curve(x, y, self.n_params, self.name)
        if self.eps0 == "learned":
            lo = float(y.max()) + self.margin
            if lo >= self.eps0_max:
                raise ShammieError(f"M4: max(y) + margin = {lo:.4g} reaches eps0_max = {self.eps0_max}")
            cands = lo + (self.eps0_max - lo) * np.linspace(0.0, 1.0, 21)
            fits = [(self._fit_einf(x, y, e0)[1], e0) for e0 in cands]
            eps0 = min(fits)[1]
        else:
            eps0 = float(self.eps0)
            if eps0 <= y.max():
                raise ShammieError(f"M4: eps0 = {eps0} must exceed max(y) = {y.max():.4g} (the random-guessing "
                                   "level is above every measured loss)")
        einf, _ = self._fit_einf(x, y, eps0)
        w, loss = self._solve(x, y, einf, eps0)
        self.params = {"beta": float(np.exp(w[0])), "c": float(w[1]), "alpha": float(w[2]),
                       "eps_inf": float(einf), "eps0": float(eps0)}
        self.objective = loss
        return self

    def predict(self, x) -> np.ndarray:
        self._need_fit()
        p = self.params
        return m4_curve(x, p["beta"], p["c"], p["alpha"], p["eps_inf"], p["eps0"])


ESTIMATORS = ("M1", "M2", "M3", "M4")


def make_estimator(name: str, eps0: float | str = 1.0, einf_rule: str = "paper", margin: float = 1e-3) -> ScalingLaw:
    """A fresh estimator by name with the shared settings (eps0 only matters for M4)."""
    kinds: dict[str, Any] = {"M1": lambda: M1(), "M2": lambda: M2(einf_rule=einf_rule, margin=margin),
                             "M3": lambda: M3(), "M4": lambda: M4(eps0=eps0, einf_rule=einf_rule, margin=margin)}
    if name not in kinds:
        raise ShammieError(f"unknown estimator {name!r}: choose one of {', '.join(ESTIMATORS)}")
    return kinds[name]()
