"""Calibration: metrics, temperature/vector scaling, layer-stack temperature scaling (LATES), MC dropout.

Theme of notebook 01 (Khalifa, Mozer, Sedghi, Neyshabur, Alabdulmohsin, *Layer-Stack Temperature
Scaling*, arXiv 2211.10193). The paper's full text was not available to us; LATES here is the
reconstruction of `shared/research/lates_calibration.md`: linear probes on globally pooled features of
the frozen network give per-layer logits z_1..z_{L-1}, the network's own logits are z_L, and

    q(y | x) = softmax( sum_l w_l z_l(x) ),   w_l = exp(theta_l) > 0,

with theta fitted by L-BFGS on the validation NLL, starting from the temperature-scaling solution
(w_L = 1/T, earlier weights ~ 0). Temperature scaling is the special case w_1 = ... = w_{L-1} = 0.

Contents
- metrics on logits or probabilities: accuracy, NLL, Brier, ECE (equal-width and equal-mass bins), MCE,
  classwise ECE, AUROC of confidence for correct-vs-incorrect, reliability-diagram data, bootstrap
  confidence intervals, paired tests across seeds;
- calibrators sharing one interface (`fit(val_logits, val_labels)`, `transform(test_logits)`):
  `Uncalibrated`, `TemperatureScaling`, `VectorScaling`, `LATES`, `EqualWeightLATES`, and `MCDropout(base)`
  which averages the base calibrator's probabilities over S dropout samples;
- per-layer features of any `nn.Module` through forward hooks and global average pooling, linear probes;
- the notebook's experiment: config, data with distribution shift, one seed end to end, tables, figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, ProfileConfig
from .core import ShammieError

__all__ = [
    # errors
    "CalibrationInputError",
    "NotFittedError",
    # metrics
    "to_probs",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "mce",
    "classwise_ece",
    "auroc_correct",
    "reliability_data",
    "calibration_metrics",
    "bootstrap_ci",
    "paired_test",
    # calibrators
    "Calibrator",
    "Uncalibrated",
    "TemperatureScaling",
    "VectorScaling",
    "LATES",
    "EqualWeightLATES",
    "MCDropout",
    # features and probes
    "layer_features",
    "layer_outputs",
    "LayerOutputs",
    "dropout_only_in_head",
    "mc_dropout_mode",
    "LinearProbe",
    "fit_probe",
    "fit_probes",
    "stack_layer_logits",
    "resnet18_with_dropout",
    # experiment
    "LatesConfig",
    "CalibrationData",
    "SeedResult",
    "METHODS",
    "prepare_data",
    "build_backbone",
    "run_seed",
    "results_frame",
    "summary_table",
    "severity_table",
    "compare_methods",
    "corruption_table",
    "claim_measurements",
    "layer_names",
    # plots
    "plot_reliability",
    "plot_layers",
    "plot_severity",
    "plot_corruptions",
]


class CalibrationInputError(ShammieError, ValueError):
    """Logits, probabilities or labels that cannot be used as given; the message names the fix."""


class NotFittedError(ShammieError, ValueError):
    """A calibrator was used before `fit`."""


# =============================================================================================
# Input checks and probabilities


def _as_array(x: Any, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists
        raise CalibrationInputError(f"{name} must be an array of numbers: {err}") from err
    if arr.dtype == object:
        raise CalibrationInputError(f"{name} must be an array of numbers, got objects")
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def _check_labels(labels: Any, n: int, k: int) -> np.ndarray:
    y = _as_array(labels, "labels", dtype=None)
    if y.ndim != 1:
        raise CalibrationInputError(f"labels must be 1-D class indices of shape (N,), got shape {y.shape}")
    if len(y) != n:
        raise CalibrationInputError(
            f"logits and labels have different lengths ({n} vs {len(y)}): pass one label per row of logits")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise CalibrationInputError("labels must be integer class indices, got non-integer values")
    elif y.dtype.kind not in "iub":
        raise CalibrationInputError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if n and (y.min() < 0 or y.max() >= k):
        raise CalibrationInputError(
            f"labels out of range: found {int(y.min())}..{int(y.max())}, but the scores have {k} classes "
            f"(labels must be in 0..{k - 1})")
    return y


def _check_scores(scores: Any, name: str = "logits") -> np.ndarray:
    s = _as_array(scores, name)
    if s.ndim != 2:
        raise CalibrationInputError(f"{name} must have shape (N, K) (one row per example), got shape {s.shape}")
    if s.shape[0] == 0:
        raise CalibrationInputError(f"{name} is empty: need at least one example")
    if s.shape[1] < 2:
        raise CalibrationInputError(f"{name} needs at least 2 classes (columns), got {s.shape[1]}")
    if not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise CalibrationInputError(
            f"{name} contains {bad} NaN or infinite value(s): check the model's outputs (a diverged run?)")
    return s


def _is_probs(s: np.ndarray) -> bool:
    head = s[:256]
    if head.min() < 0 or head.max() > 1 or not np.allclose(head.sum(1), 1.0, atol=1e-4):
        return False
    return bool(s.min() >= 0 and s.max() <= 1 and np.allclose(s.sum(1), 1.0, atol=1e-4))


def _resolve_kind(s: np.ndarray, kind: str) -> str:
    if kind not in ("auto", "logits", "probs"):
        raise CalibrationInputError(f"kind must be 'auto', 'logits' or 'probs', got {kind!r}")
    if kind == "auto":
        return "probs" if _is_probs(s) else "logits"
    if kind == "probs" and not _is_probs(s):
        raise CalibrationInputError(
            "kind='probs' but the rows are not probabilities (each in [0, 1], summing to 1): pass kind='logits'")
    return kind


def _prepare(scores: Any, labels: Any, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    s = _check_scores(scores)
    y = _check_labels(labels, s.shape[0], s.shape[1])
    return s, y, _resolve_kind(s, kind)


def _softmax(z: np.ndarray) -> np.ndarray:
    p = z - z.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


def to_probs(scores: Any, kind: str = "auto") -> np.ndarray:
    """Probabilities (N, K) float64 from logits or probabilities.

    `kind="auto"` treats `scores` as probabilities when every row lies in [0, 1] and sums to 1
    (within 1e-4), else as logits (softmax applied). Pass `kind` explicitly when in doubt.
    """
    s = _check_scores(scores, "scores")
    return s.copy() if _resolve_kind(s, kind) == "probs" else _softmax(s.copy())


def _conf_pred(s: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and predicted class, without forming the full softmax for logits."""
    pred = s.argmax(axis=1)
    if kind == "probs":
        return s[np.arange(len(s)), pred], pred
    top = s[np.arange(len(s)), pred]
    e = s - top[:, None]
    np.exp(e, out=e)
    return 1.0 / e.sum(axis=1), pred


