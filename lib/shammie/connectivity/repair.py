"""Interpolation of weights, BatchNorm reset and REPAIR.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..core import ShammieError
from .config import ArchitectureMismatchError, UnsupportedLayerError
from .permutation import _PRODUCERS, check_compatible, permutation_spec
from .statistics import _call_order, _input_batches, _sequential_update, channel_stats


def interpolate_state(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * A + alpha * B for every floating-point entry (BatchNorm running statistics included);
    integer buffers (num_batches_tracked) are taken from A."""
    if list(state_a) != list(state_b):
        raise ArchitectureMismatchError(
            "the state dicts have different keys; interpolate two networks of one architecture"
        )
    alpha = float(alpha)
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        if a.shape != b.shape:
            raise ArchitectureMismatchError(
                f"{k} is {tuple(a.shape)} in A but {tuple(b.shape)} in B; "
                f"interpolate two networks of the same widths"
            )
        out[k] = (1.0 - alpha) * a + alpha * b.to(a.device) if a.is_floating_point() else a.clone()
    return out


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A new network with the weights (1 - alpha) * A + alpha * B, in eval mode."""
    check_compatible(model_a, model_b)
    out = copy.deepcopy(model_a)
    out.load_state_dict(interpolate_state(model_a.state_dict(), model_b.state_dict(), alpha))
    return out.eval()


@torch.no_grad()
def reset_bn_stats(model: nn.Module, x: Any, batch_size: int | None = None) -> nn.Module:
    """Recompute every BatchNorm's running mean and (biased) variance as the exact statistics of its input
    over `x`, layer by layer in forward order (each layer sees the already reset layers before it).
    Modifies `model` in place and returns it (REPAIR for BatchNorm networks: 'ResetBN')."""
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not names:
        raise ShammieError(
            f"{type(model).__name__} has no BatchNorm with running statistics to reset; "
            f"use repair() for networks without normalization"
        )

    def update(name, module, mean, var):
        module.running_mean.copy_(mean.to(module.running_mean.dtype))
        module.running_var.copy_(var.to(module.running_var.dtype))
        return None

    _sequential_update(model, x, names, "input", update, batch_size)
    return model.eval()


def repair_points(model: nn.Module, which: str = "plain") -> list[str]:
    """The modules whose outputs REPAIR corrects: every hidden pre-activation (`which="all"`), or only those
    not followed by a BatchNorm (`"plain"`, the default: BatchNorm layers are reset instead)."""
    spec = permutation_spec(model)
    if which == "all":
        return spec.preactivations()
    if which == "plain":
        return [u.producer for u in spec.units if u.norm is None]
    raise ShammieError(f"which must be 'plain' or 'all', got {which!r}")


def _fold_affine(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make `module`'s output channels c become scale[c] * output + shift[c] (Linear, Conv or BatchNorm)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not module.affine:
            raise UnsupportedLayerError(
                f"cannot REPAIR through a {type(module).__name__} without affine parameters"
            )
        w, b = module.weight, module.bias
        b.copy_((b.double() * scale + shift).to(b.dtype))
        w.copy_((w.double() * scale).to(w.dtype))
        return
    if not isinstance(module, _PRODUCERS):
        raise UnsupportedLayerError(
            f"unsupported layer type {type(module).__name__} for REPAIR: correct the "
            f"output of a Linear, Conv or BatchNorm"
        )
    shape = (-1,) + (1,) * (module.weight.dim() - 1)
    module.weight.copy_((module.weight.double() * scale.view(shape)).to(module.weight.dtype))
    if module.bias is None:
        module.bias = nn.Parameter(shift.to(module.weight.dtype).clone())
    else:
        module.bias.copy_((module.bias.double() * scale + shift).to(module.bias.dtype))


@torch.no_grad()
def repair(
    model_a: nn.Module,
    model_b: nn.Module,
    alpha: float,
    x: Any,
    *,
    merged: nn.Module | None = None,
    points: Sequence[str] | None = None,
    batch_size: int | None = None,
    endpoint_stats: tuple[dict, dict] | None = None,
) -> nn.Module:
    """REPAIR: the interpolated network (1 - alpha) A + alpha B (or a copy of `merged`) with each channel of
    each pre-activation in `points` rescaled and shifted so that its mean and standard deviation over the
    inputs `x` equal the interpolated endpoint statistics

        mu_alpha = (1 - alpha) mu_A + alpha mu_B,   sigma_alpha = (1 - alpha) sigma_A + alpha sigma_B.

    Layers are corrected in forward order, each after the ones before it, and every correction is folded
    into the producing layer's weight and bias (or a BatchNorm's affine), so the result is a plain
    network of the same architecture. `points` defaults to `repair_points(model_a)`. `endpoint_stats`,
    the `channel_stats` of A and B at `points` on `x`, saves recomputing them for every alpha.
    """
    check_compatible(model_a, model_b)
    points = list(points) if points is not None else repair_points(model_a)
    if not points:
        raise ShammieError(
            f"{type(model_a).__name__} has no pre-activation without BatchNorm to correct: for "
            f"BatchNorm networks use reset_bn_stats, or pass points=repair_points(model, 'all')"
        )
    alpha = float(alpha)
    if endpoint_stats is None:
        endpoint_stats = (
            channel_stats(model_a, x, points, batch_size),
            channel_stats(model_b, x, points, batch_size),
        )
    stats_a, stats_b = endpoint_stats
    missing = [p for p in points if p not in stats_a or p not in stats_b]
    if missing:
        raise ShammieError(f"endpoint_stats lack the points {missing[:3]}")
    out = interpolate(model_a, model_b, alpha) if merged is None else copy.deepcopy(merged).eval()
    check_compatible(model_a, out)

    def update(name, module, mean, var):
        (ma, sa), (mb, sb) = stats_a[name], stats_b[name]
        goal_mean = (1.0 - alpha) * ma + alpha * mb
        goal_std = (1.0 - alpha) * sa + alpha * sb
        std = var.sqrt()
        alive = std > 1e-12 * (1.0 + mean.abs())
        scale = torch.where(alive, goal_std / std.clamp_min(1e-300), torch.ones_like(std))
        shift = goal_mean - scale * mean
        _fold_affine(module, scale, shift)
        return scale, shift

    _sequential_update(out, x, points, "output", update, batch_size)
    return out


@torch.no_grad()
def variance_ratios(
    model_a: nn.Module,
    model_b: nn.Module,
    merged: nn.Module,
    x: Any,
    alpha: float = 0.5,
    points: Sequence[str] | None = None,
    batch_size: int | None = None,
):
    """Per layer, how much the interpolated network's pre-activations have shrunk relative to its endpoints:
    `std_ratio` = mean_c sigma_merged / mean_c sigma_alpha (sigma_alpha the interpolated endpoint std) and
    `var_ratio` = mean_c var_merged / mean_c ((1 - alpha) var_A + alpha var_B). 1 means no collapse.
    Averaging numerator and denominator separately keeps near-dead channels from dominating.
    Returns a DataFrame with one row per layer in forward order."""
    import pandas as pd

    points = list(points) if points is not None else permutation_spec(model_a).preactivations()
    first = next(iter(_input_batches(x, batch_size)))
    points = _call_order(merged.eval(), first, points)
    sa, sb, sm = (channel_stats(m, x, points, batch_size) for m in (model_a, model_b, merged))
    rows = []
    for i, name in enumerate(points):
        std_goal = (1 - alpha) * sa[name][1] + alpha * sb[name][1]
        var_goal = (1 - alpha) * sa[name][1] ** 2 + alpha * sb[name][1] ** 2
        rows.append(
            {
                "layer": i + 1,
                "module": name,
                "std_ratio": float(sm[name][1].mean() / std_goal.mean().clamp_min(1e-300)),
                "var_ratio": float((sm[name][1] ** 2).mean() / var_goal.mean().clamp_min(1e-300)),
            }
        )
    return pd.DataFrame(rows)
