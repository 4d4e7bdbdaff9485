"""The notebook's experiments: data, training pairs, studies of pairs, trends over pairs.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import ShammieError
from .alignment import Alignment, align
from .barriers import barrier, interpolation_curve
from .config import ConnectivityConfig, parse_network
from .models import build_network
from .permutation import fold_batchnorm
from .repair import interpolate, repair, variance_ratios


@dataclass
class ThemeData:
    """The notebook's data: tensors for evaluation and statistics, and what `fit` trains on."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    calib: (
        torch.Tensor
    )  # inputs for matching and REPAIR statistics (training data, no augmentation)
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    augmented: Any = None  # a torch Dataset with augmentation (CIFAR-10), else None

    def fit_data(self, seed: int, batch_size: int) -> Any:
        """What `shammie.training.fit` trains on: the training tensors, or a seeded augmenting DataLoader."""
        if self.augmented is None:
            return (self.x_train, self.y_train)
        return torch.utils.data.DataLoader(
            self.augmented,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=min(4, os.cpu_count() or 1),
            generator=torch.Generator().manual_seed(seed),
        )


def load_theme_data(cfg: ConnectivityConfig) -> ThemeData:
    """MNIST-1D (offline, cached) or CIFAR-10 (from `cfg.data_root`), with the calibration and evaluation subsets."""
    if cfg.dataset == "mnist1d":
        from ..data import load_mnist1d

        d = load_mnist1d(num_samples=cfg.num_samples, train_split=cfg.train_split)
        xtr, ytr, xte, yte, augmented = d.x_train, d.y_train, d.x_test, d.y_test, None
        name = f"{d.name[:-1]}, {len(xtr)} train / {len(xte)} test)"
    else:
        from ..data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10

        def as_tensors(ds):
            x = (
                torch.as_tensor(np.asarray(ds.data), dtype=torch.float32).permute(0, 3, 1, 2)
                / 255.0
            )
            mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
            return (x - mean) / std, torch.as_tensor(ds.targets, dtype=torch.int64)

        augmented = load_cifar10(cfg.data_root, train=True, augment=True)
        xtr, ytr = as_tensors(augmented)
        xte, yte = as_tensors(load_cifar10(cfg.data_root, train=False))
        name = "CIFAR-10"
    n_cal = min(cfg.calib_samples, len(xtr))
    n_ev = min(cfg.eval_train_samples, len(xtr))
    return ThemeData(
        name,
        tuple(xtr.shape[1:]),
        10,
        xtr,
        ytr,
        xte,
        yte,
        xtr[:n_cal],
        {"train": (xtr[:n_ev], ytr[:n_ev]), "test": (xte, yte)},
        augmented,
    )


def train_network(
    name: str,
    data: ThemeData,
    cfg: ConnectivityConfig,
    seed: int,
    device: torch.device | str = "cpu",
    depth: int | None = None,
    batchnorm: bool = True,
) -> tuple[nn.Module, Any]:
    """Build network `name` (an MLP with `depth` hidden layers, default `cfg.mlp_depth`) with initialization
    seed `seed`, train it (with BatchNorm unless `batchnorm=False`; SGD with Nesterov momentum, one-cycle
    schedule, weight decay), and return (the model in eval mode on `device`, its History). Trained models
    are cached under data/cache/checkpoints, so a re-run loads them."""
    from ..training import fit_cached

    depth = cfg.mlp_depth if depth is None else int(depth)
    torch.manual_seed(seed)
    model = build_network(name, data.input_shape, data.num_classes, depth, batchnorm=batchnorm)
    key = {"data": data.name, "network": name, "init_seed": seed, "depth": depth}
    if not batchnorm:
        key["batchnorm"] = False
    history = fit_cached(
        model,
        data.fit_data(seed, cfg.batch_size),
        cache_key=key,
        tag=f"repair-{name}",
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        optimizer="sgd",
        weight_decay=cfg.weight_decay,
        schedule="onecycle",
        seed=seed,
        device=device,
        desc=f"{name}{'' if depth == cfg.mlp_depth else f' depth {depth}'}{'' if batchnorm else ' no norm'} seed {seed}",
    )
    return model.eval(), history