def _log_probs_of_labels(s: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    rows = np.arange(len(s))
    if kind == "probs":
        return np.log(np.clip(s[rows, y], 1e-300, None))
    m = s.max(axis=1)
    e = s - m[:, None]
    np.exp(e, out=e)
    return s[rows, y] - m - np.log(e.sum(axis=1))


# =============================================================================================
# Metrics


def accuracy(scores: Any, labels: Any) -> float:
    """Fraction of examples whose highest score is the label (logits or probabilities)."""
    s = _check_scores(scores)
    y = _check_labels(labels, *s.shape)
    return float(np.mean(s.argmax(1) == y))


def nll(scores: Any, labels: Any, kind: str = "auto") -> float:
    """Negative log-likelihood -mean_i log p(y_i | x_i) (natural log); from logits via log-softmax."""
    s, y, kind = _prepare(scores, labels, kind)
    return float(-np.mean(_log_probs_of_labels(s, y, kind)))


def brier(scores: Any, labels: Any, kind: str = "auto") -> float:
    """Multiclass Brier score mean_i sum_k (p_ik - 1[y_i = k])^2 (range 0..2)."""
    s, y, kind = _prepare(scores, labels, kind)
    p = s.copy() if kind == "probs" else _softmax(s.copy())
    p[np.arange(len(y)), y] -= 1.0
    return float(np.mean(np.einsum("ij,ij->i", p, p)))


def _bin_index(conf: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    if binning == "width":
        # bins ((m-1)/M, m/M]; a confidence of exactly 0 goes to the first bin, 1 to the last
        return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    if binning == "mass":
        # equal-mass bins: sort by confidence and split into n_bins groups of (nearly) equal size
        order = np.argsort(conf, kind="stable")
        idx = np.empty(len(conf), dtype=np.int64)
        idx[order] = (np.arange(len(conf)) * n_bins) // len(conf)
        return idx
    raise CalibrationInputError(f"binning must be 'width' (equal-width) or 'mass' (equal-mass), got {binning!r}")


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise CalibrationInputError(f"n_bins must be a positive int, got {n_bins!r}")


def _binned(conf: np.ndarray, hit: np.ndarray, n_bins: int, binning: str):
    _check_bins(n_bins)
    idx = _bin_index(conf, n_bins, binning)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(idx, weights=hit, minlength=n_bins)
    return idx, count, sum_conf, sum_hit


def ece(scores: Any, labels: Any, n_bins: int = 15, binning: str = "width", kind: str = "auto") -> float:
    """Top-label expected calibration error sum_m |B_m|/n |acc(B_m) - conf(B_m)|.

    `binning="width"`: n_bins equal-width bins ((m-1)/M, m/M] (Guo et al. 2017; torchmetrics uses
    [lower, upper), which differs only for confidences exactly on an edge). `binning="mass"`:
    n_bins bins holding equal numbers of examples (quantiles of the confidence).
    """
    s, y, kind = _prepare(scores, labels, kind)
    conf, pred = _conf_pred(s, kind)
    _, count, sum_conf, sum_hit = _binned(conf, (pred == y).astype(np.float64), n_bins, binning)
    return float(np.abs(sum_hit - sum_conf).sum() / len(y))


def mce(scores: Any, labels: Any, n_bins: int = 15, binning: str = "width", kind: str = "auto") -> float:
    """Maximum calibration error: the largest |acc(B_m) - conf(B_m)| over non-empty bins."""
    s, y, kind = _prepare(scores, labels, kind)
    conf, pred = _conf_pred(s, kind)
    _, count, sum_conf, sum_hit = _binned(conf, (pred == y).astype(np.float64), n_bins, binning)
    full = count > 0
    return float(np.max(np.abs(sum_hit[full] - sum_conf[full]) / count[full]))


def classwise_ece(scores: Any, labels: Any, n_bins: int = 15, kind: str = "auto") -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the equal-width-binned
    sum_m |B_mk|/n |mean 1[y = k] - mean p_k| over the bins B_mk of p_k."""
    s, y, kind = _prepare(scores, labels, kind)
    _check_bins(n_bins)
    p = s if kind == "probs" else _softmax(s.copy())
    n, k = p.shape
    idx = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # (N, K)
    flat = idx + n_bins * np.arange(k)[None, :]
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    sum_p = np.bincount(flat.ravel(), weights=p.ravel(), minlength=n_bins * k)
    sum_y = np.bincount(flat.ravel(), weights=onehot.ravel(), minlength=n_bins * k)
    return float(np.abs(sum_y - sum_p).sum() / (n * k))


def auroc_correct(scores: Any, labels: Any, kind: str = "auto") -> float:
    """AUROC of the top-label confidence for telling correct from incorrect predictions
    ("calibration AUC"); NaN when every prediction is right or every one is wrong.

    Computed as the Mann-Whitney statistic (ties count one half), which equals
    `sklearn.metrics.roc_auc_score(correct, confidence)` (tested) at a fraction of its overhead.
    """
    s, y, kind = _prepare(scores, labels, kind)
    conf, pred = _conf_pred(s, kind)
    return _auroc(conf, pred == y)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_data(scores: Any, labels: Any, n_bins: int = 15, binning: str = "width", kind: str = "auto"):
    """Per-bin data of a reliability diagram as a DataFrame: lower, upper, count, confidence, accuracy, gap.

    Empty bins have count 0 and NaN confidence/accuracy. For equal-mass bins, lower/upper are the
    smallest and largest confidence in the bin.
    """
    import pandas as pd

    s, y, kind = _prepare(scores, labels, kind)
    conf, pred = _conf_pred(s, kind)
    idx, count, sum_conf, sum_hit = _binned(conf, (pred == y).astype(np.float64), n_bins, binning)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, sum_hit / np.maximum(count, 1), np.nan)
    if binning == "width":
        lower = np.arange(n_bins) / n_bins
        upper = np.arange(1, n_bins + 1) / n_bins
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        for b in range(n_bins):
            sel = conf[idx == b]
            if len(sel):
                lower[b], upper[b] = sel.min(), sel.max()
    return pd.DataFrame({"lower": lower, "upper": upper, "count": count.astype(np.int64),
                         "confidence": mean_conf, "accuracy": mean_acc, "gap": mean_acc - mean_conf})


def calibration_metrics(scores: Any, labels: Any, n_bins: int = 15, kind: str = "auto") -> dict[str, float]:
    """All metrics at once: acc, nll, brier, ece (equal-width), ece_mass (equal-mass), mce, cw_ece, auroc."""
    s, y, kind = _prepare(scores, labels, kind)
    p = s.copy() if kind == "probs" else _softmax(s.copy())
    return {
        "acc": accuracy(p, y),
        "nll": nll(s, y, kind=kind),
        "brier": brier(p, y, kind="probs"),
        "ece": ece(p, y, n_bins, "width", kind="probs"),
        "ece_mass": ece(p, y, n_bins, "mass", kind="probs"),
        "mce": mce(p, y, n_bins, "width", kind="probs"),
        "cw_ece": classwise_ece(p, y, n_bins, kind="probs"),
        "auroc": auroc_correct(p, y, kind="probs"),
    }


def bootstrap_ci(metric: Callable[..., float], *arrays: Any, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap of `metric(*arrays)`: rows of all arrays are resampled together (paired).

    Returns {"estimate", "low", "high", "std"}: the metric on the full data, the alpha/2 and 1-alpha/2
    quantiles and the standard deviation of the bootstrap replicates.
    """
    if not arrays:
        raise CalibrationInputError("bootstrap_ci needs at least one array to resample")
    if not 0 < alpha < 1:
        raise CalibrationInputError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 2:
        raise CalibrationInputError(f"n_boot must be at least 2, got {n_boot}")
    arrs = [_as_array(a, f"array {i}", dtype=None) for i, a in enumerate(arrays)]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise CalibrationInputError(f"arrays to bootstrap have different lengths: {[len(a) for a in arrs]}")
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        reps[b] = metric(*(a[idx] for a in arrs))
    lo, hi = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
    return {"estimate": float(metric(*arrs)), "low": float(lo), "high": float(hi), "std": float(np.nanstd(reps))}


def paired_test(a: Sequence[float], b: Sequence[float], higher_is_better: bool = False) -> dict[str, float]:
    """Paired comparison of matched measurements `a` and `b` (e.g. per seed).

    Returns n, mean_a, mean_b, mean_diff (a - b), sd_diff, wins (pairs where a is strictly better:
    a < b, or a > b with `higher_is_better`), the paired t-test's two-sided p (`p_t`) and the
    Wilcoxon signed-rank two-sided p (`p_wilcoxon`); p values are NaN when every difference is zero
    or n < 2.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise CalibrationInputError(f"paired_test needs two 1-D sequences of equal length, got {a.shape} and {b.shape}")
    d = a - b
    out = {"n": int(len(d)), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_diff": float(d.mean()),
           "sd_diff": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
           "wins": int(np.sum(d > 0)) if higher_is_better else int(np.sum(d < 0)),
           "p_t": float("nan"), "p_wilcoxon": float("nan")}
    if len(d) >= 2 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if d.std() > 0:
                out["p_t"] = float(stats.ttest_rel(a, b).pvalue)
            out["p_wilcoxon"] = float(stats.wilcoxon(a, b).pvalue)
    return out


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


class Calibrator:
    """Post-hoc calibration map fitted on validation data.

    `fit(logits, labels)` learns the map on validation logits; `transform(logits)` returns calibrated
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


# =============================================================================================
# Per-layer features, MC dropout mode, linear probes


def _pool(h: torch.Tensor) -> torch.Tensor:
    """Global average pooling over every axis after the channel axis; (N, C) stays as is."""
    return h.flatten(2).mean(dim=-1) if h.dim() > 2 else h.reshape(h.shape[0], -1)


class _Taps:
    """Forward hooks that keep the pooled output of each layer during one forward pass.

    A layer that is an nn.Sequential is also tapped at its last child: containers that the model
    never calls as a whole (e.g. a stem listed as Sequential(conv1, bn1, relu) while forward calls
    conv1, bn1, relu one by one) are then still seen.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = list(layers)
        self.out: list[torch.Tensor | None] = [None] * len(self.layers)
        self.fallback: list[torch.Tensor | None] = [None] * len(self.layers)
        self.handles = []

    def __enter__(self):
        for i, layer in enumerate(self.layers):
            self.handles.append(layer.register_forward_hook(self._hook(i, self.out)))
            if isinstance(layer, nn.Sequential) and len(layer):
                self.handles.append(layer[-1].register_forward_hook(self._hook(i, self.fallback)))
        return self

    @staticmethod
    def _hook(i, store):
        def hook(module, inputs, output):
            store[i] = _pool(output.detach())

        return hook

    def collect(self) -> list[torch.Tensor]:
        feats = []
        for i, (a, b) in enumerate(zip(self.out, self.fallback)):
            h = a if a is not None else b
            if h is None:
                raise ShammieError(f"layer {i} ({type(self.layers[i]).__name__}) was never called in forward: "
                                   "pass the modules that forward actually runs as layers=[...]")
            feats.append(h)
        for store in (self.out, self.fallback):  # in place: the hooks hold these lists
            store[:] = [None] * len(self.layers)
        return feats

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


@contextmanager
def mc_dropout_mode(model: nn.Module):
    """Evaluation mode for everything except dropout layers, which sample masks (MC dropout).
    BatchNorm keeps its running statistics. The model's previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    for m in drops:
        m.train()
    try:
        yield len(drops)
    finally:
        model.train(was_training)


@torch.no_grad()
def layer_features(model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module] | None = None,
                   batch_size: int = 1024, device: torch.device | str | None = None,
                   mc_dropout: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Globally average-pooled outputs of `layers` (default `model.blocks`) and the model's logits on `x`.

    Returns (features, logits): features[l] has shape (N, C_l), logits (N, K), all float32 on the CPU.
    The model runs in eval mode, or with dropout sampling one mask per example when `mc_dropout=True`
    (seed torch first for reproducible masks).
    """
    layers = _default_layers(model, layers)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    feats: list[list[torch.Tensor]] = [[] for _ in layers]
    logits = []
    ctx = mc_dropout_mode(model) if mc_dropout else _eval_mode(model)
    with ctx, _Taps(layers) as taps:
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size].to(device))
            logits.append(out.float().cpu())
            for store, h in zip(feats, taps.collect()):
                store.append(h.float().cpu())
    return [torch.cat(f) for f in feats], torch.cat(logits)


def _default_layers(model: nn.Module, layers: Sequence[nn.Module] | None) -> list[nn.Module]:
    if layers is None:
        if not hasattr(model, "blocks"):
            raise ShammieError(f"{type(model).__name__} has no `blocks`: pass layers=[module, ...] to tap")
        layers = list(model.blocks)
    if len(layers) == 0:
        raise ShammieError("no layers to tap: pass at least one module")
    return list(layers)


def dropout_only_in_head(model: nn.Module) -> bool:
    """True when the model has dropout layers and all of them sit inside `model.head`: then everything
    before the head is deterministic and MC dropout only needs to resample the head."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        return False
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    inside = {id(m) for m in head.modules()}
    return bool(drops) and all(id(m) in inside for m in drops)


@dataclass
class LayerOutputs:
    """Pooled per-layer features and logits in eval mode, and their MC-dropout samples.

    features[l]: (N, C_l); logits: (N, K); mc_features[l]: (S, N, C_l); mc_logits: (S, N, K).
    """

    features: list[torch.Tensor]
    logits: torch.Tensor
    mc_features: list[torch.Tensor] | None = None
    mc_logits: torch.Tensor | None = None


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor, mc_samples: int = 0, layers: Sequence[nn.Module] | None = None,
                  batch_size: int = 1024, device: torch.device | str | None = None) -> LayerOutputs:
    """`layer_features` in eval mode plus `mc_samples` MC-dropout passes (seed torch first).

    When every dropout layer is inside `model.head` (see `dropout_only_in_head`) the network before the
    head runs once and only the head is resampled: the same distribution at a fraction of the cost.
    """
    layers = _default_layers(model, layers)
    if mc_samples <= 0:
        feats, logits = layer_features(model, x, layers, batch_size, device)
        return LayerOutputs(feats, logits)
    if not dropout_only_in_head(model):
        feats, logits = layer_features(model, x, layers, batch_size, device)
        runs = [layer_features(model, x, layers, batch_size, device, mc_dropout=True) for _ in range(mc_samples)]
        mc_feats = [torch.stack([r[0][i] for r in runs]) for i in range(len(layers))]
        return LayerOutputs(feats, logits, mc_feats, torch.stack([r[1] for r in runs]))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    captured: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    try:
        feats, logits = layer_features(model, x, layers, batch_size, device)
    finally:
        handle.remove()
    with mc_dropout_mode(model):
        mc_logits = torch.stack([torch.cat([model.head(h).float().cpu() for h in captured]) for _ in range(mc_samples)])
    mc_feats = [f.unsqueeze(0).expand(mc_samples, *f.shape) for f in feats]
    return LayerOutputs(feats, logits, mc_feats, mc_logits)


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@dataclass
class LinearProbe:
    """A multinomial logistic-regression probe on standardised pooled features: W (f - mean)/std + b."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (K, C)
    bias: torch.Tensor  # (K,)
    train_acc: float = float("nan")

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Probe logits (..., N, K), float64, from features (..., N, C)."""
        if features.dim() == 3 and features.stride(0) == 0:  # the same features for every MC sample
            return self.logits(features[0]).unsqueeze(0).expand(features.shape[0], -1, -1)
        f = (features.to(torch.float64) - self.mean) / self.std
        return f @ self.weight.T + self.bias


def fit_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-3,
              max_iter: int = 500) -> LinearProbe:
    """Train a linear probe by full-batch L-BFGS in float64 on mean cross-entropy + l2/2 ||W||^2.

    Features are standardised with their own mean and standard deviation (kept in the probe).
    """
    f = _to_tensor(features, "features")
    if f.dim() != 2:
        raise CalibrationInputError(f"features must have shape (N, C), got {tuple(f.shape)}")
    y = torch.from_numpy(_check_labels(labels, f.shape[0], num_classes))
    mean = f.mean(0)
    std = f.std(0).clamp_min(1e-6)
    fs = (f - mean) / std
    n_feat = f.shape[1]

    def loss(p: torch.Tensor) -> torch.Tensor:
        w = p[: num_classes * n_feat].view(num_classes, n_feat)
        b = p[num_classes * n_feat:]
        return F.cross_entropy(fs @ w.T + b, y) + 0.5 * l2 * (w ** 2).sum()

    x, _ = _lbfgs(_autograd_fun(loss), np.zeros(num_classes * (n_feat + 1)), max_iter=max_iter, gtol=1e-6)
    p = torch.from_numpy(x)
    probe = LinearProbe(mean, std, p[: num_classes * n_feat].view(num_classes, n_feat).clone(),
                        p[num_classes * n_feat:].clone())
    probe.train_acc = float((probe.logits(f).argmax(1) == y).double().mean())
    return probe


