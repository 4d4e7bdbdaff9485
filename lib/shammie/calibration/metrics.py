"""Calibration metrics on logits or probabilities, input checks, bootstrap intervals and paired tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16, float8): read through float32
            x = x.float().numpy()
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
    """`scores` as a checked, finite (N, K) float64 array."""
    s = _scores_array(scores, name).astype(np.float64, copy=False)
    if not np.all(np.isfinite(s)):
        _raise_not_finite(s, name)
    return s


def _scores_array(scores: Any, name: str = "logits") -> np.ndarray:
    """`scores` as an (N, K) array of real numbers in its own dtype (float32 stays float32): the shape
    checks of `_check_scores` without its float64 copy and finiteness pass, which `_top_label` does
    block by block."""
    s = _as_array(scores, name, dtype=None)
    if s.dtype.kind not in "biuf":
        raise CalibrationInputError(f"{name} must be an array of real numbers, got dtype {s.dtype}")
    if s.ndim != 2:
        raise CalibrationInputError(f"{name} must have shape (N, K) (one row per example), got shape {s.shape}")
    if s.shape[0] == 0:
        raise CalibrationInputError(f"{name} is empty: need at least one example")
    if s.shape[1] < 2:
        raise CalibrationInputError(f"{name} needs at least 2 classes (columns), got {s.shape[1]}")
    return s


def _raise_not_finite(s: np.ndarray, name: str = "logits") -> None:
    bad = int(np.sum(~np.isfinite(s)))
    raise CalibrationInputError(
        f"{name} contains {bad} NaN or infinite value(s): check the model's outputs (a diverged run?)")


_BLOCK = 1 << 16  # scores per block (512 KiB in float64): a block's temporaries stay in the CPU cache
_CLASS_MAJOR_BELOW = 64  # with fewer classes a block is transposed, so that operations run on long rows


def _numpy_has_simd_exp64() -> bool:
    """Whether numpy's float64 exp is vectorized on this CPU (numpy has SIMD exp/log for float64 only
    with AVX-512, elsewhere it calls the C library's exp one number at a time, ~5x slower than torch's
    vectorized float64 exp on an AVX2 CPU)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        except ImportError:
            return False
    return any(__cpu_features__.get(f) and f in __cpu_dispatch__ for f in ("AVX512_SKX", "X86_V4"))


_NUMPY_SIMD_EXP64 = _numpy_has_simd_exp64()


def _exp_(t: np.ndarray) -> None:
    """exp in place of a contiguous float64 array with whichever of numpy and torch is vectorized here
    (both within an ulp or two of the exact value, like the C library's exp)."""
    if _NUMPY_SIMD_EXP64:
        np.exp(t, out=t)
    else:
        torch.from_numpy(t).exp_()


class _TopLabel(NamedTuple):
    conf: np.ndarray  # (N,) float64 top-label confidence
    hit: np.ndarray  # (N,) float64, 1.0 where the predicted class (first of tied maxima) is the label
    key: np.ndarray | None  # (N,) int64: the equal-width bin of conf, or its fine cell for equal-mass bins
    kind: str  # "logits" or "probs", as resolved


def _top_label(s: np.ndarray, y: np.ndarray, kind: str, n_bins: int | None = None) -> _TopLabel:
    """Top-label confidences, hits and bin keys (`_bin_key`) of the scores `s` (N, K) against labels `y`,
    in float64 arithmetic, block by block; checks that the scores are finite and resolves `kind`
    ("auto", "logits" or "probs") as `_resolve_kind` does, with the same errors.

    The numbers of the direct computation on the float64 scores (the prediction is
    the first of tied maxima, as `argmax`; the confidence is 1 / sum_j exp(z_j - max z), equal up
    to the order of the K-term sum) without any (N, K) temporary: each block of rows is converted
    to float64 in a buffer that stays in the CPU cache, and with fewer than `_CLASS_MAJOR_BELOW`
    classes it is stored class-major (K, rows), so that the max, the exp and the sum run over long
    contiguous rows instead of K numbers at a time (numpy's per-row reductions over short rows and
    an (N, K) float64 copy were what made the direct computation slow).
    """
    if kind not in ("auto", "logits", "probs"):
        raise CalibrationInputError(f"kind must be 'auto', 'logits' or 'probs', got {kind!r}")
    if kind == "auto" and not _head_is_probs(s):
        kind = "logits"
    out, ok = _top_label_pass(s, y, "logits" if kind == "logits" else "probs", n_bins)
    if ok is None:
        _raise_not_finite(s)
    if kind == "logits" or ok:
        return out
    if kind == "probs":
        raise CalibrationInputError(
            "kind='probs' but the rows are not probabilities (each in [0, 1], summing to 1): pass kind='logits'")
    return _top_label_pass(s, y, "logits", n_bins)[0]  # "auto": the first rows looked like probabilities, others not


