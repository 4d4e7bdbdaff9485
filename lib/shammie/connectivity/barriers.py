"""Interpolation curves and barriers.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import ShammieError
from .config import parse_network
from .permutation import check_compatible
from .repair import interpolate, repair, repair_points, reset_bn_stats
from .statistics import channel_stats


def _evaluate(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 2048
) -> dict[str, float]:
    from ..training import evaluate

    return evaluate(model, data, batch_size=batch_size)


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Mapping[str, Any],
    alphas: Iterable[float],
    fix: str | None = None,
    calib: Any = None,
    batch_size: int | None = None,
    points: Sequence[str] | None = None,
):
    """Loss and accuracy of the interpolated network at each alpha, on each named data split.

    `fix`: None (plain interpolation), 'reset_bn' (recompute BatchNorm statistics on `calib`) or
    'repair' (REPAIR on `calib`), applied at every alpha. Returns a DataFrame with columns alpha, split,
    loss, acc.
    """
    import pandas as pd

    if fix not in (None, "reset_bn", "repair"):
        raise ShammieError(f"unknown fix {fix!r}: choose None, 'reset_bn' or 'repair'")
    if fix is not None and calib is None:
        raise ShammieError(f"fix={fix!r} needs calibration inputs: pass calib (training inputs)")
    check_compatible(model_a, model_b)
    stats = None
    if fix == "repair":
        points = list(points) if points is not None else repair_points(model_a)
        stats = (
            channel_stats(model_a, calib, points, batch_size),
            channel_stats(model_b, calib, points, batch_size),
        )
    rows = []
    for alpha in alphas:
        merged = interpolate(model_a, model_b, alpha)
        if fix == "reset_bn":
            reset_bn_stats(merged, calib, batch_size)
        elif fix == "repair":
            merged = repair(
                model_a,
                model_b,
                alpha,
                calib,
                merged=merged,
                points=points,
                batch_size=batch_size,
                endpoint_stats=stats,
            )
        for split, d in data.items():
            ev = _evaluate(merged, d)
            rows.append(
                {"alpha": float(alpha), "split": split, "loss": ev["loss"], "acc": ev["acc"]}
            )
    return pd.DataFrame(rows)


def barrier(curve, metric: str = "acc", split: str = "test") -> dict[str, float]:
    """The barrier of an interpolation curve: the largest gap over alpha between the interpolated network
    and the straight line between the endpoints' values (accuracy: line minus curve; loss: curve minus
    line). Returns {'max', 'alpha' (where it is largest), 'midpoint' (the gap at alpha 0.5, when on the
    grid), 'endpoints' (mean endpoint value), 'mid_value'}."""
    if metric not in ("acc", "loss"):
        raise ShammieError(f"metric must be 'acc' or 'loss', got {metric!r}")
    c = curve[curve["split"] == split].sort_values("alpha")
    if c.empty:
        raise ShammieError(
            f"the curve has no split {split!r}; it has {sorted(set(curve['split']))}"
        )
    a = c["alpha"].to_numpy(float)
    v = c[metric].to_numpy(float)
    if not (np.isclose(a[0], 0.0) and np.isclose(a[-1], 1.0)):
        raise ShammieError(
            "a barrier needs the endpoints: the alpha grid must start at 0 and end at 1"
        )
    line = (1 - a) * v[0] + a * v[-1]
    gap = line - v if metric == "acc" else v - line
    i = int(np.argmax(gap))
    mid = np.flatnonzero(np.isclose(a, 0.5))
    return {
        "max": float(gap[i]),
        "alpha": float(a[i]),
        "midpoint": float(gap[mid[0]]) if len(mid) else float("nan"),
        "endpoints": float((v[0] + v[-1]) / 2),
        "mid_value": float(v[mid[0]]) if len(mid) else float("nan"),
    }


def relative_reduction(before: float, after: float) -> float:
    """The paper's relative barrier reduction, 1 - after / before (NaN when there was no barrier before)."""
    if not before > 0:
        return float("nan")
    return 1.0 - after / before


def barrier_summary(curves, baseline: str = "aligned"):
    """The curves of a study summarized, one row per (network, variant, method[, depth][, pair]): family and
    width, endpoint and midpoint test accuracy, the test accuracy barrier (max over alpha), the test loss
    barrier, the train accuracy barrier, for a corrected method its relative reduction of the `baseline`
    barrier of the same network, variant, depth and pair (the paper's 1 - after / before), and
    `norm_barrier`, the barrier divided by the endpoints' mean accuracy."""
    acc = barrier_table(curves, "acc", "test")
    loss = barrier_table(curves, "loss", "test")
    train = barrier_table(curves, "acc", "train") if (curves["split"] == "train").any() else None
    out = acc.copy()
    out["loss_barrier"] = loss["barrier"].to_numpy()
    out["train_barrier"] = train["barrier"].to_numpy() if train is not None else float("nan")
    fam_width = [parse_network(n) for n in out["network"]]
    out.insert(1, "family", [f for f, _ in fam_width])
    out.insert(2, "width", [w for _, w in fam_width])
    keys = [c for c in _group_columns(curves) if c != "method"]
    base = {tuple(r[k] for k in keys): r["barrier"] for _, r in out.iterrows() if r["method"] == baseline}
    out["reduction"] = [
        relative_reduction(base.get(tuple(r[k] for k in keys), float("nan")), r["barrier"])
        if r["method"] not in ("naive", baseline)
        else float("nan")
        for _, r in out.iterrows()
    ]
    out["norm_barrier"] = out["barrier"] / out["endpoints"]
    return out


def _group_columns(curves) -> list[str]:
    """The columns that identify one curve: network, variant, method, and depth and pair when present."""
    return ["network", "variant", "method"] + [c for c in ("depth", "pair") if c in curves.columns]


def barrier_table(
    curves,
    metric: str = "acc",
    split: str = "test",
    by: Sequence[str] | None = None,
):
    """One row per (network, variant, method[, depth][, pair]) group of a long curves table: endpoint mean,
    midpoint value, barrier (max over alpha) and where it is largest, for `metric` on `split`."""
    import pandas as pd

    by = list(by) if by is not None else _group_columns(curves)
    rows = []
    for key, group in curves.groupby(list(by), sort=False):
        b = barrier(group, metric, split)
        rows.append(
            {
                **dict(zip(by, key)),
                "endpoints": b["endpoints"],
                "midpoint": b["mid_value"],
                "barrier": b["max"],
                "at_alpha": b["alpha"],
            }
        )
    return pd.DataFrame(rows)
