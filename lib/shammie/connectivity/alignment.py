"""Neuron alignment: activation matching and weight matching.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..core import ShammieError
from .permutation import (
    PermSpec,
    Tap,
    _check_perms,
    apply_permutation,
    check_compatible,
    permutation_spec,
)
from .statistics import _device_of, _input_batches


@dataclass
class Alignment:
    """The permutations that put network B's units in network A's order, and how they were found.

    `seconds` is the wall-clock time of the whole alignment, `lap_seconds` the part spent in
    `scipy.optimize.linear_sum_assignment` (`lap_calls` calls), and `stats_seconds` the part spent in the
    forward passes that gather activation statistics; `objective` per group is the mean matched
    correlation (activation matching) or the matched weight inner product (weight matching).
    """

    perms: dict[str, torch.Tensor]
    method: str
    seconds: float = 0.0
    lap_seconds: float = 0.0
    lap_calls: int = 0
    sweeps: int = 1
    objective: dict[str, float] = field(default_factory=dict)
    stats_seconds: float = (
        0.0  # activation matching: the pass over the data that gathers correlations
    )

    def is_identity(self) -> bool:
        """True when every permutation is the identity."""
        return all(torch.equal(p, torch.arange(len(p))) for p in self.perms.values())


class _LapTimer:
    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def solve(self, cost: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        rows, cols = linear_sum_assignment(cost, maximize=True)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        if not np.array_equal(
            rows, np.arange(cost.shape[0])
        ):  # pragma: no cover - scipy's contract
            raise ShammieError("linear_sum_assignment returned rows out of order")
        return cols


class _CrossMoments:
    """Streaming moments of two aligned activation matrices: means, variances, and E[a b^T].

    Everything is accumulated about a per-unit shift (each side's first-batch mean): covariances are then
    sums of products of small centred values, so units whose mean is large relative to their spread
    (mean/std in the hundreds) keep correlations in [-1, 1]; the per-batch sums and product are float32
    (fast: one matrix product and two column sums per side on one contiguous buffer), the accumulation
    float64."""

    def __init__(self):
        self.n = 0
        self.shift_a = self.shift_b = None
        self.sa = self.sb = self.ssa = self.ssb = self.cross = None

    @staticmethod
    def _centred(t: torch.Tensor, shift: torch.Tensor | None, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, C) float32, contiguous: the (ReLU of the) channels-last activations minus `shift` (this
        batch's own mean when None), written in one pass; and the shift used."""
        t = t.detach()
        src = t if t.dim() == 2 else t.movedim(1, -1)  # (N, ..., C)
        buf = torch.empty(src.shape, dtype=torch.float32, device=t.device)
        if relu:
            torch.clamp_min(src, 0, out=buf)
        else:
            buf.copy_(src)
        buf = buf.view(-1, t.shape[1])
        if shift is None:  # any per-unit constant near the mean will do: it only has to remove the offset
            shift = buf.mean(0)
        return buf.sub_(shift), shift

    def add(self, a: torch.Tensor, b: torch.Tensor, relu: bool = False) -> None:
        """Add a batch: `a`, `b` of shape (N, C) or (N, C, ...) (channels pooled over positions); with
        `relu` the moments are those of relu(a) and relu(b)."""
        a, self.shift_a = self._centred(a, self.shift_a, relu)
        b, self.shift_b = self._centred(b, self.shift_b, relu)
        f64 = torch.float64
        parts = (
            a.sum(0).to(f64),
            b.sum(0).to(f64),
            (a * a).sum(0).to(f64),
            (b * b).sum(0).to(f64),
            (a.T @ b).to(f64),  # float32 product of centred values per batch, float64 accumulation
        )
        if self.sa is None:
            self.sa, self.sb, self.ssa, self.ssb, self.cross = parts
        else:
            for mine, new in zip((self.sa, self.sb, self.ssa, self.ssb, self.cross), parts):
                mine += new
        self.n += a.shape[0]

    def correlation(self) -> torch.Tensor:
        """Pearson correlations, A's units in rows and B's in columns; 0 where a unit is constant."""
        n = self.n
        ma, mb = self.sa / n, self.sb / n  # means of the shifted values (small)
        sa = (self.ssa / n - ma * ma).clamp_min(0).sqrt()
        sb = (self.ssb / n - mb * mb).clamp_min(0).sqrt()
        inv_a = torch.where(sa > 0, 1.0 / sa.clamp_min(1e-300), torch.zeros_like(sa))
        inv_b = torch.where(sb > 0, 1.0 / sb.clamp_min(1e-300), torch.zeros_like(sb))
        corr = self.cross / n  # a fresh tensor: the accumulator is left alone
        corr.addr_(ma, mb, alpha=-1.0)
        corr.mul_(inv_a[:, None]).mul_(inv_b[None, :])
        return corr.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0).clamp_(-1.0, 1.0)


