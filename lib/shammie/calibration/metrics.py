"""Calibration metrics on logits or probabilities, input checks, bootstrap intervals and paired tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..core import ShammieError

__all__ = [
    "CalibrationInputError",
    "NotFittedError",
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
        return np.searchsorted(_mass_edges(conf, n_bins), conf, side="left").astype(np.int64)
    raise CalibrationInputError(f"binning must be 'width' (equal-width) or 'mass' (equal-mass), got {binning!r}")


def _mass_edges(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior edges e_1 <= ... <= e_{M-1} of equal-mass bins (e_{m-1}, e_m] of the confidences.

    Edge m lies halfway between the order statistics on either side of position ceil(m n / M), so
    without ties bin m holds the examples ranked ceil((m-1) n / M) .. ceil(m n / M) - 1 (equal counts
    up to one). A bin is a function of the confidence alone: tied confidences always share a bin,
    whatever the order of the examples (a tie at an edge goes to the lower bin; bins may then differ
    in size or be empty).
    """
    s = np.sort(conf)
    n = len(s)
    cuts = (np.arange(1, n_bins) * n + n_bins - 1) // n_bins  # ceil(m n / M) in 1..n, m = 1..M-1
    below = s[np.clip(cuts - 1, 0, max(n - 1, 0))]
    above = s[np.clip(cuts, 0, max(n - 1, 0))]
    return np.where(cuts >= n, np.inf, (below + above) / 2)  # cut at n: every example below


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
    n_bins bins holding equal numbers of examples (edges at quantiles of the confidence; tied
    confidences always share a bin, so the value does not depend on the order of the examples).
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
