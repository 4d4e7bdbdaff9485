"""Evaluation of notebook 06: greedy pass@1, pass@k at T = 1, majority voting (the paper's sec. 5.2), the
uncertainty-routed vote of the Gemini report (vote when the majority's share is above a threshold chosen on
validation, greedy otherwise) and difficulty bins (the paper's Fig. 8 right)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core import ShammieError
from ..lm import majority_vote, pass_at_k
from .algorithms import sample_completions
from .task import Problem, parse_answer

__all__ = [
    "greedy_answers", "greedy_accuracy", "SampleSet", "draw_samples", "pass_at_k_curve", "vote", "vote_accuracy",
    "routed_answers", "choose_threshold", "DIFFICULTY_BINS", "difficulty_bin", "accuracy_by_bin",
]


def greedy_answers(model, problems: Sequence[Problem], max_new_tokens: int) -> list[int | None]:
    """The final answer of each problem's greedy completion (None when it has none)."""
    comps = sample_completions(model, problems, 1, temperature=0.0, max_new_tokens=max_new_tokens)
    return [parse_answer(c[0]) for c in comps]


def greedy_accuracy(model, problems: Sequence[Problem], max_new_tokens: int) -> float:
    """Greedy pass@1: the fraction of problems whose greedy completion the checker accepts."""
    answers = greedy_answers(model, problems, max_new_tokens)
    return float(np.mean([a is not None and a == sum(p) for p, a in zip(problems, answers)]))


@dataclass
class SampleSet:
    """n sampled answers per problem: `answers[i][j]` (None = no answer) and `correct` (P, n) 0/1."""

    problems: list[Problem]
    answers: list[list[int | None]]
    correct: np.ndarray

    @property
    def n(self) -> int:
        return self.correct.shape[1]

    @property
    def solve_rate(self) -> np.ndarray:
        """Per problem: the fraction of its samples that are correct."""
        return self.correct.mean(1)


def draw_samples(model, problems: Sequence[Problem], n: int, temperature: float, max_new_tokens: int,
                 seed: int) -> SampleSet:
    """`n` samples per problem at `temperature`, parsed and checked."""
    if n < 1:
        raise ShammieError(f"n must be >= 1, got {n}")
    if not temperature > 0:
        raise ShammieError(f"sampling needs a temperature > 0, got {temperature}")
    comps = sample_completions(model, problems, n, temperature=temperature, max_new_tokens=max_new_tokens,
                               generator=torch.Generator().manual_seed(seed))
    answers = [[parse_answer(c) for c in cs] for cs in comps]
    correct = np.array([[a is not None and a == sum(p) for a in ans] for p, ans in zip(problems, answers)], dtype=np.int64)
    return SampleSet(list(problems), answers, correct.reshape(len(problems), n))


def pass_at_k_curve(correct: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Mean over problems of the unbiased pass@k estimate (n = columns of `correct`), for each k."""
    correct = np.asarray(correct)
    n = correct.shape[1]
    counts = correct.sum(1)
    return {int(k): float(np.mean([pass_at_k(n, int(c), int(k)) for c in counts])) for k in ks}


def vote(answers: Sequence[int | None]) -> tuple[int | None, float]:
    """The majority answer of one problem's samples and its share of all samples (0 when none answered)."""
    winner = majority_vote(answers)
    if winner is None:
        return None, 0.0
    return winner, Counter(answers)[winner] / len(answers)


def vote_accuracy(samples: SampleSet) -> float:
    """Majority-vote accuracy (maj@n)."""
    return float(np.mean([vote(a)[0] == sum(p) for p, a in zip(samples.problems, samples.answers)]))


def routed_answers(samples: SampleSet, greedy: Sequence[int | None], threshold: float) -> list[int | None]:
    """The uncertainty-routed answer per problem: the majority answer when its share is strictly above
    `threshold`, else the greedy answer."""
    out = []
    for a, g in zip(samples.answers, greedy):
        winner, share = vote(a)
        out.append(winner if share > threshold else g)
    return out


def _accuracy(problems: Sequence[Problem], answers: Sequence[int | None]) -> float:
    return float(np.mean([a is not None and a == sum(p) for p, a in zip(problems, answers)]))


def choose_threshold(samples: SampleSet, greedy: Sequence[int | None], grid: Sequence[float] | None = None) -> float:
    """The threshold of `routed_answers` with the best accuracy on these (validation) samples; the grid is
    the possible shares j / n for j = 0..n (and -1: always vote); ties go to the lowest threshold."""
    if len(greedy) != len(samples.problems):
        raise ShammieError(f"{len(greedy)} greedy answers for {len(samples.problems)} problems")
    grid = sorted(grid if grid is not None else [-1.0] + [j / samples.n for j in range(samples.n + 1)])
    scores = [_accuracy(samples.problems, routed_answers(samples, greedy, t)) for t in grid]
    return float(grid[int(np.argmax(scores))])


#: the paper's bins of problems by the base model's solve rate at T = 1 (Fig. 8 right)
DIFFICULTY_BINS = (("very hard", 0.0, 0.25), ("hard", 0.25, 0.5), ("medium", 0.5, 0.75), ("easy", 0.75, 1.0001))


def difficulty_bin(rate: float) -> str:
    """The name of the bin of a solve rate (lower edge included)."""
    for name, lo, hi in DIFFICULTY_BINS:
        if lo <= rate < hi:
            return name
    raise ShammieError(f"a solve rate must lie in [0, 1], got {rate}")


def accuracy_by_bin(base_rate: np.ndarray, correct: np.ndarray) -> dict[str, tuple[float, int]]:
    """Per difficulty bin (by `base_rate`): (mean of `correct` over the bin's problems, problem count);
    nan for an empty bin."""
    base_rate, correct = np.asarray(base_rate, dtype=float), np.asarray(correct, dtype=float)
    names = np.array([difficulty_bin(r) for r in base_rate])
    return {name: (float(correct[names == name].mean()) if (names == name).any() else float("nan"),
                   int((names == name).sum())) for name, _, _ in DIFFICULTY_BINS}