def fit_probes(features: Sequence[torch.Tensor], labels: torch.Tensor, num_classes: int,
               l2: float = 1e-3, max_iter: int = 500) -> list[LinearProbe]:
    """One `fit_probe` per layer's features."""
    return [fit_probe(f, labels, num_classes, l2=l2, max_iter=max_iter) for f in features]


def stack_layer_logits(probes: Sequence[LinearProbe], features: Sequence[torch.Tensor],
                       network_logits: torch.Tensor) -> torch.Tensor:
    """Per-layer logits (L, N, K) float64: each probe on its layer's features, then the network's logits.
    With MC samples (features (S, N, C_l), logits (S, N, K)) the result is (S, L, N, K).

    `features` may hold more layers than `probes` (e.g. the last block, which feeds the head); the
    first len(probes) are used.
    """
    if len(features) < len(probes):
        raise CalibrationInputError(f"{len(probes)} probes but only {len(features)} feature arrays")
    rows = [p.logits(f) for p, f in zip(probes, features)]
    rows.append(network_logits.to(torch.float64))
    return torch.stack(rows, dim=-3)


def resnet18_with_dropout(num_classes: int = 10, dropout: float = 0.1, every_stage: bool = True) -> nn.Module:
    """The workbook's CIFAR ResNet-18 (`shammie.models.cifar_resnet18`) with dropout after each residual
    stage (or, with `every_stage=False`, after the last only), so MC dropout has masks to sample.
    `model.blocks` = stem, stage 1..4 (the taps for probes)."""
    from .models import cifar_resnet18

    model = cifar_resnet18(num_classes)
    if dropout > 0:
        for name in ("layer1", "layer2", "layer3", "layer4") if every_stage else ("layer4",):
            setattr(model, name, nn.Sequential(getattr(model, name), nn.Dropout(dropout)))
    model.blocks = nn.ModuleList([nn.Sequential(model.conv1, model.bn1, model.relu),
                                  model.layer1, model.layer2, model.layer3, model.layer4])
    return model