@torch.no_grad()
def match_activations(
    model_a: nn.Module,
    model_b: nn.Module,
    x: Any,
    spec: PermSpec | None = None,
    batch_size: int | None = 1000,
) -> Alignment:
    """Activation matching: for every permutation group, the Pearson correlation between A's and B's units
    over the inputs `x` (summed over the group's taps), then the assignment that maximizes the summed
    correlation (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`)."""
    t_start = time.perf_counter()
    check_compatible(model_a, model_b)
    spec = spec or permutation_spec(model_a)
    taps = [(p, t) for p, ts in spec.taps.items() for t in ts]
    if any(not ts for ts in spec.taps.values()):
        raise ShammieError("every permutation group needs at least one activation tap")
    model_a.eval()
    model_b.eval()
    acc = {t: _CrossMoments() for _, t in taps}
    outs: dict[str, dict[Tap, torch.Tensor]] = {"a": {}, "b": {}}
    handles = []
    for side, model in (("a", model_a), ("b", model_b)):
        for _, tap in taps:  # raw outputs: the ReLU of a tap is applied while centring (no extra copy)
            handles.append(
                model.get_submodule(tap.module).register_forward_hook(
                    lambda m, i, o, side=side, tap=tap: outs[side].__setitem__(tap, o)
                )
            )
    dev_a, dev_b = _device_of(model_a), _device_of(model_b)
    try:
        for xb in _input_batches(x, batch_size):
            model_a(xb.to(dev_a))
            model_b(xb.to(dev_b))
            for _, tap in taps:
                oa = outs["a"][tap]
                acc[tap].add(oa, outs["b"][tap].to(oa.device), relu=tap.relu)
            outs["a"].clear()
            outs["b"].clear()
    finally:
        for h in handles:
            h.remove()
    stats_seconds = time.perf_counter() - t_start
    lap = _LapTimer()
    perms, objective = {}, {}
    for p, ts in spec.taps.items():
        corr = acc[ts[0]].correlation()
        for t in ts[1:]:
            corr += acc[t].correlation()
        if len(ts) > 1:
            corr /= len(ts)
        cost = corr.cpu().numpy()
        cols = lap.solve(cost)
        perms[p] = torch.as_tensor(cols, dtype=torch.long)
        objective[p] = float(cost[np.arange(len(cols)), cols].mean())
    return Alignment(
        perms,
        "activation",
        time.perf_counter() - t_start,
        lap.seconds,
        lap.calls,
        1,
        objective,
        stats_seconds,
    )


def _flat_along(w: torch.Tensor, axis: int) -> torch.Tensor:
    return w.movedim(axis, 0).reshape(w.shape[axis], -1)