@dataclass
class NetworkStudy:
    """Everything measured on one pair of networks: the endpoints (with BatchNorm and folded), B aligned to
    A, the alignment, and the interpolation curves of every variant and method (a long DataFrame)."""

    name: str
    family: str
    width: int
    models: dict[str, dict[str, nn.Module]]  # variant -> {"a", "b", "b_aligned"}
    alignment: Alignment
    curves: Any


#: per variant, the curves traced: (method label, use B aligned?, fix). Naive interpolation is traced once,
#: on the network as trained: folding BatchNorm does not change its (chance-level) midpoint.
METHODS = {
    "bn": (
        ("naive", False, None),
        ("aligned", True, None),
        ("aligned + BN reset", True, "reset_bn"),
    ),
    "folded": (("aligned", True, None), ("aligned + REPAIR", True, "repair")),
}


def study_network(
    name: str,
    model_a: nn.Module,
    model_b: nn.Module,
    data: ThemeData,
    alphas: Sequence[float],
    stats_batch: int | None = None,
    methods: Mapping[str, Sequence[tuple]] | None = None,
) -> NetworkStudy:
    """Align B to A by activation matching and trace the interpolation curves of the pair in two variants:
    `bn` (as trained: naive, aligned, aligned + BatchNorm reset) and `folded` (BatchNorm folded into the
    weights, no normalization: naive, aligned, aligned + REPAIR)."""
    import pandas as pd

    family, width = parse_network(name)
    methods = methods or METHODS
    stats_batch = stats_batch or None
    b_aligned, alignment = align(
        model_a, model_b, data.calib, "activation", batch_size=stats_batch or 1000
    )
    models = {"bn": {"a": model_a, "b": model_b, "b_aligned": b_aligned}}
    models["folded"] = {k: fold_batchnorm(m) for k, m in models["bn"].items()}
    frames = []
    for variant, rows in methods.items():
        m = models[variant]
        for method, aligned, fix in rows:
            c = interpolation_curve(
                m["a"],
                m["b_aligned"] if aligned else m["b"],
                data.eval_sets,
                alphas,
                fix=fix,
                calib=data.calib,
                batch_size=stats_batch,
            )
            c.insert(0, "method", method)
            c.insert(0, "variant", variant)
            c.insert(0, "network", name)
            frames.append(c)
    return NetworkStudy(
        name, family, width, models, alignment, pd.concat(frames, ignore_index=True)
    )


