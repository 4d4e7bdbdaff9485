"""ReST^EM (Singh, Co-Reyes, Agarwal et al., arXiv 2312.06585, Algorithm 1) on the shared decoder.

- E-step (`e_step`): N samples per problem at temperature T from the current policy (KV-cached batched
  decoding, `shammie.lm.generate`), each scored by the binary checker.
- Filter (`keep_correct`): keep the accepted samples, at most K per problem, chosen by a *seeded shuffle*
  (a public implementation keeps the first K in generation order, which is not a random subset).
- M-step (`m_step`): fine-tune a copy of the *base* model (never the base object itself) on the kept set,
  completion-only loss, through `shammie.lm.train_lm`.
- `rest_em`: the iterations, restarting every M-step from the base (the paper) or continuing from the last
  iterate (the variant of the paper's Fig. 7); an empty kept set is recorded as such and leaves the policy
  unchanged. `sft`: fine-tuning on the human worked solutions, the baseline, with the same M-step.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import ShammieError
from ..lm import generate, train_lm
from ..transformer import TinyTransformer
from .task import EOS, PAD, Problem, pack_batch, prompt_tokens, reward, solution_tokens

__all__ = [
    "Samples", "e_step", "sample_completions", "keep_correct", "m_step", "sft", "human_pairs", "Iteration",
    "ReSTRun", "rest_em", "clone_model", "same_weights", "EmptyKeptSet",
]


class EmptyKeptSet(ShammieError):
    """The checker accepted no sample: there is nothing to fine-tune on."""


def clone_model(model: TinyTransformer) -> TinyTransformer:
    """An independent copy (weights and options); the original is never touched."""
    return copy.deepcopy(model)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when two models hold bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def sample_completions(model: TinyTransformer, problems: Sequence[Problem], n: int, *, temperature: float,
                       max_new_tokens: int, generator: torch.Generator | None = None, top_k: int | None = None,
                       top_p: float | None = None, batch_rows: int = 4096, use_cache: bool = True) -> list[list[list[int]]]:
    """`n` completions (token lists, cut after the end token) for each problem: out[i][j] is sample j of
    problem i. Temperature 0 is greedy (then the n samples are identical: use n = 1)."""
    if n < 1:
        raise ShammieError(f"the number of samples per problem must be >= 1, got {n}")
    if temperature < 0:
        raise ShammieError(f"temperature must be >= 0, got {temperature}")
    prompts = [prompt_tokens(p) for p in problems for _ in range(n)]
    rows: list[list[int]] = []
    for i in range(0, len(prompts), batch_rows):
        g = generate(model, prompts[i : i + batch_rows], max_new_tokens, temperature=temperature, top_k=top_k,
                     top_p=top_p, eos_id=EOS, pad_id=PAD, generator=generator, use_cache=use_cache)
        rows.extend(g.rows())
    return [rows[i * n : (i + 1) * n] for i in range(len(problems))]


@dataclass
class Samples:
    """What an E-step drew: `completions[i][j]` (ids) and `rewards` (P, N) of 0/1 for problem i, sample j."""

    problems: list[Problem]
    completions: list[list[list[int]]]
    rewards: np.ndarray

    @property
    def solved_fraction(self) -> float:
        """Fraction of problems with at least one accepted sample."""
        return float((self.rewards.sum(1) > 0).mean()) if len(self.problems) else 0.0

    @property
    def accept_rate(self) -> float:
        """Fraction of samples the checker accepted."""
        return float(self.rewards.mean()) if self.rewards.size else 0.0


def e_step(model: TinyTransformer, problems: Sequence[Problem], n_samples: int, temperature: float, *,
           max_new_tokens: int, generator: torch.Generator | None = None, top_k: int | None = None,
           checker: Callable[[Problem, Sequence[int]], int] = reward) -> Samples:
    """Generate: `n_samples` per problem at `temperature` (> 0) and score each with the binary `checker`."""
    if n_samples < 1:
        raise ShammieError(f"N (samples per problem) must be >= 1, got {n_samples}")
    if not temperature > 0:
        raise ShammieError(f"the E-step samples at a temperature > 0, got {temperature}")
    problems = list(problems)
    comps = sample_completions(model, problems, n_samples, temperature=temperature, max_new_tokens=max_new_tokens,
                               generator=generator, top_k=top_k)
    rewards = np.array([[checker(p, c) for c in cs] for p, cs in zip(problems, comps)], dtype=np.int64)
    return Samples(problems, comps, rewards.reshape(len(problems), n_samples))


def keep_correct(samples: Samples, cap: int, seed: int) -> list[tuple[Problem, list[int]]]:
    """The kept set: for each problem its accepted samples (reward 1), at most `cap` of them, picked by a
    shuffle seeded with `seed` (same seed, same subset). Problems with no accepted sample add nothing."""
    if cap < 1:
        raise ShammieError(f"K (kept solutions per problem) must be >= 1, got {cap}")
    rng = np.random.default_rng(seed)
    kept = []
    for p, comps, r in zip(samples.problems, samples.completions, samples.rewards):
        good = np.flatnonzero(r == 1)
        rng.shuffle(good)
        kept.extend((p, comps[j]) for j in good[:cap])
    return kept


def human_pairs(problems: Sequence[Problem]) -> list[tuple[Problem, list[int]]]:
    """(problem, worked solution) pairs: the human data."""
    return [(p, solution_tokens(p)) for p in problems]


def _batches(pairs: Sequence[tuple[Problem, Sequence[int]]], batch_size: int, seed: int):
    encoded = [(prompt_tokens(p), list(c)) for p, c in pairs]

    def next_batch(step: int):
        g = np.random.default_rng([seed, step])
        return pack_batch([encoded[i] for i in g.integers(0, len(encoded), batch_size)])
    return next_batch


def m_step(base: TinyTransformer, pairs: Sequence[tuple[Problem, Sequence[int]]], *, steps: int, batch_size: int,
           lr: float, seed: int, warmup: float = 0.05, desc: str = "M-step",
           on_start: Callable[[TinyTransformer], None] | None = None) -> tuple[TinyTransformer, dict]:
    """Improve: fine-tune a *copy* of `base` on `pairs` (problem, completion ids) with the completion-only
    loss; batch `step` is a seeded draw with replacement. `on_start(model)` sees the copy before training.
    Returns (the new model, train_lm's history)."""
    if not pairs:
        raise EmptyKeptSet("the kept set is empty: the checker accepted no sample, so there is nothing to "
                           "fine-tune on (raise N or the temperature, or train the base longer)")
    model = clone_model(base)
    if on_start is not None:
        on_start(model)
    torch.manual_seed(seed)
    history = train_lm(model, _batches(pairs, batch_size, seed), steps=steps, lr=lr, warmup=warmup, desc=desc)
    return model, history


def sft(base: TinyTransformer, problems: Sequence[Problem], **kw) -> tuple[TinyTransformer, dict]:
    """The baseline: the M-step on the human worked solutions of `problems` (same steps, batch, lr)."""
    return m_step(base, human_pairs(problems), desc=kw.pop("desc", "SFT"), **kw)


@dataclass
class Iteration:
    """One ReST^EM iteration: kept-set size, E-step statistics, status ("ok" or "empty"), evaluation."""

    index: int
    kept: int
    solved_fraction: float
    accept_rate: float
    status: str = "ok"
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass
class ReSTRun:
    """The iterations of one ReST^EM run and the policy after each (`models[i]` after iteration i + 1)."""

    restart: bool
    iterations: list[Iteration]
    models: list[TinyTransformer]

    def series(self, key: str) -> list[float]:
        """One metric (or "kept", "solved_fraction", "accept_rate") by iteration."""
        out = []
        for it in self.iterations:
            out.append(float(it.metrics[key]) if key in it.metrics else float(getattr(it, key)))
        return out


def rest_em(base: TinyTransformer, problems: Sequence[Problem], *, iterations: int, n_samples: int, cap: int,
            temperature: float, steps: int, batch_size: int, lr: float, max_new_tokens: int, seed: int,
            restart: bool = True, warmup: float = 0.05, top_k: int | None = None,
            evaluate: Callable[[TinyTransformer], dict[str, float]] | None = None,
            start: ReSTRun | None = None, checker: Callable[[Problem, Sequence[int]], int] = reward) -> ReSTRun:
    """Algorithm 1: `iterations` rounds of E-step (from the current policy) and M-step (from the base
    model if `restart`, else from the current policy). `evaluate(model)` is recorded per iteration.

    `start`: an earlier run whose iterations are taken as the first ones (e.g. the continue-from-last
    variant shares iteration 1 with the restart run, which is the same computation). Seeds: iteration i
    samples with a generator seeded (seed, i) and shuffles/fine-tunes with seeds derived from them."""
    if iterations < 1:
        raise ShammieError(f"iterations must be >= 1, got {iterations}")
    if n_samples < 1 or cap < 1:
        raise ShammieError(f"need N >= 1 and K >= 1, got N={n_samples}, K={cap}")
    if not temperature > 0:
        raise ShammieError(f"the E-step temperature must be > 0, got {temperature}")
    done = list(start.iterations) if start is not None else []
    models = list(start.models) if start is not None else []
    if len(done) > iterations:
        raise ShammieError(f"the start run has {len(done)} iterations, more than {iterations}")
    policy = models[-1] if models else base
    for i in range(len(done) + 1, iterations + 1):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        samples = e_step(policy, problems, n_samples, temperature, max_new_tokens=max_new_tokens, generator=g,
                         top_k=top_k, checker=checker)
        kept = keep_correct(samples, cap, seed=seed * 1000 + i)
        it = Iteration(i, len(kept), samples.solved_fraction, samples.accept_rate)
        try:
            policy, _ = m_step(base if restart else policy, kept, steps=steps, batch_size=batch_size, lr=lr,
                               seed=seed * 1000 + i, warmup=warmup, desc=f"ReST^EM iter {i}")
        except EmptyKeptSet as err:
            it.status, it.message = "empty", str(err)
            warnings.warn(f"ReST^EM iteration {i}: {err}; the policy is left unchanged", stacklevel=2)
        if evaluate is not None:
            it.metrics = dict(evaluate(policy))
        done.append(it)
        models.append(policy)
    return ReSTRun(restart, done, models)
