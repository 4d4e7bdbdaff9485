"""Alignment time against its floor, the time spent in the Hungarian algorithm alone.

Both alignment methods of `shammie.connectivity` end in linear assignment problems
(`scipy.optimize.linear_sum_assignment`, O(n^3) at width n), which cannot be avoided; everything else is
overhead: for weight matching the matrix products and permutations of the weights, for activation
matching the pass over data that gathers the correlations (forward passes of both networks and an
N x n x n cross product) and their normalization. This benchmark reports, at widths up to 2048, the
whole alignment time divided by the Hungarian time measured inside the same run (`ratio`), and for
activation matching also the ratio without the data pass (`solve ratio`) and the `floor ratio`:
1 + (the two networks' forward passes alone + one plain float32 N x n x n product per tapped layer) /
the Hungarian time, what any implementation that reads both networks' activations on these inputs
pays. Target (issue 13): under 2x; where the floor ratio is already 2 or more, the target is below
what the data costs, and `ratio / floor ratio` says how close ours comes to it.

Two pairs per width, 3-hidden-layer BatchNorm MLPs on MNIST-1D inputs with BatchNorm statistics of the
data (no unit dead):
- `independent`: two independent initializations, like the theme's independently trained networks
  (their matched correlations are modest, as for trained pairs). This is the pair the target applies to.
- `twin`: B is A with its units shuffled and 30% weight noise. The matching is then nearly a permutation
  matrix, the Hungarian algorithm finishes ~3-10x faster, and fixed costs weigh more: a stress case.

    python bench/bench_connectivity.py [--widths 256 512 1024 2048] [--samples 1000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
from timing import target

import shammie
from shammie.connectivity import (
    apply_permutation,
    match_activations,
    match_weights,
    permutation_spec,
    random_permutations,
    reset_bn_stats,
)
from shammie.data import load_mnist1d
from shammie.models import MLP


def make_pair(width: int, depth: int, x: torch.Tensor, kind: str, seed: int = 0):
    """Two MLPs of `width` with BatchNorm statistics of `x`: a noisy shuffled twin, or independent."""
    torch.manual_seed(seed)
    a = MLP(x.shape[1], 10, hidden=(width,) * depth, batchnorm=True)
    if kind == "twin":
        b = copy.deepcopy(a)
        with torch.no_grad():
            for p in b.parameters():
                p.add_(0.3 * p.std() * torch.randn_like(p))
        b = apply_permutation(
            b, random_permutations(permutation_spec(b), torch.Generator().manual_seed(seed + 1))
        )
    else:
        torch.manual_seed(seed + 1)
        b = MLP(x.shape[1], 10, hidden=(width,) * depth, batchnorm=True)
    return reset_bn_stats(a.eval(), x), reset_bn_stats(b.eval(), x)


def data_floor_seconds(a, b, x: torch.Tensor, width: int, depth: int, repeats: int = 3) -> float:
    """Seconds of the unavoidable part of activation matching's data pass: both networks' forward passes
    on `x` and one (width x N) @ (N x width) float32 product per hidden layer, each the best of `repeats`."""
    h = torch.randn(len(x), width)
    with torch.no_grad():
        fwd = min(_seconds(lambda: (a(x), b(x))) for _ in range(repeats))
    gemm = min(_seconds(lambda: [h.T @ h for _ in range(depth)]) for _ in range(repeats))
    return fwd + gemm


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(width: int, depth: int, x: torch.Tensor, repeats: int) -> list[dict]:
    rows = []
    for kind in ("twin", "independent"):
        a, b = make_pair(width, depth, x, kind)
        for method in ("activation", "weight"):
            best = None
            for _ in range(repeats):  # keep the repeat with the lowest total time (least disturbed)
                t0 = time.perf_counter()
                res = (
                    match_activations(a, b, x, batch_size=1000)
                    if method == "activation"
                    else match_weights(a, b)
                )
                wall = time.perf_counter() - t0
                if best is None or wall < best[0]:
                    best = (wall, res)
            wall, res = best
            lap = max(res.lap_seconds, 1e-9)
            floor = 1.0 + data_floor_seconds(a, b, x, width, depth) / lap if method == "activation" else float("nan")
            rows.append(
                {
                    "width": width,
                    "pair": kind,
                    "method": method,
                    "total_s": wall,
                    "data_s": res.stats_seconds,
                    "hungarian_s": res.lap_seconds,
                    "calls": res.lap_calls,
                    "sweeps": res.sweeps,
                    "ratio": wall / lap,
                    "solve_ratio": (wall - res.stats_seconds) / lap,
                    "floor_ratio": floor,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000, help="inputs for activation matching")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    shammie.configure_threads(1)
    x = load_mnist1d().x_train[: args.samples]
    print(
        f"alignment time / Hungarian time (floor); {args.depth}-hidden-layer BN MLPs, activation matching on "
        f"{len(x)} inputs, 1 torch thread"
    )
    print(
        f"{'width':>6} {'pair':>12} {'method':>11} {'total s':>8} {'data s':>7} {'hungarian s':>12} {'calls':>6} "
        f"{'sweeps':>7} {'ratio':>7} {'solve ratio':>12} {'floor ratio':>12}"
    )
    rows = []
    for w in args.widths:
        for r in measure(w, args.depth, x, args.repeats):
            rows.append(r)
            print(
                f"{r['width']:>6} {r['pair']:>12} {r['method']:>11} {r['total_s']:>8.3f} {r['data_s']:>7.3f} "
                f"{r['hungarian_s']:>12.3f} {r['calls']:>6} {r['sweeps']:>7} {r['ratio']:>6.2f}x "
                f"{r['solve_ratio']:>11.2f}x {_ratio(r['floor_ratio']):>12s}",
                flush=True,
            )
    print("summary (target: ratio under 2x):")
    for pair in ("independent", "twin"):
        for method in ("weight", "activation"):
            sel = [r for r in rows if r["pair"] == pair and r["method"] == method]
            over = [r["width"] for r in sel if r["ratio"] >= 2]
            line = f"  {pair:>11} pair, {method:>10} matching: ratio {min(r['ratio'] for r in sel):.2f}-"
            line += f"{max(r['ratio'] for r in sel):.2f}x, "
            line += "under 2x at every width" if not over else f"2x or more at widths {over}"
            if method == "activation":
                line += f"; without the data pass {max(r['solve_ratio'] for r in sel):.2f}x at most"
                floors = [(r["width"], r["floor_ratio"]) for r in sel if r["floor_ratio"] >= 2]
                if floors:
                    shown = ", ".join(f"{w}: {f:.2f}x" for w, f in floors)
                    line += f"; the forward passes and products alone cost 2x or more at widths {shown}"
            print(line + (" [stress case]" if pair == "twin" else ""))
    print("targets (issue 23: alignment <= 2x the Hungarian floor at widths 256-2048, independent pair):")
    for r in rows:
        if r["pair"] == "independent":
            target(f"connectivity.{r['method']}_matching_w{r['width']}_over_hungarian", r["ratio"], 2.0,
                   higher_is_better=False)


if __name__ == "__main__":
    main()
