"""Post-hoc calibrators sharing one interface (fit on validation logits, transform): TS, VS, LATES, the
equal-weight ablation, the best-single-layer baseline and MC dropout; the float64 L-BFGS they share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..core import ShammieError
from .metrics import CalibrationInputError, NotFittedError, _as_array, _check_labels, _softmax

__all__ = [
    "Calibrator",
    "Uncalibrated",
    "TemperatureScaling",
    "VectorScaling",
    "LATES",
    "EqualWeightLATES",
    "BestLayerTS",
    "MCDropout",
]


# =============================================================================================
# Optimisation helpers (float64, L-BFGS)


def _lbfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, max_iter: int = 500,
           gtol: float = 1e-9) -> tuple[np.ndarray, dict[str, Any]]:
    """Minimise `fun` (returning value and gradient) from x0 with torch's L-BFGS (strong-Wolfe line
    search) in float64; returns the minimiser and a report (iterations, converged, largest |gradient|)."""
    x = torch.tensor(np.asarray(x0, dtype=np.float64), requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=gtol,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        value, grad = fun(x.detach().numpy().copy())
        x.grad = torch.as_tensor(grad, dtype=torch.float64).reshape(x.shape)
        return torch.tensor(value, dtype=torch.float64)

    opt.step(closure)
    state = opt.state[opt._params[0]]
    _, grad = fun(x.detach().numpy().copy())
    grad_max = float(np.max(np.abs(grad))) if len(grad) else 0.0
    return x.detach().numpy().copy(), {"iterations": int(state.get("n_iter", 0)), "evaluations": calls,
                                       "converged": grad_max < 1e-6, "grad_max": grad_max}


def _autograd_fun(loss: Callable[[torch.Tensor], torch.Tensor]):
    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = loss(t)
        (grad,) = torch.autograd.grad(value, t)
        v = float(value.detach())
        if not math.isfinite(v):
            return 1e300, np.zeros_like(x)
        return v, grad.numpy().astype(np.float64)

    return fun


def _nll_torch(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -logp.gather(-1, y[:, None]).mean()


# =============================================================================================
# Calibrators


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in x):
        shapes = {tuple(v.shape) for v in x}
        if len(shapes) != 1:
            raise CalibrationInputError(f"{name}: the per-layer arrays have different shapes {sorted(shapes)}")
        x = np.stack([_as_array(v, name) for v in x])
    arr = _as_array(x, name)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _rows_are_probabilities(z: torch.Tensor) -> bool:
    """Whether every row (last axis) is a probability vector: entries in [0, 1] summing to 1 (to 1e-6).
    Real logits essentially never are; a caller who passes softmax outputs almost always is."""
    if z.numel() == 0 or float(z.min()) < 0 or float(z.max()) > 1:
        return False
    return bool(torch.all((z.sum(-1) - 1).abs() <= 1e-6))


class Calibrator:
    """Post-hoc calibration map fitted on validation data.

    Calibrators take logits only (never guessed): an input whose every row is a probability vector
    is refused with a clear error (pass np.log(p) instead). `fit(logits, labels)` learns the map on
    validation logits; `transform(logits)` returns calibrated
    logits (softmax of them = calibrated probabilities; for MC dropout, log mean probabilities);
    `predict_proba(logits)` returns the probabilities. Layered calibrators (LATES) take per-layer
    logits of shape (L, N, K), the last layer being the network's own logits; wrapped in `MCDropout`,
    every input gains a leading axis of S dropout samples.
    """

    name: ClassVar[str] = "calibrator"
    layered: ClassVar[bool] = False

    def __init__(self) -> None:
        self.mc = False
        self._params: np.ndarray | None = None
        self.fit_info_: dict[str, Any] = {}

    # -- subclass hooks -------------------------------------------------------------------------
    def _apply(self, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (..., N, K) from inputs z and parameters (torch, differentiable)."""
        raise NotImplementedError

    def _init_params(self, z: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        x0 = self._init_params(z, y)
        x, info = _lbfgs(_autograd_fun(lambda p: self._loss(p, z, y)), x0)
        self.fit_info_.update(info)
        return x

    # -- shared machinery ----------------------------------------------------------------------
    def _log_probs(self, params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self._apply(params, z), dim=-1)
        if self.mc:  # log of the mean probability over the S dropout samples
            logp = torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])
        return logp

    def _loss(self, params: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _nll_torch(self._log_probs(params, z), y)

    def _expected_ndim(self) -> int:
        return 2 + int(self.layered) + int(self.mc)

    def _shape_help(self) -> str:
        parts = (["S samples"] if self.mc else []) + (["L layers"] if self.layered else []) + ["N examples", "K classes"]
        return "(" + ", ".join(parts) + ")"

    def _check_input(self, logits: Any) -> torch.Tensor:
        z = _to_tensor(logits, "logits")
        if z.dim() != self._expected_ndim():
            raise CalibrationInputError(
                f"{type(self).__name__}{' with MC dropout' if self.mc else ''} expects logits of shape "
                f"{self._shape_help()}, got shape {tuple(z.shape)}")
        if z.shape[-1] < 2 or z.shape[-2] < 1:
            raise CalibrationInputError(f"logits need at least one example and two classes, got shape {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            bad = int((~torch.isfinite(z)).sum())
            raise CalibrationInputError(
                f"logits contain {bad} NaN or infinite value(s): check the model's outputs before calibrating")
        if _rows_are_probabilities(z):
            raise CalibrationInputError(
                f"{type(self).__name__} takes logits, but every row of this input is a probability vector (entries "
                "in [0, 1] summing to 1): scaling probabilities as if they were logits is a silent error. Pass the "
                "model's logits, or np.log(probabilities) if that is all you have (the same distribution as logits).")
        return z

    def _check_fitted(self) -> None:
        if self._params is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call .fit(val_logits, val_labels) first")

    def fit(self, logits: Any, labels: Any) -> Calibrator:
        """Fit the calibration map on validation `logits` and integer `labels`; returns self."""
        z = self._check_input(logits)
        y = torch.from_numpy(_check_labels(labels, z.shape[-2], z.shape[-1]))
        self._n_classes = z.shape[-1]
        if self.layered:
            self._n_layers = z.shape[-3]
        self.fit_info_ = {}
        params = self._fit(z, y)
        if not np.all(np.isfinite(params)):
            raise ShammieError(f"{type(self).__name__}: the fit produced non-finite parameters; "
                               "check the validation logits for extreme values")
        self._params = params
        if "val_nll" not in self.fit_info_:  # (a fast path may have computed it already)
            self.fit_info_["val_nll"] = float(self._loss(torch.from_numpy(params), z, y))
        return self

    def transform(self, logits: Any) -> np.ndarray:
        """Calibrated logits (N, K) as float64 (for MC dropout: log mean probabilities)."""
        self._check_fitted()
        z = self._check_input(logits)
        if z.shape[-1] != self._n_classes:
            raise CalibrationInputError(f"fitted on {self._n_classes} classes, got logits with {z.shape[-1]}")
        if self.layered and z.shape[-3] != self._n_layers:
            raise CalibrationInputError(f"fitted on {self._n_layers} layers, got {z.shape[-3]}")
        with torch.no_grad():
            params = torch.from_numpy(self._params)
            out = self._log_probs(params, z) if self.mc else self._apply(params, z)
        out = out.numpy()
        return out.copy() if np.shares_memory(out, z.numpy()) else out  # never an alias of the input

    def predict_proba(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities (N, K)."""
        return _softmax(self.transform(logits))

    def fit_transform(self, logits: Any, labels: Any) -> np.ndarray:
        """`fit` then `transform` on the same data."""
        return self.fit(logits, labels).transform(logits)

    @property
    def n_params(self) -> int:
        """Number of fitted calibration parameters."""
        self._check_fitted()
        return int(self._params.size)

    def __repr__(self) -> str:
        state = "fitted" if self._params is not None else "not fitted"
        return f"{type(self).__name__}({'mc, ' if self.mc else ''}{state})"


class Uncalibrated(Calibrator):
    """The identity map (the network's own probabilities); with MC dropout, the plain MC average."""

    name = "uncalibrated"

    def _apply(self, params, z):
        return z

    def _fit(self, z, y):
        self.fit_info_.update(iterations=0, converged=True)
        return np.zeros(0)


class TemperatureScaling(Calibrator):
    """Temperature scaling (Guo et al. 2017): logits / T with one T > 0 minimising the validation NLL.

    T = exp(tau) is fitted by L-BFGS on tau in float64 (positivity by construction), with an analytic
    gradient; if L-BFGS reports no convergence, a bounded scalar search is tried and the better kept.
    """

    name = "TS"

    def _apply(self, params, z):
        return z * torch.exp(-params[0])

    def _init_params(self, z, y):
        return np.zeros(1)

    @staticmethod
    def _fast_objective(z: torch.Tensor, y: torch.Tensor):
        # NLL(beta) = mean(log sum_k exp(beta d_k) - beta d_y) with d = z - max z <= 0 (no overflow).
        top = z.max(dim=1, keepdim=True).values
        d = z - top
        d_y = d.gather(1, y[:, None]).squeeze(1)
        mean_dy = float(d_y.mean())
        n = len(y)
        buf = torch.empty_like(d)  # one work buffer: no large allocation per evaluation

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            beta = math.exp(-float(x[0]))
            with torch.no_grad():
                torch.mul(d, beta, out=buf).exp_()
                s = buf.sum(dim=1)
                value = float(torch.log(s).sum()) / n - beta * mean_dy
                dbeta = float((buf.mul_(d).sum(dim=1) / s).sum()) / n - mean_dy
            return value, np.array([-beta * dbeta])

        return fun

    def _fit(self, z, y):
        if self.mc:
            return super()._fit(z, y)
        fun = self._fast_objective(z, y)
        x, info = _lbfgs(fun, np.zeros(1))
        self.fit_info_.update(info)
        if not info["converged"]:
            from scipy.optimize import minimize_scalar

            alt = minimize_scalar(lambda t: fun(np.array([t]))[0], bounds=(math.log(1e-3), math.log(1e3)),
                                  method="bounded", options={"xatol": 1e-10})
            if alt.fun < fun(x)[0]:
                x = np.array([alt.x])
                self.fit_info_["fallback"] = "bounded scalar search"
        self.fit_info_["val_nll"] = fun(x)[0]
        return x

    @property
    def temperature(self) -> float:
        """The fitted temperature T."""
        self._check_fitted()
        return float(np.exp(self._params[0]))

    @classmethod
    def from_temperature(cls, temperature: float, n_classes: int) -> TemperatureScaling:
        """A fitted TS with a given temperature (for tests and what-ifs)."""
        if not temperature > 0:
            raise CalibrationInputError(f"temperature must be positive, got {temperature}")
        ts = cls()
        ts._params = np.array([math.log(temperature)])
        ts._n_classes = n_classes
        return ts


class VectorScaling(Calibrator):
    """Vector scaling (Guo et al. 2017): z * w + b with per-class w, b, fitted on the validation NLL
    from the temperature-scaling solution (w = 1/T, b = 0). Unlike TS it can change the argmax."""

    name = "VS"

    def _apply(self, params, z):
        k = z.shape[-1]
        return z * params[:k] + params[k:]

    def _init_params(self, z, y):
        ts = TemperatureScaling()
        ts.mc = self.mc
        ts.fit(z, y)
        k = z.shape[-1]
        return np.concatenate([np.full(k, 1.0 / ts.temperature), np.zeros(k)])


class LATES(Calibrator):
    """Layer-stack temperature scaling (reconstruction): softmax(sum_l w_l z_l) with w_l = exp(theta_l) > 0.

    Input: per-layer logits (L, N, K), the last layer being the network's logits. Fitting starts at the
    temperature-scaling solution of the last layer (w_L = 1/T, earlier w_l = `init_weight`) and runs
    L-BFGS on theta in float64 on the validation NLL (+ `l2`/2 * sum_{l<L} w_l^2). If the result's
    validation NLL is above temperature scaling's, the exact TS solution (earlier weights 0) is kept, so
    the fitted validation NLL is never above TS's.
    """

    name = "LATES"
    layered = True

    def __init__(self, init_weight: float = 1e-3, l2: float = 0.0) -> None:
        super().__init__()
        if not init_weight > 0:
            raise CalibrationInputError(f"init_weight must be positive, got {init_weight}")
        if l2 < 0:
            raise CalibrationInputError(f"l2 must be >= 0, got {l2}")
        self.init_weight = init_weight
        self.l2 = l2

    @staticmethod
    def _combine(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tensordot(w, z.movedim(-3, 0), dims=1)

    def _apply(self, params, z):
        # params hold the weights themselves (zeros allowed); fitting works on theta = log w
        return self._combine(params, z)

    def _fit(self, z, y):
        ts = TemperatureScaling()
        ts.mc = self.mc
        ts.fit(z[..., -1, :, :], y)
        n_layers = z.shape[-3]
        w_ts = np.zeros(n_layers)
        w_ts[-1] = 1.0 / ts.temperature
        nll_ts = float(self._loss(torch.from_numpy(w_ts), z, y))

        def loss(theta: torch.Tensor) -> torch.Tensor:
            w = torch.exp(theta)
            value = _nll_torch(self._log_probs(w, z), y)
            if self.l2:
                value = value + 0.5 * self.l2 * (w[:-1] ** 2).sum()
            return value

        theta0 = np.log(np.maximum(w_ts, self.init_weight))
        theta, info = _lbfgs(_autograd_fun(loss), theta0)
        w = np.exp(theta)
        self.fit_info_.update(info)
        self.fit_info_.update(temperature=ts.temperature, ts_val_nll=nll_ts)
        if not float(self._loss(torch.from_numpy(w), z, y)) <= nll_ts:
            w = w_ts
            self.fit_info_["fallback"] = "temperature scaling (LATES did not lower the validation NLL)"
        return w

    @property
    def weights(self) -> np.ndarray:
        """The fitted per-layer weights w_l (inverse temperatures), last = the network's logits."""
        self._check_fitted()
        return self._params.copy()

    @classmethod
    def from_weights(cls, weights: Sequence[float], n_classes: int) -> LATES:
        """A fitted LATES with given non-negative weights (for tests and what-ifs)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) < 1 or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise CalibrationInputError(f"weights must be a 1-D sequence of non-negative numbers, got {weights!r}")
        c = cls()
        c._params = w
        c._n_classes = n_classes
        c._n_layers = len(w)
        return c


class EqualWeightLATES(Calibrator):
    """The ablation of LATES with equal layer weights: every layer votes with weight 1/L, then one
    temperature on top, softmax(mean_l z_l / T). Tests whether LATES's *learned* weights matter."""

    name = "LATES (equal)"
    layered = True

    def _apply(self, params, z):
        return z.mean(dim=-3) * torch.exp(-params[0])

    def _fit(self, z, y):
        ts = TemperatureScaling()
        ts.mc = self.mc
        ts.fit(z.mean(dim=-3), y)
        self.fit_info_.update(ts.fit_info_)
        return ts._params.copy()

    @property
    def weights(self) -> np.ndarray:
        """The equivalent per-layer weights, all 1 / (L T)."""
        self._check_fitted()
        return np.full(self._n_layers, math.exp(-self._params[0]) / self._n_layers)


class BestLayerTS(Calibrator):
    """Temperature scaling on the single best earlier layer: among layers 1..L-1 (the probes; the last
    layer, the network's own logits, is left out), the one whose temperature-scaled validation NLL is
    lowest, then its temperature. A baseline for LATES: is one early layer's vote as good as the stack?"""

    name = "TS (best probe)"
    layered = True

    def _apply(self, params, z):
        return z.select(-3, self.layer_) * torch.exp(-params[0])

    def _fit(self, z, y):
        n_layers = z.shape[-3]
        if n_layers < 2:
            raise CalibrationInputError("BestLayerTS needs at least one probe layer before the network's logits")
        best = None
        for layer in range(n_layers - 1):
            ts = TemperatureScaling()
            ts.mc = self.mc
            ts.fit(z.select(-3, layer), y)
            if best is None or ts.fit_info_["val_nll"] < best[1].fit_info_["val_nll"]:
                best = (layer, ts)
        self.layer_ = best[0]
        self.fit_info_.update(best[1].fit_info_, layer=best[0])
        return best[1]._params.copy()

    @property
    def layer(self) -> int:
        """Index of the chosen layer."""
        self._check_fitted()
        return self.layer_


class MCDropout(Calibrator):
    """Monte Carlo dropout around a calibrator: the predictive distribution is the mean over S dropout
    samples of the base calibrator's probabilities, and the base's parameters are fitted on the
    validation NLL of that mean (with the same fixed S samples). Inputs gain a leading S axis:
    (S, N, K) for TS/VS, (S, L, N, K) for LATES."""

    def __init__(self, base: Calibrator) -> None:
        if not isinstance(base, Calibrator) or isinstance(base, MCDropout):
            raise CalibrationInputError("MCDropout wraps one calibrator, e.g. MCDropout(TemperatureScaling())")
        if base._params is not None:
            raise CalibrationInputError("MCDropout needs an unfitted calibrator: it fits it on MC-averaged predictions")
        self.base = base
        base.mc = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"MC + {self.base.name}"

    @property
    def layered(self) -> bool:  # type: ignore[override]
        return self.base.layered

    @property
    def fit_info_(self) -> dict[str, Any]:  # type: ignore[override]
        return self.base.fit_info_

    def fit(self, logits: Any, labels: Any) -> MCDropout:
        """Fit the base calibrator on MC-averaged predictions; logits carry a leading sample axis."""
        self.base.fit(logits, labels)
        return self

    def transform(self, logits: Any) -> np.ndarray:
        """Log of the MC-averaged calibrated probabilities, (N, K)."""
        return self.base.transform(logits)

    @property
    def n_params(self) -> int:
        return self.base.n_params

    def __getattr__(self, item: str) -> Any:  # temperature, weights, ...
        if item == "base":
            raise AttributeError(item)
        return getattr(self.base, item)

    def __repr__(self) -> str:
        return f"MCDropout({self.base!r})"