def collapse_profile(
    models: Mapping[str, nn.Module],
    calib: Any,
    x_eval: Any,
    alpha: float = 0.5,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Variance ratios per layer (see `variance_ratios`) of the network interpolated at `alpha` between
    models['a'] and models['b'] (naive), models['b_aligned'] (aligned), and aligned + REPAIR calibrated on
    `calib`; measured on `x_eval` (held-out inputs, so that REPAIR's own calibration does not decide it)."""
    a, b, b_al = models["a"], models["b"], models["b_aligned"]
    repaired = repair(a, b_al, alpha, calib, batch_size=batch_size)
    return {
        "naive": variance_ratios(
            a, b, interpolate(a, b, alpha), x_eval, alpha, batch_size=batch_size
        ),
        "aligned": variance_ratios(
            a, b_al, interpolate(a, b_al, alpha), x_eval, alpha, batch_size=batch_size
        ),
        "aligned + REPAIR": variance_ratios(
            a, b_al, repaired, x_eval, alpha, batch_size=batch_size
        ),
    }


def pair_seeds(seed: int, pairs: int) -> list[tuple[int, int]]:
    """Initialization seeds of `pairs` independently trained pairs: pair i is (seed + 2i, seed + 2i + 1),
    so no network belongs to two pairs."""
    return [(seed + 2 * i, seed + 2 * i + 1) for i in range(int(pairs))]


def train_pairs(
    name: str,
    data: ThemeData,
    cfg: ConnectivityConfig,
    seed: int,
    device: torch.device | str = "cpu",
    depth: int | None = None,
    batchnorm: bool = True,
) -> list[tuple[nn.Module, nn.Module]]:
    """`cfg.pairs` independently trained pairs (A, B) of network `name` (see `pair_seeds`, `train_network`)."""
    return [
        tuple(train_network(name, data, cfg, s, device, depth=depth, batchnorm=batchnorm)[0] for s in seeds)
        for seeds in pair_seeds(seed, cfg.pairs)
    ]


def study_pairs(
    name: str,
    pairs: Sequence[tuple[nn.Module, nn.Module]],
    data: ThemeData,
    alphas: Sequence[float],
    stats_batch: int | None = None,
    methods: Mapping[str, Sequence[tuple]] | None = None,
    depth: int | None = None,
) -> list[NetworkStudy]:
    """`study_network` on every pair; each study's curves carry a `pair` column (and `depth`, when given)."""
    out = []
    for i, (a, b) in enumerate(pairs):
        st = study_network(name, a, b, data, alphas, stats_batch=stats_batch, methods=methods)
        if depth is not None:
            st.curves.insert(3, "depth", int(depth))
        st.curves.insert(3, "pair", i)
        out.append(st)
    return out


def per_pair(table, column: str = "barrier", **where: Any) -> np.ndarray:
    """The values of `column` of the rows of `table` that match `where` (column=value), ordered by pair."""
    sel = table
    for k, v in where.items():
        sel = sel[sel[k] == v]
    if sel.empty:
        raise ShammieError(f"no rows match {where}")
    return sel.sort_values("pair")[column].to_numpy(float)


def pair_slopes(table, x: str, y: str, log2_x: bool = False) -> np.ndarray:
    """Per pair (rows of `table` grouped by `pair`), the least-squares slope of `y` against `x` (or log2 x):
    a trend measured on each pair, so that the pairs give its uncertainty."""
    out = []
    for _, g in table.groupby("pair", sort=True):
        xs = g[x].to_numpy(float)
        if len(np.unique(xs)) < 2:
            raise ShammieError(f"a slope needs at least two distinct values of {x!r} in every pair")
        out.append(float(np.polyfit(np.log2(xs) if log2_x else xs, g[y].to_numpy(float), 1)[0]))
    return np.asarray(out)


def max_output_gap(model_1: nn.Module, model_2: nn.Module, x: torch.Tensor) -> float:
    """The largest absolute difference between two networks' outputs on inputs `x` (an identity check)."""
    with torch.no_grad():
        return float((model_1.eval()(x) - model_2.eval()(x)).abs().max())


def matching_comparison(
    model_a: nn.Module,
    model_b: nn.Module,
    data: ThemeData,
    batch_size: int | None = None,
    seed: int = 0,
):
    """Activation matching against weight matching on one pair: the test-accuracy barrier at alpha 0.5 of
    naive interpolation, of each alignment, and of each alignment + REPAIR. Returns a DataFrame with
    columns method, repair, endpoints, midpoint, barrier, and the weight-matching Alignment."""
    import pandas as pd

    b_act, _ = align(model_a, model_b, data.calib, "activation", batch_size=batch_size or 1000)
    b_wm, wm = align(model_a, model_b, method="weight", seed=seed)
    rows = []
    test = {"test": data.eval_sets["test"]}
    for method, b in (("naive", model_b), ("activation matching", b_act), ("weight matching", b_wm)):
        for fix in ((None,) if method == "naive" else (None, "repair")):
            c = interpolation_curve(model_a, b, test, [0.0, 0.5, 1.0], fix=fix, calib=data.calib,
                                    batch_size=batch_size)
            bar = barrier(c, "acc", "test")
            rows.append({"method": method, "repair": fix is not None, "endpoints": bar["endpoints"],
                         "midpoint": bar["mid_value"], "barrier": bar["midpoint"]})
    return pd.DataFrame(rows), wm
