"""Scaling-law fits and curves, each against a peer measured in the same run, one thread:

1. M4 by variable projection (ours) against scipy.optimize.least_squares on the same square-log loss
   over (log beta, c, alpha, eps_inf) from several starts: seconds and the objective reached.
2. The MNIST-1D batched ensemble against training the same MLPs one by one (same code, one member per
   call): seconds and the ratio; issue 23's target: the batched ensemble >= 3x faster.

Times are CPU seconds (time.process_time, best of repeats): one thread, so the work done.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_of, target  # noqa: E402

from shammie import scaling_laws as sl  # noqa: E402
from shammie.core import configure_threads  # noqa: E402


def _scipy_m4(x, y, eps0: float, starts: int = 8, seed: int = 0):
    """Generic multi-start least squares on M4's square-log residuals (bounds as in our estimator)."""
    lx, lz = np.log(x), np.log(eps0 - y)
    top = y.min() - 1e-3

    def resid(p):
        lb, c, a, e = p
        return np.log(y - e) - lb - c * lx - a * lz

    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        p0 = [rng.uniform(-1, 3), rng.uniform(-1, -0.05), rng.uniform(0, 1.5), rng.uniform(0, top * 0.99)]
        r = least_squares(resid, p0, bounds=([-np.inf, -np.inf, 0, 0], [np.inf, 0, np.inf, top]))
        if best is None or r.cost < best.cost:
            best = r
    return float(np.mean(best.fun**2))


def bench_fits() -> None:
    curves = {
        "sphere (mean of 3 seeds)": (np.array([100, 158, 251, 398, 630, 1000, 1584, 2511, 3981, 6309, 10000, 15848,
                                               25118, 39810.0]),
                                     np.array([0.423263, 0.412525, 0.387879, 0.360386, 0.337211, 0.309478, 0.290984,
                                               0.267812, 0.255143, 0.244391, 0.235543, 0.229666, 0.221805, 0.217242]), 0.5),
        "planted M4 + 1% noise": (*sl.planted_curves()["M4"][:2], 1.0),
    }
    print(f"{'M4 fit':<28}{'ours s':>10}{'scipy s':>10}{'ratio':>8}{'ours obj':>12}{'scipy obj':>12}")
    for name, (x, y, eps0) in curves.items():
        if "noise" in name:
            y = y * np.exp(np.random.default_rng(0).normal(0, 0.01, y.size))
        t_ours, m = best_of(lambda x=x, y=y, e=eps0: sl.M4(eps0=e, einf_rule="global").fit(x, y), clock=time.process_time)
        t_peer, obj = best_of(lambda x=x, y=y, e=eps0: _scipy_m4(x, y, e), clock=time.process_time)
        print(f"{name:<28}{t_ours:>10.3f}{t_peer:>10.3f}{t_peer / t_ours:>7.1f}x{m.objective:>12.3e}{obj:>12.3e}")
    print("(ratio = scipy seconds / ours; objective: lower is better, ours should be <= scipy's)")


def bench_ensemble() -> None:
    g = torch.Generator().manual_seed(0)
    xp, yp = torch.randn(4000, 40, generator=g), torch.randint(0, 10, (4000,), generator=g)
    xt, yt = torch.randn(1000, 40, generator=g), torch.randint(0, 10, (1000,), generator=g)
    sizes, seeds, kw = sl.log_sizes(64, 4000, 2), [0, 1, 2], {"steps": 150, "hidden": 64, "n_checkpoints": 6}
    cpu = time.process_time  # CPU seconds: one thread, so the work done, whatever else the machine runs
    t_ens, _ = best_of(lambda: sl.ensemble_curves(xp, yp, xt, yt, sizes, seeds, **kw), repeats=2, clock=cpu)
    t_one, _ = best_of(lambda: [sl.ensemble_curves(xp, yp, xt, yt, [n], [s], **kw) for s in seeds for n in sizes],
                       repeats=1, clock=cpu)
    m = len(sizes) * len(seeds)
    print(f"batched ensemble of {m} MLPs, 150 steps: {t_ens:.2f} s; one by one: {t_one:.2f} s; "
          f"ratio {t_one / t_ens:.1f}x (>1 means the ensemble is faster)")
    target("scaling_laws.batched_ensemble_vs_one_by_one", t_one / t_ens, 3.0)


def main() -> None:
    configure_threads(1)
    bench_fits()
    bench_ensemble()


if __name__ == "__main__":
    main()