@torch.no_grad()
def match_weights(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermSpec | None = None,
    max_sweeps: int = 100,
    seed: int = 0,
    init: Mapping[str, torch.Tensor] | None = None,
) -> Alignment:
    """Weight matching (Git Re-Basin's permutation coordinate descent): repeatedly, for each group in a
    random order, choose the permutation that maximizes sum over the group's weights of <W_A, P W_B>
    with every other permutation held fixed; stop after a sweep that improves nothing. Data-free; a
    local optimum."""
    t_start = time.perf_counter()
    check_compatible(model_a, model_b)
    spec = spec or permutation_spec(model_a)
    if max_sweeps < 1:
        raise ShammieError(f"max_sweeps must be >= 1, got {max_sweeps}")
    sa = {k: v.detach().float().cpu() for k, v in model_a.state_dict().items() if k in spec.params}
    sb = {k: v.detach().float().cpu() for k, v in model_b.state_dict().items() if k in spec.params}
    for k in list(sa):
        if k in spec.views:
            sa[k], sb[k] = sa[k].reshape(spec.views[k]), sb[k].reshape(spec.views[k])
    names = list(spec.perms)
    perms = {
        p: (init[p].clone() if init is not None else torch.arange(n)) for p, n in spec.perms.items()
    }
    _check_perms(spec, perms)
    version = dict.fromkeys(names, 0)
    entries = {p: [(k, d) for k, d in spec.entries(p) if k in spec.params] for p in names}
    flat_a = {(k, d): _flat_along(sa[k], d) for p in names for k, d in entries[p]}
    # per (key, axis): the versions of the other axes' permutations, B's flattened weight and the product
    cache: dict[tuple[str, int], tuple[tuple, torch.Tensor, torch.Tensor]] = {}

    def term(key: str, axis: int) -> torch.Tensor:
        """<A's weight, B's weight with every other axis permuted> as an n x n matrix over `axis`."""
        others = tuple(
            (d, version[p]) for d, p in enumerate(spec.axes[key]) if p is not None and d != axis
        )
        hit = cache.get((key, axis))
        if hit is not None and hit[0] == others:
            return hit[2]
        w = sb[key]
        for d, p in enumerate(spec.axes[key]):
            if p is not None and d != axis:
                w = w.index_select(d, perms[p])
        fb = _flat_along(w, axis)
        fa = flat_a[(key, axis)]
        if (
            hit is not None
        ):  # a few units moved since: update the product by the columns that changed
            changed = (fb != hit[1]).any(0).nonzero().squeeze(1)
            if len(changed) * 3 < fb.shape[1]:
                value = hit[2].addmm_(fa[:, changed], (fb[:, changed] - hit[1][:, changed]).T)
                cache[(key, axis)] = (others, fb, value)
                return value
        value = fa @ fb.T
        cache[(key, axis)] = (others, fb, value)
        return value

    rng = np.random.default_rng(seed)
    lap = _LapTimer()
    objective: dict[str, float] = {}
    buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        improved = False
        for idx in rng.permutation(len(names)):
            p = names[idx]
            if not entries[p]:
                continue
            n = spec.perms[p]
            if n not in buffers:  # reused n x n buffers: no fresh 8n^2-byte allocation per step
                buffers[n] = (torch.empty(n, n), torch.empty(n, n, dtype=torch.float64))
            buf32, buf64 = buffers[n]
            terms = [term(k, d) for k, d in entries[p]]
            buf32.copy_(terms[0])
            for t in terms[1:]:
                buf32.add_(t)
            cost = buf64.copy_(buf32).numpy()
            cols = lap.solve(cost)
            rows = np.arange(len(cols))
            old = float(cost[rows, perms[p].numpy()].sum())
            new = float(cost[rows, cols].sum())
            objective[p] = max(old, new)
            if new > old + 1e-9 * abs(old) + 1e-12:
                perms[p] = torch.as_tensor(cols, dtype=torch.long)
                version[p] += 1
                improved = True
        if not improved:
            break
    return Alignment(
        perms, "weight", time.perf_counter() - t_start, lap.seconds, lap.calls, sweeps, objective
    )


def align(
    model_a: nn.Module, model_b: nn.Module, x: Any = None, method: str = "activation", **kwargs: Any
) -> tuple[nn.Module, Alignment]:
    """Match B's units to A's (`method` 'activation' needs inputs `x`; 'weight' is data-free) and return
    (B permuted into A's order, the Alignment)."""
    spec = permutation_spec(model_a)
    if method == "activation":
        if x is None:
            raise ShammieError(
                "activation matching needs inputs: pass x (a batch of training inputs)"
            )
        alignment = match_activations(model_a, model_b, x, spec, **kwargs)
    elif method == "weight":
        alignment = match_weights(model_a, model_b, spec, **kwargs)
    else:
        raise ShammieError(f"unknown alignment method {method!r}: choose 'activation' or 'weight'")
    return apply_permutation(model_b, alignment.perms, spec), alignment