def _head_is_probs(s: np.ndarray) -> bool:
    head = s[:256].astype(np.float64)
    return bool(head.min() >= 0 and head.max() <= 1 and np.allclose(head.sum(1), 1.0, atol=1e-4))


def _bin_key(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """In place: the equal-width bin clip(ceil(conf M) - 1, 0, M - 1) of each confidence for n_bins = M > 0
    (as `_bin_index`), or its cell clip(floor(conf F), 0, F - 1) of a fine grid for n_bins = -F
    (`_mass_bins`). Returned as float64 holding whole numbers."""
    if n_bins > 0:
        conf *= n_bins
        np.ceil(conf, out=conf)
        conf -= 1
        return np.clip(conf, 0, n_bins - 1, out=conf)
    conf *= -n_bins
    np.floor(conf, out=conf)
    return np.clip(conf, 0, -n_bins - 1, out=conf)


def _top_label_pass(s: np.ndarray, y: np.ndarray, mode: str, n_bins: int | None) -> tuple[_TopLabel, bool | None]:
    """One pass over the blocks of `s`, reading them as logits or as probabilities (`mode`).

    Returns (result, ok): ok is None when a score is not finite (the result is then meaningless);
    in mode "probs", whether every row is a probability vector (in [0, 1], summing to 1 within 1e-4,
    the test of `_is_probs`); True in mode "logits".

    Hits without an argmax: for class-major blocks the prediction is right exactly when the label's
    score equals the row maximum, unless an earlier class ties with it. An exact tie at the maximum
    makes two terms of the row's sum of exp(z_j - max z) exactly 1, so the sum is >= 2 (>= 2 max p
    for probabilities): only right-looking rows whose sum passes 1.5 (a margin for rounding) are
    looked at again, with the exact first argmax of their float64 scores.
    """
    n, k = s.shape
    class_major = k < _CLASS_MAJOR_BELOW
    rows = min(n, max(1, (_BLOCK if class_major else 4 * _BLOCK) // k))
    conf = np.empty(n)
    hit = np.empty(n)
    key = np.empty(n, dtype=np.int64) if n_bins is not None else None
    buf = np.empty(k * rows)
    ar = np.arange(rows)
    ok = True
    for a in range(0, n, rows):
        b = min(n, a + rows)
        m = b - a
        yb = y[a:b]
        if class_major:
            t = buf[: k * m].reshape(k, m)  # contiguous
            np.copyto(t, s[a:b].T, casting="unsafe")
            top = t.max(axis=0)
            label_score = t.ravel().take(yb * m + ar[:m])
        else:
            t = buf[: k * m].reshape(m, k)
            np.copyto(t, s[a:b], casting="unsafe")
            top = t.max(axis=1)
        lo, hi = t.min(), top.max()  # min and max propagate NaN
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return _TopLabel(conf, hit, key, mode), None
        if class_major:
            right = label_score == top
        else:
            right = t.argmax(axis=1) == yb
        cb = conf[a:b]
        if mode == "probs":
            cb[:] = top
            sums = t.sum(axis=0 if class_major else 1)
            if ok:
                ok = bool(lo >= 0 and hi <= 1 and np.all(np.abs(sums - 1.0) <= 1e-4 + 1e-5))
            maybe_tie = sums >= 1.5 * top
        else:
            if class_major:
                t -= top
            else:
                t -= top[:, None]
            _exp_(t)
            sums = t.sum(axis=0 if class_major else 1)
            np.divide(1.0, sums, out=cb)
            maybe_tie = sums >= 1.5
        if class_major:
            maybe_tie &= right
            maybe_tie &= yb > 0
            ties = np.flatnonzero(maybe_tie)
            if len(ties):
                right[ties] = s[a + ties].astype(np.float64).argmax(axis=1) == yb[ties]
        hit[a:b] = right
        if n_bins is not None:
            key[a:b] = _bin_key(cb.copy(), n_bins)
    return _TopLabel(conf, hit, key, "logits" if mode == "logits" else "probs"), ok


def _is_probs(s: np.ndarray) -> bool:
    if not _head_is_probs(s):
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


def _prepare_top(scores: Any, labels: Any, kind: str, n_bins: int | None = None) -> _TopLabel:
    """Checked top-label confidences, hits and (with `n_bins`) equal-width bins, the inputs of every binned
    metric; the scores are read block by block, never copied whole (see `_top_label`)."""
    s = _scores_array(scores)
    y = _check_labels(labels, s.shape[0], s.shape[1])
    return _top_label(s, y, kind, n_bins)


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
    n = len(conf)
    cuts = (np.arange(1, n_bins) * n + n_bins - 1) // n_bins  # ceil(m n / M) in 1..n, m = 1..M-1
    lo_pos, hi_pos = np.clip(cuts - 1, 0, max(n - 1, 0)), np.clip(cuts, 0, max(n - 1, 0))
    # only these order statistics are needed: a partial sort (selection) finds them, the values of a full sort
    s = np.partition(conf, np.unique(np.concatenate([lo_pos, hi_pos]))) if n else conf
    below, above = s[lo_pos], s[hi_pos]
    return np.where(cuts >= n, np.inf, (below + above) / 2)  # cut at n: every example below


_MASS_CELLS = 4096  # cells of the fine grid that narrows the search for equal-mass edges


def _mass_bins(conf: np.ndarray, cell: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bin of each confidence, the same as `_bin_index(conf, n_bins, "mass")`, from the cells
    `cell` = `_bin_key(conf, -_MASS_CELLS)` of a fine grid, without sorting.

    A cell is a monotone function of the confidence, so the order statistics that `_mass_edges` needs
    lie in the cells where the cumulative cell counts pass their ranks: only the examples of those
    (at most 2 (M - 1)) cells are partially sorted. An example whose cell differs from every edge's
    cell is below an edge exactly when its cell is: its bin is read from a table of cells; only the
    examples sharing a cell with an edge are compared with the edges.
    """
    n, cells = len(conf), _MASS_CELLS
    counts = np.bincount(cell, minlength=cells)
    cum = np.cumsum(counts)
    cuts = (np.arange(1, n_bins) * n + n_bins - 1) // n_bins  # ceil(m n / M), as `_mass_edges`
    lo_pos, hi_pos = np.clip(cuts - 1, 0, n - 1), np.clip(cuts, 0, n - 1)
    ranks = np.unique(np.concatenate([lo_pos, hi_pos]))
    rank_cell = np.searchsorted(cum, ranks, side="right")  # the cell of the example of rank r (0-based)
    need = np.zeros(cells, dtype=bool)
    need[rank_cell] = True
    sub = conf[need[cell]]
    needed_counts = np.where(need, counts, 0)
    skipped_below = (cum - counts) - (np.cumsum(needed_counts) - needed_counts)  # examples of unneeded cells below
    sub_ranks = ranks - skipped_below[rank_cell]
    sub = np.partition(sub, sub_ranks)
    value = dict(zip(ranks.tolist(), sub[sub_ranks].tolist()))
    below = np.array([value[r] for r in lo_pos.tolist()], dtype=np.float64)
    above = np.array([value[r] for r in hi_pos.tolist()], dtype=np.float64)
    edges = np.where(cuts >= n, np.inf, (below + above) / 2)
    finite = edges[np.isfinite(edges)]
    edge_cell = _bin_key(finite.copy(), -cells).astype(np.int64)
    bin_of_cell = np.searchsorted(edge_cell, np.arange(cells), side="left")  # edges in lower cells
    shared = np.zeros(cells, dtype=bool)
    shared[edge_cell] = True
    idx = bin_of_cell[cell]
    near = np.flatnonzero(shared[cell])
    idx[near] = np.searchsorted(edges, conf[near], side="left")
    return idx


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise CalibrationInputError(f"n_bins must be a positive int, got {n_bins!r}")


def _binned(conf: np.ndarray, hit: np.ndarray, n_bins: int, binning: str, idx: np.ndarray | None = None):
    """Bin index of each example, and per bin: count, sum of confidences, sum of hits (`idx`: the bins,
    when already known)."""
    _check_bins(n_bins)
    if idx is None:
        idx = _bin_index(conf, n_bins, binning)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(idx, weights=hit, minlength=n_bins)
    return idx, count, sum_conf, sum_hit


def _check_binning(binning: str) -> None:
    if binning not in ("width", "mass"):
        raise CalibrationInputError(
            f"binning must be 'width' (equal-width) or 'mass' (equal-mass), got {binning!r}")


def _top_binned(scores: Any, labels: Any, n_bins: int, binning: str, kind: str):
    """(conf, hit, idx, count, sum_conf, sum_hit) of the top-label binned metrics, from checked input."""
    _check_bins(n_bins)
    _check_binning(binning)
    top = _prepare_top(scores, labels, kind, n_bins if binning == "width" else -_MASS_CELLS)
    idx = top.key if binning == "width" else _mass_bins(top.conf, top.key, n_bins)
    return (top.conf, top.hit, *_binned(top.conf, top.hit, n_bins, binning, idx))


def ece(scores: Any, labels: Any, n_bins: int = 15, binning: str = "width", kind: str = "auto") -> float:
    """Top-label expected calibration error sum_m |B_m|/n |acc(B_m) - conf(B_m)|.

    `binning="width"`: n_bins equal-width bins ((m-1)/M, m/M] (Guo et al. 2017; torchmetrics uses
    [lower, upper), which differs only for confidences exactly on an edge). `binning="mass"`:
    n_bins bins holding equal numbers of examples (edges at quantiles of the confidence; tied
    confidences always share a bin, so the value does not depend on the order of the examples).
    """
    conf, _, _, _, sum_conf, sum_hit = _top_binned(scores, labels, n_bins, binning, kind)
    return float(np.abs(sum_hit - sum_conf).sum() / len(conf))


def mce(scores: Any, labels: Any, n_bins: int = 15, binning: str = "width", kind: str = "auto") -> float:
    """Maximum calibration error: the largest |acc(B_m) - conf(B_m)| over non-empty bins."""
    _, _, _, count, sum_conf, sum_hit = _top_binned(scores, labels, n_bins, binning, kind)
    full = count > 0
    return float(np.max(np.abs(sum_hit[full] - sum_conf[full]) / count[full]))


def classwise_ece(scores: Any, labels: Any, n_bins: int = 15, kind: str = "auto") -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the equal-width-binned
    sum_m |B_mk|/n |mean 1[y = k] - mean p_k| over the bins B_mk of p_k."""
    s, y, kind = _prepare(scores, labels, kind)
    _check_bins(n_bins)
    return _classwise_ece(s if kind == "probs" else _softmax(s.copy()), y, n_bins)


def _classwise_ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
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
    top = _prepare_top(scores, labels, kind)
    return _auroc(top.conf, top.hit.astype(bool))


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

    conf, _, idx, count, sum_conf, sum_hit = _top_binned(scores, labels, n_bins, binning, kind)
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
    """All metrics at once: acc, nll, brier, ece (equal-width), ece_mass (equal-mass), mce, cw_ece, auroc.

    The same values as the single functions, with the input checked and the top label found once.
    """
    _check_bins(n_bins)
    s = _scores_array(scores)
    y = _check_labels(labels, s.shape[0], s.shape[1])
    top = _top_label(s, y, kind, n_bins)
    s = s.astype(np.float64, copy=False)
    p = s.copy() if top.kind == "probs" else _softmax(s.copy())
    _, count, sum_conf, sum_hit = _binned(top.conf, top.hit, n_bins, "width", top.key)
    full = count > 0
    mass = _mass_bins(top.conf, _bin_key(top.conf.copy(), -_MASS_CELLS).astype(np.int64), n_bins)
    _, _, mass_conf, mass_hit = _binned(top.conf, top.hit, n_bins, "mass", mass)
    brier_terms = p.copy()
    brier_terms[np.arange(len(y)), y] -= 1.0
    return {
        "acc": float(np.mean(top.hit)),
        "nll": float(-np.mean(_log_probs_of_labels(s, y, top.kind))),
        "brier": float(np.mean(np.einsum("ij,ij->i", brier_terms, brier_terms))),
        "ece": float(np.abs(sum_hit - sum_conf).sum() / len(y)),
        "ece_mass": float(np.abs(mass_hit - mass_conf).sum() / len(y)),
        "mce": float(np.max(np.abs(sum_hit[full] - sum_conf[full]) / count[full])),
        "cw_ece": _classwise_ece(p, y, n_bins),
        "auroc": _auroc(top.conf, top.hit.astype(bool)),
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
