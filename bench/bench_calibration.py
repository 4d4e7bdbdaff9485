"""Calibration speed on 1M predictions (10 classes, float32 logits as a network outputs them), one thread,
in one run: our ECE against torchmetrics' `multiclass_calibration_error`, and our temperature scaling
against a reference fit made of trusted parts (scipy's bounded scalar search over T on torch's
cross-entropy) and against the recipe of the reference TS code (gpleiss/temperature_scaling: torch LBFGS,
lr 0.01, 50 iterations). Prints seconds (best of 3), the ratio peer / ours (> 1: ours is faster), and
the values, so that speed is not bought with a different answer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timing import best_of

from shammie.calibration import TemperatureScaling, ece
from shammie.core import configure_threads

N, K, BINS = 1_000_000, 10, 15


def _problem(seed: int = 0):
    """Over-confident logits: labels drawn at temperature 2 from softmax(z / 2)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, K, generator=g) * 3.0
    y = torch.multinomial(torch.softmax(z / 2.0, 1), 1, generator=g).squeeze(1)
    return z, y


def _ts_scipy(z, y) -> float:
    from scipy.optimize import minimize_scalar

    z64 = z.double()
    res = minimize_scalar(lambda t: float(F.cross_entropy(z64 / t, y)), bounds=(0.05, 20.0), method="bounded",
                          options={"xatol": 1e-6})
    return float(res.x)


def _ts_gpleiss(z, y) -> float:
    t = torch.nn.Parameter(torch.ones(1) * 1.5)
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=50)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / t, y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.detach())


def main() -> None:
    from torchmetrics.functional.classification import multiclass_calibration_error

    configure_threads(1)
    z, y = _problem()
    rows = []
    ours_t, ours_v = best_of(lambda: ece(z, y, n_bins=BINS))
    peer_t, peer_v = best_of(lambda: float(multiclass_calibration_error(z, y, num_classes=K, n_bins=BINS, norm="l1")))
    rows.append(("ECE, 15 bins", "torchmetrics", ours_t, peer_t, f"{ours_v:.6f}", f"{peer_v:.6f}"))

    ts_t, ts = best_of(lambda: TemperatureScaling().fit(z, y))
    sc_t, sc_T = best_of(lambda: _ts_scipy(z, y))
    gp_t, gp_T = best_of(lambda: _ts_gpleiss(z, y), repeats=1)  # ~10x slower than the others: once

    def nll_at(temp):
        return float(F.cross_entropy(z.double() / temp, y))

    ours_txt = f"T={ts.temperature:.4f} NLL={nll_at(ts.temperature):.6f}"
    rows.append(("temperature scaling", "scipy bounded + torch CE", ts_t, sc_t, ours_txt,
                 f"T={sc_T:.4f} NLL={nll_at(sc_T):.6f}"))
    rows.append(("temperature scaling", "gpleiss recipe (LBFGS)", ts_t, gp_t, ours_txt,
                 f"T={gp_T:.4f} NLL={nll_at(gp_T):.6f}"))

    print(f"{N:,} predictions, {K} classes, float32 logits, {torch.get_num_threads()} thread; seconds are best of 3 "
          "(gpleiss: one run)")
    head = f"{'task':<21}{'peer':<26}{'ours s':>8}{'peer s':>8}{'peer/ours':>11}  {'ours':<28}peer"
    print(head)
    print("-" * len(head))
    for task, peer, t_ours, t_peer, v_ours, v_peer in rows:
        print(f"{task:<21}{peer:<26}{t_ours:>8.3f}{t_peer:>8.3f}{t_peer / t_ours:>10.2f}x  {v_ours:<28}{v_peer}")
    print("peer/ours > 1 means ours is faster. The planted temperature is 2.0; the gpleiss recipe "
          "(lr 0.01, 50 iterations) stops far from the optimum, see its NLL.")


if __name__ == "__main__":
    main()
