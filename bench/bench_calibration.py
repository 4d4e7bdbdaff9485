"""Calibration speed against peers measured in the same process, one torch thread, CPU seconds
(time.process_time, best of repeats, ours and the peer interleaved), with the values beside the times
so that speed is not bought with a different answer.

1. ECE and MCE (15 bins) on 10k, 100k and 1M predictions (10 classes, float32 logits as a network
   outputs them) against torchmetrics' `multiclass_calibration_error` (norm l1 / max): equal-width bins,
   and our equal-mass bins against the same torchmetrics call (torchmetrics has equal-width bins only,
   so that is the peer a user would otherwise run). Issue 23's target: at least as fast (ratio >= 1)
   at every size and both binnings.
2. Temperature scaling on 1M predictions against a reference fit made of trusted parts (scipy's
   bounded scalar search over T on torch's float64 cross-entropy); target >= 1x. `--gpleiss` adds the
   recipe of the reference TS code (gpleiss/temperature_scaling: torch LBFGS, lr 0.01, 50 iterations),
   ~10x slower than the others, so off by default.

    python bench/bench_calibration.py [--sizes 10000 100000 1000000] [--gpleiss]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timing import target

from shammie.calibration import TemperatureScaling, ece, mce
from shammie.core import configure_threads

K, BINS = 10, 15


def _problem(n: int, seed: int = 0):
    """Over-confident logits: labels drawn at temperature 2 from softmax(z / 2)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=g) * 3.0
    y = torch.multinomial(torch.softmax(z / 2.0, 1), 1, generator=g).squeeze(1)
    return z, y


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def best_cpu(fns: dict, repeats: int) -> tuple[dict, dict]:
    """CPU seconds (best of `repeats`, the calls interleaved) and the last value of each function."""
    times = {name: float("inf") for name in fns}
    values = {}
    for name, fn in fns.items():  # warm-up: imports, first-call allocations
        values[name] = fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            values[name] = fn()
            times[name] = min(times[name], time.process_time() - t0)
    return times, values


def bench_metrics(sizes: list[int]) -> list[tuple]:
    from torchmetrics.functional.classification import multiclass_calibration_error as tm

    rows = []
    for n in sizes:
        z, y = _problem(n)
        fns = {
            "ece width": lambda z=z, y=y: ece(z, y, n_bins=BINS),
            "ece mass": lambda z=z, y=y: ece(z, y, n_bins=BINS, binning="mass"),
            "mce width": lambda z=z, y=y: mce(z, y, n_bins=BINS),
            "tm l1": lambda z=z, y=y: float(tm(z, y, num_classes=K, n_bins=BINS, norm="l1")),
            "tm max": lambda z=z, y=y: float(tm(z, y, num_classes=K, n_bins=BINS, norm="max")),
        }
        repeats = 15 if n <= 10_000 else 7 if n <= 100_000 else 3
        t, v = best_cpu(fns, repeats)
        for ours, peer in (("ece width", "tm l1"), ("ece mass", "tm l1"), ("mce width", "tm max")):
            rows.append((n, ours, t[ours], t[peer], v[ours], v[peer]))
    return rows


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


def bench_ts(n: int, gpleiss: bool) -> list[tuple]:
    z, y = _problem(n)
    t, v = best_cpu({"ours": lambda: TemperatureScaling().fit(z, y).temperature, "scipy": lambda: _ts_scipy(z, y)},
                    repeats=2)

    def nll_at(temp):
        return float(F.cross_entropy(z.double() / temp, y))

    ours_txt = f"T={v['ours']:.4f} NLL={nll_at(v['ours']):.6f}"
    rows = [("scipy bounded + torch CE", t["ours"], t["scipy"], ours_txt, f"T={v['scipy']:.4f} NLL={nll_at(v['scipy']):.6f}")]
    if gpleiss:
        t0 = time.process_time()
        gp_t = _ts_gpleiss(z, y)  # ~10x slower than the others: once
        rows.append(("gpleiss recipe (LBFGS)", t["ours"], time.process_time() - t0, ours_txt,
                     f"T={gp_t:.4f} NLL={nll_at(gp_t):.6f}"))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--ts-size", type=int, default=1_000_000)
    ap.add_argument("--gpleiss", action="store_true", help="also time the gpleiss LBFGS recipe (slow)")
    args = ap.parse_args(argv)
    configure_threads(1)

    rows = bench_metrics(args.sizes)
    print(f"1. calibration metrics, {K} classes, float32 logits, {BINS} bins, 1 thread; CPU seconds, best of repeats")
    head = f"{'n':>9}  {'ours':<11}{'peer':<18}{'ours ms':>9}{'peer ms':>9}{'peer/ours':>11}  {'ours value':<12}peer value"
    print(head)
    print("-" * len(head))
    for n, ours, t_ours, t_peer, v_ours, v_peer in rows:
        peer = "torchmetrics max" if ours.startswith("mce") else "torchmetrics l1"
        print(f"{n:>9,}  {ours:<11}{peer:<18}{t_ours * 1e3:>9.2f}{t_peer * 1e3:>9.2f}{t_peer / t_ours:>10.2f}x  "
              f"{v_ours:<12.6f}{v_peer:.6f}")
    print("Equal-mass bins have no torchmetrics counterpart: their peer is torchmetrics' equal-width ECE. Every bin\n"
          "is over-confident on this problem, so both binnings give the same ECE (mean confidence - accuracy).")

    ts_rows = bench_ts(args.ts_size, args.gpleiss)
    print(f"\n2. temperature scaling, {args.ts_size:,} predictions; CPU seconds, best of 2"
          + (" (gpleiss: one run)" if args.gpleiss else ""))
    head = f"{'peer':<26}{'ours s':>8}{'peer s':>8}{'peer/ours':>11}  {'ours':<28}peer"
    print(head)
    print("-" * len(head))
    for peer, t_ours, t_peer, v_ours, v_peer in ts_rows:
        print(f"{peer:<26}{t_ours:>8.3f}{t_peer:>8.3f}{t_peer / t_ours:>10.2f}x  {v_ours:<28}{v_peer}")
    print("peer/ours > 1 means ours is faster; the planted temperature is 2.0")

    print("\ntargets (issue 23):")
    for n, ours, t_ours, t_peer, _, _ in rows:
        metric, binning = ours.split()
        target(f"calibration.{metric}_{binning}_{_label(n)}_vs_torchmetrics", t_peer / t_ours, 1.0)
    _, t_ours, t_peer, _, _ = ts_rows[0]
    target("calibration.temperature_scaling_vs_scipy", t_peer / t_ours, 1.0)


if __name__ == "__main__":
    main()
