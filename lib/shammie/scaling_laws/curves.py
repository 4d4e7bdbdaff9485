"""Learning curves measured inside the workbook.

- `sphere_curve`: the paper's Fig. 2 toy. x uniform on the sphere S^{d-1}, label sign<w*, x> flipped
  with probability delta, logistic regression on the first n examples. Its test error is exact, with
  no test set: eps = delta + (1 - 2 delta) theta / pi, theta the angle between w_hat and w*; the
  Bayes risk is delta.
- `ensemble_curves`: MNIST-1D MLPs, one per (data size, seed), all trained at once as a batched
  ensemble (weights stacked along a model axis, one `baddbmm` per layer). Model m draws its batches
  from the first n_m examples of its seed's permutation of the pool, so sizes are nested. Test error
  is recorded at log-spaced checkpoints, which also gives examples-seen curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ShammieError

__all__ = ["sphere_error", "sphere_curve", "EnsembleCurves", "ensemble_curves", "log_sizes", "until_best"]


def log_sizes(lo: int, hi: int, per_octave: int = 2) -> list[int]:
    """Integers from `lo` to `hi` spaced by 2^(1/per_octave), rounded, without duplicates."""
    if not 1 <= lo < hi:
        raise ShammieError(f"log_sizes needs 1 <= lo < hi, got {lo}, {hi}")
    k = np.arange(0, int(math.floor(per_octave * math.log2(hi / lo))) + 1)
    return sorted({int(round(lo * 2.0 ** (i / per_octave))) for i in k} | {hi})


def sphere_error(w_hat: np.ndarray, w_star: np.ndarray, delta: float) -> float:
    """Exact test error of the linear classifier sign<w_hat, x> on the flipped-label sphere problem."""
    n_hat = np.linalg.norm(w_hat)
    if n_hat == 0:
        return 0.5
    cos = float(np.clip(np.dot(w_hat, w_star) / (n_hat * np.linalg.norm(w_star)), -1.0, 1.0))
    return delta + (1 - 2 * delta) * math.acos(cos) / math.pi


def sphere_sample(n: int, d: int, delta: float, rng: np.random.Generator, w_star: np.ndarray):
    """n points uniform on S^{d-1} and their labels (+-1) flipped with probability delta."""
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sign(x @ w_star)
    y[y == 0] = 1
    flip = rng.random(n) < delta
    return x, np.where(flip, -y, y)


def sphere_curve(sizes, d: int = 100, delta: float = 0.2, seed: int = 0, l2: float = 1e-4) -> np.ndarray:
    """Exact test error of logistic regression (L2 penalty `l2`, no intercept) trained on the first n
    examples of one pool, for each n in `sizes`."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)
    x, y = sphere_sample(int(max(sizes)), d, delta, rng, w_star)
    errs = []
    for n in sizes:
        yn = y[:n]
        if len(np.unique(yn)) < 2:
            errs.append(0.5)
            continue
        clf = LogisticRegression(C=1.0 / (l2 * n), fit_intercept=False, max_iter=500, tol=1e-6)
        clf.fit(x[:n], yn)
        errs.append(sphere_error(clf.coef_[0], w_star, delta))
    return np.array(errs)


@dataclass
class EnsembleCurves:
    """Test errors of a batched ensemble: `final[s, k]` for seed s and size k; `trace[s, k, t]` at
    step `steps[t]` (examples seen = steps * batch_size)."""

    sizes: list[int]
    seeds: list[int]
    steps: list[int]
    batch_size: int
    final: np.ndarray
    trace: np.ndarray

    def examples_seen(self) -> np.ndarray:
        return np.asarray(self.steps, dtype=np.float64) * self.batch_size


def until_best(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part of a curve up to its lowest value (the paper's "bootstrapped examples": later points
    reflect overfitting, not scaling)."""
    i = int(np.argmin(y))
    return x[: i + 1], y[: i + 1]


def _init_linear(m: int, fan_in: int, fan_out: int, g) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default initialisation for `m` stacked layers; `g` is one generator, or one per model
    (then each model's weights depend only on its own generator)."""
    gens = g if isinstance(g, (list, tuple)) else [g] * m
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.stack([(torch.rand(fan_in, fan_out, generator=gk) * 2 - 1) * bound for gk in gens])
    b = torch.stack([(torch.rand(1, fan_out, generator=gk) * 2 - 1) * bound for gk in gens])
    return w.requires_grad_(), b.requires_grad_()


def _forward(params, x: torch.Tensor) -> torch.Tensor:
    h = x
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1], h, params[i])
        if i + 2 < len(params):
            h = F.relu(h)
    return h


def ensemble_curves(x_pool: torch.Tensor, y_pool: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                    sizes, seeds, steps: int, hidden: int = 128, lr: float = 3e-3, batch_size: int = 128,
                    weight_decay: float = 1e-4, n_checkpoints: int = 24, progress=None) -> EnsembleCurves:
    """Train one MLP (in -> hidden -> hidden -> classes) per (seed, size) as a batched ensemble with
    AdamW and a cosine schedule; return their test errors at the end and at log-spaced steps."""
    sizes = [int(n) for n in sizes]
    seeds = [int(s) for s in seeds]
    n_pool, d_in = x_pool.shape
    if max(sizes) > n_pool:
        raise ShammieError(f"the largest size {max(sizes)} exceeds the pool of {n_pool} training examples")
    if steps < 1 or not sizes or not seeds:
        raise ShammieError("ensemble_curves needs steps >= 1, some sizes and some seeds")
    n_cls = int(y_pool.max()) + 1
    m = len(seeds) * len(sizes)
    perms = torch.stack([torch.randperm(n_pool, generator=torch.Generator().manual_seed(s)) for s in seeds])
    model_perm = perms.repeat_interleave(len(sizes), dim=0)  # [M, n_pool]
    model_n = [n for _ in seeds for n in sizes]
    # one generator per model, seeded by (seed, size): a member's initialisation and batches do not
    # depend on which other members share the ensemble, so the ensemble is only a speed-up
    gens = [torch.Generator().manual_seed(s * 1_000_003 + n) for s in seeds for n in sizes]
    params = [*_init_linear(m, d_in, hidden, gens), *_init_linear(m, hidden, hidden, gens),
              *_init_linear(m, hidden, n_cls, gens)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    checkpoints = sorted({int(round(v)) for v in np.logspace(0, math.log10(steps), n_checkpoints)} | {steps})
    trace = np.zeros((m, len(checkpoints)))
    xt = x_test.unsqueeze(0).expand(m, -1, -1)

    def test_error() -> np.ndarray:
        with torch.no_grad():
            pred = _forward(params, xt).argmax(-1)
            return (pred != y_test.unsqueeze(0)).double().mean(1).numpy()

    rows = torch.arange(m).unsqueeze(1)
    ci = 0
    for step in range(1, steps + 1):
        pos = torch.stack([(torch.rand(batch_size, generator=gk, dtype=torch.float64) * n).long()
                           for gk, n in zip(gens, model_n, strict=True)])
        idx = model_perm[rows, pos]  # [M, B] indices into the pool
        logits = _forward(params, x_pool[idx])
        loss = F.cross_entropy(logits.reshape(-1, n_cls), y_pool[idx].reshape(-1), reduction="mean") * m
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step == checkpoints[ci]:
            trace[:, ci] = test_error()
            ci += 1
            if progress is not None:
                progress(step, steps)
    shape = (len(seeds), len(sizes))
    return EnsembleCurves(sizes, seeds, checkpoints, batch_size, trace[:, -1].reshape(shape),
                          trace.reshape(*shape, len(checkpoints)))
