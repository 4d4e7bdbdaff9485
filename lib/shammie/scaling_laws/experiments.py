"""The notebook's experiments: measure the workbook's learning curves and fit every estimator on them.

A `Curve` is one learning curve with its own seeds (a replicate), the loss level of random guessing
(eps_0 for M4) and where it starts (the cut-off). `fit_table` fits M1-M4 on the early part of each
curve and scores the extrapolation, one row per (curve, estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import ScalingLawsConfig
from .curves import EnsembleCurves, ensemble_curves, sphere_curve, until_best
from .protocol import fit_curve

__all__ = ["Curve", "sphere_sizes", "measure_sphere", "measure_mnist", "mnist_curves", "fittable", "fit_table", "planted_curves"]


@dataclass
class Curve:
    """One learning curve: name, kind (sphere / data size / examples seen), replicate, x, y, eps_0.
    Points at or above the random-guessing level eps_0 (before learning starts) are dropped."""

    name: str
    kind: str
    replicate: int
    x: np.ndarray
    y: np.ndarray
    eps0: float
    cutoff: int = 0

    def __post_init__(self) -> None:
        # a point at or above random guessing says nothing about the law (M4 needs eps < eps_0): drop it
        keep = self.y < self.eps0 - 1e-3
        self.x, self.y = np.asarray(self.x, float)[keep], np.asarray(self.y, float)[keep]

    def above(self, cutoff: int) -> Curve:
        """The same curve with only the points x > cutoff (the paper's Fig. 2 cut-offs)."""
        keep = self.x > cutoff
        return Curve(f"{self.name} x>{cutoff}" if cutoff else self.name, self.kind, self.replicate, self.x[keep],
                     self.y[keep], self.eps0, cutoff)


def sphere_sizes(cfg: ScalingLawsConfig) -> np.ndarray:
    """`cfg.sphere_sizes` log-spaced data sizes from sphere_min to sphere_max."""
    return np.unique(np.round(np.logspace(np.log10(cfg.sphere_min), np.log10(cfg.sphere_max), cfg.sphere_sizes)).astype(int))


def measure_sphere(cfg: ScalingLawsConfig, seed: int, progress=None) -> list[Curve]:
    """One sphere curve per replicate, each the mean test error of `sphere_seeds_per_curve` seeds."""
    sizes = sphere_sizes(cfg)
    out = []
    for r in range(cfg.replicates):
        seeds = [seed + 1000 * r + j for j in range(cfg.sphere_seeds_per_curve)]
        errs = np.mean([sphere_curve(sizes, cfg.sphere_dim, cfg.sphere_delta, s) for s in seeds], axis=0)
        out.append(Curve(f"sphere r{r}", "sphere", r, sizes.astype(float), errs, eps0=0.5))
        if progress is not None:
            progress(r + 1, cfg.replicates)
    return out


def measure_mnist(cfg: ScalingLawsConfig, data, seed: int, sizes, progress=None) -> EnsembleCurves:
    """The MNIST-1D batched ensemble: one MLP per (replicate seed, data size)."""
    return ensemble_curves(data.x_train, data.y_train, data.x_test, data.y_test, sizes,
                           [seed + r for r in range(cfg.replicates)], cfg.steps, hidden=cfg.hidden, lr=cfg.lr,
                           batch_size=cfg.batch_size, n_checkpoints=cfg.checkpoints, progress=progress)


def mnist_curves(ens: EnsembleCurves, eps0: float = 0.9) -> list[Curve]:
    """Per replicate, the data-size curve (final test error against n) and the examples-seen curve of
    the largest-n model (test error against examples seen, up to its best point)."""
    out = []
    for r in range(len(ens.seeds)):
        out.append(Curve(f"data size r{r}", "data size", r, np.asarray(ens.sizes, float), ens.final[r], eps0))
        xs, ys = until_best(ens.examples_seen(), ens.trace[r, -1])
        out.append(Curve(f"examples seen r{r}", "examples seen", r, xs, ys, eps0))
    return out


def fittable(curve: Curve, factor: float = 2.0, min_fit_points: int = 5) -> bool:
    """Whether `curve` has at least `min_fit_points` points to fit (x <= x_max/factor) and one beyond."""
    if curve.x.size == 0:
        return False
    fit = curve.x <= curve.x.max() / factor
    return int(fit.sum()) >= min_fit_points and int((~fit).sum()) >= 1


def fit_table(curves: list[Curve], factor: float = 2.0, einf_rule: str = "paper",
              min_fit_points: int = 5) -> tuple[pd.DataFrame, dict]:
    """Fit M1-M4 on each curve's early part; one row per (curve, estimator) with the fit and
    extrapolation RMSE and the parameters; also the fitted models by (curve name, estimator).
    Curves with fewer than `min_fit_points` points to fit are left out and named in `table.attrs["skipped"]`."""
    rows, models, skipped = [], {}, []
    for c in curves:
        if not fittable(c, factor, min_fit_points):
            skipped.append(c.name)
            continue
        for f in fit_curve(c.name, c.x, c.y, factor=factor, eps0=c.eps0, einf_rule=einf_rule):
            rows.append({"curve": c.name, "kind": c.kind, "replicate": c.replicate, "cutoff": c.cutoff,
                         "estimator": f.estimator, "rmse_fit": f.rmse_fit, "rmse_extrapolation": f.rmse_extrapolation,
                         **f.params})
            models[(c.name, f.estimator)] = f.model
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped
    return table, models


def planted_curves(n: int = 24, lo: float = 10.0, hi: float = 1e5) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """Noise-free curves of each form with known parameters: name -> (x, y, true parameters)."""
    from .estimators import m4_curve

    x = np.logspace(np.log10(lo), np.log10(hi), n)
    truth = {
        "M1": {"beta": 3.0, "c": -0.2},
        "M2": {"beta": 2.0, "c": -0.3, "eps_inf": 0.1},
        "M3": {"beta": 2.0, "c": -0.4, "gamma": 1e-3},
        "M4": {"beta": 20.0, "c": -0.5, "alpha": 0.8, "eps_inf": 0.1, "eps0": 1.0},
    }
    ys = {
        "M1": 3.0 * x**-0.2,
        "M2": 0.1 + 2.0 * x**-0.3,
        "M3": 2.0 * (1 / x + 1e-3) ** 0.4,
        "M4": m4_curve(x, 20.0, -0.5, 0.8, 0.1, 1.0),
    }
    return {k: (x, ys[k], truth[k]) for k in truth}