# =============================================================================================
# The notebook's experiment

#: the methods compared, in table order: name -> (calibrator factory, input kind)
METHODS: dict[str, tuple[Callable[[], Calibrator], str]] = {
    "uncalibrated": (Uncalibrated, "last"),
    "TS": (TemperatureScaling, "last"),
    "VS": (VectorScaling, "last"),
    "LATES": (LATES, "layers"),
    "LATES (equal)": (EqualWeightLATES, "layers"),
    "MC + TS": (lambda: MCDropout(TemperatureScaling()), "mc_last"),
    "MC + LATES": (lambda: MCDropout(LATES()), "mc_layers"),
}

CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)


@dataclass(frozen=True)
class LatesConfig(ProfileConfig):
    """Knobs of notebook 01. Defaults are the quick profile (MNIST-1D, 1D CNN, CPU)."""

    dataset: str = "mnist1d"  # mnist1d | cifar10
    num_samples: int = 7000  # MNIST-1D examples generated (train + validation + test)
    test_size: int = 2000  # MNIST-1D test examples (CIFAR-10: its 10000 test images)
    val_size: int = 2000  # validation examples held out of the training part, for calibration
    channels: tuple[int, ...] = (32, 32, 32, 32)  # 1D CNN widths, one per block
    strides: tuple[int, ...] = (1, 2, 2, 2)
    kernel_size: int = 5
    dropout: float = 0.1
    dropout_blocks: str = "last"  # last: dropout on the last block's output only | all: after every block
    epochs: int = 25
    lr: float = 1e-2
    batch_size: int = 128
    optimizer: str = "adam"
    weight_decay: float = 0.0  # none: the network should come out overconfident
    schedule: str = "none"
    augment: bool = False  # CIFAR-10 crop + flip augmentation
    seeds: int = 5
    mc_samples: int = 10  # dropout samples S for MC dropout
    corruptions: tuple[str, ...] = ("gaussian_noise", "shift", "scale", "mask")
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    ood_size: int = 1000  # test examples corrupted per (corruption, severity); 0 = all
    n_bins: int = 15
    probe_l2: float = 1e-3
    bootstrap: int = 200  # bootstrap replicates for the per-seed CI of the ECE difference
    eval_batch_size: int = 2048

    PROFILES: ClassVar[dict] = {
        "smoke": {"num_samples": 1500, "test_size": 500, "val_size": 500, "epochs": 2, "seeds": 2, "mc_samples": 3,
                  "ood_size": 150, "bootstrap": 20, "channels": (16, 16, 16, 16)},
        "quick": {},
        "full": {"dataset": "cifar10", "val_size": 5000, "dropout": 0.1, "dropout_blocks": "all", "epochs": 100, "lr": 0.1,
                 "batch_size": 128, "optimizer": "sgd", "weight_decay": 5e-4, "schedule": "cosine",
                 "augment": True, "seeds": 5, "mc_samples": 30, "corruptions": CIFAR10C_CORRUPTIONS,
                 "ood_size": 2000, "bootstrap": 1000, "eval_batch_size": 1000},
    }

    def validate(self) -> None:
        from .data import CORRUPTIONS

        if self.dataset not in ("mnist1d", "cifar10"):
            raise ConfigError(f"dataset must be 'mnist1d' or 'cifar10', got {self.dataset!r}")
        if self.dataset == "mnist1d":
            if self.test_size < 50 or self.val_size < 50 or self.num_samples - self.test_size - self.val_size < 100:
                raise ConfigError(
                    f"num_samples={self.num_samples} must leave at least 100 training examples after test_size="
                    f"{self.test_size} and val_size={self.val_size} (each at least 50)")
            unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
            if unknown:
                raise ConfigError(f"unknown corruption(s) {unknown} for MNIST-1D; choose from {', '.join(CORRUPTIONS)}")
            if len(self.channels) < 2:
                raise ConfigError("the CNN needs at least 2 blocks (probes go on all but the last)")
            if len(self.strides) != len(self.channels):
                raise ConfigError(f"strides ({len(self.strides)}) and channels ({len(self.channels)}) differ in length")
        if self.dataset == "cifar10" and not 100 <= self.val_size < 50000:
            raise ConfigError(f"val_size must be in 100..49999 for CIFAR-10, got {self.val_size}")
        if self.dropout_blocks not in ("last", "all"):
            raise ConfigError(f"dropout_blocks must be 'last' or 'all', got {self.dropout_blocks!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mc_samples >= 1 and self.dropout == 0:
            raise ConfigError("MC dropout needs dropout > 0: set dropout (e.g. 0.1)")
        for name in ("epochs", "seeds", "batch_size", "n_bins", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mc_samples < 2:
            raise ConfigError(f"mc_samples must be >= 2 (an average over dropout samples), got {self.mc_samples}")
        if not self.corruptions:
            raise ConfigError("give at least one corruption for the distribution-shift experiment")
        if not self.severities or any(s not in (1, 2, 3, 4, 5) for s in self.severities):
            raise ConfigError(f"severities must be a non-empty subset of 1..5, got {self.severities}")
        if self.ood_size < 0 or self.bootstrap < 2 or self.lr <= 0 or self.probe_l2 < 0:
            raise ConfigError("ood_size >= 0, bootstrap >= 2, lr > 0 and probe_l2 >= 0 are required")


@dataclass
class CalibrationData:
    """Train / validation / test tensors and shifted test sets {(corruption, severity): (x, y)}."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ood: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    name: str
    ood_source: str = "synthetic"
    train_loader: Any = None  # a DataLoader with augmentation, when the profile asks for it
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"CalibrationData({self.name}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
                f"{len(self.ood)} shifted sets from {self.ood_source})")


def prepare_data(cfg: LatesConfig, split_seed: int = 0) -> CalibrationData:
    """The data of one experiment: train/validation split (fixed by `split_seed`), test set, and the
    test set under each corruption and severity (MNIST-1D: `shammie.data.corrupt`; CIFAR-10:
    CIFAR-10-C files under data/CIFAR-10-C when present, else the synthetic corruptions)."""
    from .data import corrupt, load_mnist1d, train_val_split

    if cfg.dataset == "mnist1d":
        d = load_mnist1d(num_samples=cfg.num_samples, train_split=(cfg.num_samples - cfg.test_size) / cfg.num_samples)
        x_tr, y_tr, x_val, y_val = train_val_split(d.x_train, d.y_train, cfg.val_size / len(d.y_train), seed=split_seed)
        x_test, y_test = d.x_test, d.y_test
        n = len(y_test) if cfg.ood_size == 0 else min(cfg.ood_size, len(y_test))
        ood = {(c, s): (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
               for c in cfg.corruptions for s in cfg.severities}
        return CalibrationData(x_tr, y_tr, x_val, y_val, x_test, y_test, ood, d.num_classes, d.name)
    return _prepare_cifar10(cfg, split_seed)


def _dataset_tensors(ds, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _prepare_cifar10(cfg: LatesConfig, split_seed: int) -> CalibrationData:
    from .core import data_dir
    from .data import CIFAR10_MEAN, CIFAR10_STD, CORRUPTIONS, corrupt, load_cifar10, train_val_split

    plain = load_cifar10(train=True, augment=False)
    x_all, y_all = _dataset_tensors(plain)
    idx_tr, y_tr, idx_val, y_val = train_val_split(torch.arange(len(y_all)), y_all, cfg.val_size / len(y_all),
                                                   seed=split_seed)
    x_test, y_test = _dataset_tensors(load_cifar10(train=False))
    loader = None
    if cfg.augment:
        augmented = torch.utils.data.Subset(load_cifar10(train=True, augment=True), idx_tr.tolist())
        loader = torch.utils.data.DataLoader(augmented, batch_size=cfg.batch_size, shuffle=True, num_workers=4,
                                             generator=torch.Generator().manual_seed(split_seed), drop_last=False)
    n = len(y_test) if cfg.ood_size == 0 else min(cfg.ood_size, len(y_test))
    folder = data_dir() / "CIFAR-10-C"
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    ood, notes, sources = {}, [], set()
    if not (folder / "labels.npy").exists():
        fallback = ("gaussian_noise", "shift", "scale", "mask")
        notes.append(f"CIFAR-10-C not found under {folder} (labels.npy missing): using the synthetic corruptions "
                     f"{', '.join(fallback)} instead")
        for c in fallback:
            for s in cfg.severities:
                ood[(c, s)] = (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
        sources.add("synthetic")
    else:
        labels_c = np.load(folder / "labels.npy")
        for c in cfg.corruptions:
            path = folder / f"{c}.npy"
            if not path.exists() and c not in CORRUPTIONS:
                notes.append(f"{c}: no {path} and no synthetic version; skipped")
                continue
            for s in cfg.severities:
                rows = slice((s - 1) * 10000, (s - 1) * 10000 + n)
                if path.exists():
                    arr = np.array(np.load(path, mmap_mode="r")[rows])  # a writable copy
                    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
                    ood[(c, s)] = ((x - mean) / std, torch.from_numpy(labels_c[rows]).long())
                    sources.add("CIFAR-10-C")
                else:
                    ood[(c, s)] = (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
                    sources.add("synthetic")
        if not ood:
            raise ShammieError(f"no usable corruption among {cfg.corruptions} in {folder}")
    return CalibrationData(x_all[idx_tr], y_tr, x_all[idx_val], y_val, x_test, y_test, ood, 10, "CIFAR-10",
                           ood_source=" + ".join(sorted(sources)), train_loader=loader, notes=notes)


def build_backbone(cfg: LatesConfig, data: CalibrationData) -> nn.Module:
    """The network of the profile: a 1D CNN with dropout (MNIST-1D) or ResNet-18 with dropout (CIFAR-10)."""
    from .models import CNN1d

    if cfg.dataset == "mnist1d":
        everywhere = cfg.dropout_blocks == "all"
        model = CNN1d(data.x_train.shape[-1], data.num_classes, channels=cfg.channels, kernel_size=cfg.kernel_size,
                      strides=cfg.strides, dropout=cfg.dropout if everywhere else 0.0, head="flatten")
        if not everywhere and cfg.dropout > 0:  # dropout on the last block's (flattened) output
            model.head = nn.Sequential(nn.Dropout(cfg.dropout), model.head)
        return model
    return resnet18_with_dropout(data.num_classes, cfg.dropout, every_stage=cfg.dropout_blocks == "all")


def layer_names(cfg: LatesConfig) -> list[str]:
    """Names of the LATES layers: the probed blocks, then the network's own logits."""
    if cfg.dataset == "mnist1d":
        return [f"block {i + 1}" for i in range(len(cfg.channels) - 1)] + ["network"]
    return ["stem", "stage 1", "stage 2", "stage 3", "network"]


@dataclass
class SeedResult:
    """Everything one seed produced: metric rows, fitted parameters, probe accuracies, test predictions."""

    seed: int
    rows: list[dict[str, Any]]
    temperature: float
    lates_weights: np.ndarray
    mc_lates_weights: np.ndarray
    mc_temperature: float
    probe_acc: dict[str, np.ndarray]  # split -> accuracy per layer (last = network)
    test_logits: dict[str, np.ndarray]  # method -> calibrated test logits
    y_test: np.ndarray
    ece_diff_ci: dict[str, float]  # bootstrap CI of test ECE(LATES) - ECE(TS)
    fit_info: dict[str, dict[str, Any]]
    history: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _method_inputs(kind: str, det: torch.Tensor, mc: torch.Tensor) -> torch.Tensor:
    return {"last": det[-1], "layers": det, "mc_last": mc[:, -1], "mc_layers": mc}[kind]


def _all_layer_logits(model, probes, x, cfg, device, mc_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic per-layer logits (L, N, K) and MC ones (S, L, N, K) on x."""
    torch.manual_seed(mc_seed)
    out = layer_outputs(model, x, mc_samples=cfg.mc_samples, batch_size=cfg.eval_batch_size, device=device)
    det = stack_layer_logits(probes, out.features, out.logits)
    mc = stack_layer_logits(probes, out.mc_features, out.mc_logits)
    return det, mc


def run_seed(cfg: LatesConfig, data: CalibrationData, seed: int, device: torch.device | str = "cpu",
             cache: bool = True, show_progress: bool = True) -> SeedResult:
    """One seed end to end: train the backbone (cached), fit the probes on the training split, fit every
    calibrator of METHODS on the validation split, and evaluate on test and every shifted test set."""
    import time

    from .training import fit_cached

    timings = {}
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = build_backbone(cfg, data)
    train = data.train_loader if data.train_loader is not None else (data.x_train, data.y_train)
    key = None
    if cache and data.train_loader is None:
        key = {"theme": "01_calibration_lates", "data": data.name, "n_train": len(data.y_train),
               "n_val": len(data.y_val), "n_test": len(data.y_test), "seed": seed}
    history = fit_cached(model, train, cache_key=key, tag="lates-backbone", val=(data.x_val, data.y_val),
                         epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                         weight_decay=cfg.weight_decay, schedule=cfg.schedule, seed=seed, device=device,
                         desc=f"seed {seed}", show_progress=show_progress, log_every=cfg.epochs)
    model.eval()
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    feats_tr, _ = layer_features(model, data.x_train, batch_size=cfg.eval_batch_size, device=device)
    n_probe = len(feats_tr) - 1  # the last block feeds the head: its vote is the network's logits
    probes = fit_probes(feats_tr[:n_probe], data.y_train, data.num_classes, l2=cfg.probe_l2)
    timings["probes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mc_base = 10_000 * seed
    det_val, mc_val = _all_layer_logits(model, probes, data.x_val, cfg, device, mc_base)
    y_val = data.y_val.numpy()
    fitted: dict[str, Calibrator] = {}
    for name, (factory, kind) in METHODS.items():
        fitted[name] = factory().fit(_method_inputs(kind, det_val, mc_val), y_val)
    timings["calibrate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    probe_acc: dict[str, np.ndarray] = {}
    test_logits: dict[str, np.ndarray] = {}
    sets = [("val", None, 0, None), ("test", None, 0, (data.x_test, data.y_test))]
    sets += [("shift", c, s, xy) for (c, s), xy in data.ood.items()]
    for i, (split, corruption, severity, xy) in enumerate(sets):
        if split == "val":
            det, mc, y = det_val, mc_val, y_val
        else:
            det, mc = _all_layer_logits(model, probes, xy[0], cfg, device, mc_base + 1 + i)
            y = xy[1].numpy()
        if split in ("val", "test"):
            probe_acc[split] = (det.argmax(-1).numpy() == y[None, :]).mean(axis=1)
        for name, (_, kind) in METHODS.items():
            out = fitted[name].transform(_method_inputs(kind, det, mc))
            m = calibration_metrics(out, y, n_bins=cfg.n_bins, kind="logits")
            rows.append({"seed": seed, "method": name, "split": split, "corruption": corruption or "none",
                         "severity": severity, **m})
            if split == "test":
                test_logits[name] = out
    timings["evaluate"] = time.perf_counter() - t0

    y_test = data.y_test.numpy()
    ci = bootstrap_ci(lambda a, b, yy: ece(a, yy, cfg.n_bins, kind="logits") - ece(b, yy, cfg.n_bins, kind="logits"),
                      test_logits["LATES"], test_logits["TS"], y_test, n_boot=cfg.bootstrap, seed=seed)
    return SeedResult(
        seed=seed, rows=rows, temperature=fitted["TS"].temperature, lates_weights=fitted["LATES"].weights,
        mc_lates_weights=fitted["MC + LATES"].weights, mc_temperature=fitted["MC + TS"].temperature,
        probe_acc=probe_acc, test_logits=test_logits, y_test=y_test, ece_diff_ci=ci,
        fit_info={k: dict(v.fit_info_) for k, v in fitted.items()}, history=history, timings=timings)


def results_frame(results: Sequence[SeedResult]):
    """All metric rows of all seeds as one DataFrame (seed, method, split, corruption, severity, metrics)."""
    import pandas as pd

    df = pd.DataFrame([r for res in results for r in res.rows])
    df["method"] = pd.Categorical(df["method"], categories=list(METHODS), ordered=True)
    return df


METRIC_COLUMNS = ("acc", "nll", "ece", "ece_mass", "brier", "auroc", "mce", "cw_ece")


def summary_table(df, split: str = "test", metrics: Sequence[str] = ("acc", "nll", "ece", "ece_mass", "brier", "auroc")):
    """Mean and standard deviation over seeds of each metric per method, on `split`
    ("val", "test", or "shift" = the mean over every corruption and severity first)."""
    sub = df[df["split"] == split]
    per_seed = sub.groupby(["method", "seed"], observed=True)[list(metrics)].mean()
    g = per_seed.groupby(level="method", observed=True)
    table = g.mean().add_suffix(" mean").join(g.std(ddof=1).add_suffix(" std"))
    return table[[f"{m} {s}" for m in metrics for s in ("mean", "std")]]


def severity_table(df, metric: str):
    """Mean of `metric` over seeds and corruptions per method (rows) and severity (columns; 0 = clean test)."""
    import pandas as pd

    clean = df[df["split"] == "test"].assign(severity=0)
    shifted = df[df["split"] == "shift"]
    both = pd.concat([clean, shifted])
    return both.pivot_table(index="method", columns="severity", values=metric, aggfunc="mean", observed=True)


HIGHER_IS_BETTER = {"acc": True, "auroc": True}


def compare_methods(df, a: str, b: str, metric: str, split: str = "test") -> dict[str, float]:
    """Paired test of method `a` against `b` on `metric`: per seed on "val"/"test"; on "shift", per
    (seed, corruption, severity). Returns `paired_test`'s dict ("wins": pairs where `a` is better)."""
    keys = ["seed"] if split != "shift" else ["seed", "corruption", "severity"]
    sub = df[df["split"] == split]
    pa = sub[sub["method"] == a].set_index(keys)[metric].sort_index()
    pb = sub[sub["method"] == b].set_index(keys)[metric].sort_index()
    if len(pa) == 0 or len(pb) == 0:
        raise CalibrationInputError(f"no rows for methods {a!r} / {b!r} on split {split!r}")
    return paired_test(pa.to_numpy(), pb.loc[pa.index].to_numpy(), HIGHER_IS_BETTER.get(metric, False))


def corruption_table(df, metric: str, a: str = "LATES", b: str = "TS"):
    """Mean over seeds of metric(a) - metric(b) per corruption (rows) and severity (columns)."""
    sub = df[df["split"] == "shift"]
    pa = sub[sub["method"] == a].set_index(["seed", "corruption", "severity"])[metric]
    pb = sub[sub["method"] == b].set_index(["seed", "corruption", "severity"])[metric]
    diff = (pa - pb.loc[pa.index]).rename("diff").reset_index()
    return diff.pivot_table(index="corruption", columns="severity", values="diff", aggfunc="mean")


def claim_measurements(df, results: Sequence[SeedResult]) -> dict[str, Any]:
    """The numbers the notebook's claims are judged on (means over seeds unless said otherwise):

    - val_nll_gap_max: max over seeds of validation NLL(LATES) - NLL(TS), from the fitted calibrators;
    - test_ece_diff / test_acc_diff / test_auroc_diff / test_nll_diff: LATES - TS on the test set;
    - shift_ece_diff_by_severity: per severity, mean over seeds and corruptions of ECE(LATES) - ECE(TS);
    - shift_acc_diff: LATES - TS accuracy over every shifted set;
    - mc_lates_nll_margin: test NLL(MC + LATES) - the lowest test NLL among the other methods, and
      best_nll_method, the method with the lowest mean test NLL.
    """
    gaps = [r.fit_info["LATES"]["val_nll"] - r.fit_info["TS"]["val_nll"] for r in results]
    test = df[df["split"] == "test"].groupby("method", observed=True)[list(METRIC_COLUMNS)].mean()
    by_sev = severity_table(df, "ece")
    sev = [s for s in by_sev.columns if s != 0]
    shift_ece = {int(s): float(by_sev.loc["LATES", s] - by_sev.loc["TS", s]) for s in sev}
    shift = df[df["split"] == "shift"].groupby("method", observed=True)["acc"].mean()
    others = test["nll"].drop("MC + LATES")
    tests = {k: compare_methods(df, "LATES", "TS", k, "test") for k in ("ece", "acc", "auroc")}
    return {
        "test_ece_p": tests["ece"]["p_t"], "test_ece_wins": tests["ece"]["wins"],
        "test_acc_p": tests["acc"]["p_t"], "test_acc_wins": tests["acc"]["wins"],
        "test_auroc_p": tests["auroc"]["p_t"], "test_auroc_wins": tests["auroc"]["wins"],
        "n_seeds": len(results),
        "val_nll_gap_max": float(max(gaps)),
        "test_ece_diff": float(test.loc["LATES", "ece"] - test.loc["TS", "ece"]),
        "test_acc_diff": float(test.loc["LATES", "acc"] - test.loc["TS", "acc"]),
        "test_auroc_diff": float(test.loc["LATES", "auroc"] - test.loc["TS", "auroc"]),
        "test_nll_diff": float(test.loc["LATES", "nll"] - test.loc["TS", "nll"]),
        "shift_ece_diff_by_severity": shift_ece,
        "shift_ece_diff_max": float(max(shift_ece.values())),
        "shift_acc_diff": float(shift.loc["LATES"] - shift.loc["TS"]),
        "mc_lates_nll_margin": float(test.loc["MC + LATES", "nll"] - others.min()),
        "best_nll_method": str(test["nll"].idxmin()),
    }


# =============================================================================================
# Figures of this theme


def plot_reliability(logits_by_method: dict[str, np.ndarray], labels: np.ndarray, n_bins: int = 15):
    """Reliability diagrams, one panel per method: accuracy per equal-width confidence bin (blue bars),
    the gap between accuracy and mean confidence (hatched red), the share of examples per bin (grey,
    bottom strip), ECE in the title. Bars below the diagonal are over-confident bins."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(logits_by_method), figsize=(3.7 * len(logits_by_method), 3.9),
                             sharey=True, squeeze=False)
    width = 1.0 / n_bins
    for ax, (name, z) in zip(axes[0], logits_by_method.items()):
        rd = reliability_data(z, labels, n_bins=n_bins, kind="logits")
        full = (rd["count"] > 0).to_numpy()
        centers = ((rd["lower"] + rd["upper"]) / 2).to_numpy()
        acc, conf = rd["accuracy"].to_numpy(), rd["confidence"].to_numpy()
        share = (rd["count"] / rd["count"].sum()).to_numpy()
        ax.bar(centers[full], acc[full], width=width * 0.92, color="C0", alpha=0.85)
        lo = np.minimum(acc, conf)[full]
        ax.bar(centers[full], np.abs(acc - conf)[full], bottom=lo, width=width * 0.92, facecolor=(0.84, 0.37, 0.0, 0.25),
               edgecolor="C3", hatch="///", lw=0.8)
        ax.bar(centers, -0.12 * share / max(share.max(), 1e-12), width=width * 0.92, color="0.55")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.13, 1.0)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name}\nECE = {ece(z, labels, n_bins, kind='logits'):.4f}")
    axes[0][0].set_ylabel("accuracy in bin")
    axes[0][0].legend(handles=[Patch(color="C0", alpha=0.85, label="accuracy"),
                               Patch(facecolor=(0.84, 0.37, 0.0, 0.25), edgecolor="C3", hatch="///", label="gap to confidence"),
                               Patch(color="0.55", label="share of examples")],
                      frameon=False, loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_layers(names: Sequence[str], probe_acc: np.ndarray, weights: dict[str, np.ndarray]):
    """Per layer: probe test accuracy (mean ± std over seeds, left) and learned LATES weights (right),
    one line per fitted variant; arrays are (seeds, layers)."""
    import matplotlib.pyplot as plt

    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    acc = np.asarray(probe_acc)
    axes[0].errorbar(x, acc.mean(0), yerr=acc.std(0), marker="o", capsize=4, lw=2)
    for s in acc:
        axes[0].plot(x, s, color="C0", alpha=0.25, lw=1)
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("each layer's own vote (probe accuracy)")
    for i, (label, w) in enumerate(weights.items()):
        w = np.asarray(w)
        axes[1].bar(x + (i - (len(weights) - 1) / 2) * 0.35, w.mean(0), width=0.35, yerr=w.std(0), capsize=3,
                    label=label, color=f"C{i + 1}", alpha=0.85)
    axes[1].set_xticks(x, names)
    axes[1].set_ylabel("weight $w_l = 1/T_l$")
    top = max(float((np.asarray(w).mean(0) + np.asarray(w).std(0)).max()) for w in weights.values())
    axes[1].set_ylim(0, 1.3 * top)
    axes[1].set_title("learned LATES weights")
    axes[1].legend(frameon=False, loc="upper center", ncol=len(weights))
    fig.tight_layout()
    return fig


def plot_severity(ece_table, acc_table, methods: Sequence[str] | None = None, reference: str = "TS"):
    """Against shift severity (0 = clean test), one line per method: ECE, ECE minus the `reference`
    method's ECE (below 0 = better calibrated than it), and accuracy."""
    import matplotlib.pyplot as plt

    methods = list(methods) if methods is not None else list(ece_table.index)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    styles = {"uncalibrated": ":", "VS": "-.", "LATES (equal)": "--", "MC + TS": (0, (3, 1, 1, 1)), "MC + LATES": (0, (5, 1))}
    delta = ece_table - ece_table.loc[reference]
    for i, m in enumerate(methods):
        for ax, table in zip(axes, (ece_table, delta, acc_table)):
            ax.plot(table.columns, table.loc[m], marker="o", ms=4, lw=2.4 if m in ("LATES", reference) else 1.4,
                    ls=styles.get(m, "-"), color=f"C{i}", label=m)
    axes[0].set_ylabel("ECE (15 equal-width bins)")
    axes[1].set_ylabel(f"ECE minus {reference}'s ECE")
    axes[1].axhline(0, color="0.3", lw=0.8)
    axes[2].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xlabel("severity (0 = clean test)")
        ax.set_xticks(list(ece_table.columns))
    axes[0].set_title("calibration under shift")
    axes[1].set_title(f"calibration relative to {reference}")
    axes[2].set_title("accuracy under shift")
    axes[2].legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_corruptions(data: CalibrationData, severities: Sequence[int] = (1, 3, 5), max_corruptions: int = 6):
    """The first test input under each corruption at a few severities, taken from the shifted test sets:
    overlaid signals for 1D inputs (one panel per corruption), a grid for images (rows: corruptions)."""
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(c for c, _ in data.ood))[:max_corruptions]
    severities = [s for s in severities if (kinds[0], s) in data.ood]
    clean = data.x_test[0]
    if clean.dim() == 3:  # images: rows = corruptions, columns = clean + severities
        fig, axes = plt.subplots(len(kinds), len(severities) + 1, squeeze=False,
                                 figsize=(1.6 * (len(severities) + 1), 1.6 * len(kinds)))
        for r, c in enumerate(kinds):
            imgs = [clean] + [data.ood[(c, s)][0][0] for s in severities]
            for k, (ax, img) in enumerate(zip(axes[r], imgs)):
                a = img.permute(1, 2, 0).numpy()
                ax.imshow((a - a.min()) / (a.max() - a.min() + 1e-12))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("clean" if k == 0 else f"severity {severities[k - 1]}", fontsize=8)
            axes[r][0].set_ylabel(c.replace("_", " "), fontsize=8)
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 2.8), sharey=True, squeeze=False)
    t = np.arange(clean.shape[-1])
    for ax, c in zip(axes[0], kinds):
        ax.plot(clean.numpy(), t, color="0.2", lw=2.2, label="clean")
        for j, s in enumerate(severities):
            ax.plot(data.ood[(c, s)][0][0].numpy(), t, lw=1.2, color=f"C{j + 1}", label=f"severity {s}")
        ax.set_title(c.replace("_", " "))
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
