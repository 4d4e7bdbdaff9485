"""Uncertainty-routed "chain of thought" (Gemini report §5.1.1 and Appendix 10.2), with a one-token chain.

The report: "The model produces a chain of thought with k samples ... If there is a consensus above a
preset threshold (selected based on the validation split), it selects this answer, otherwise it reverts
to a greedy sample based on maximum likelihood choice without chain of thought." Here the chain is the
stated digit of a digit-first question: k digits are sampled at temperature 1 (from the softmax over the
ten digit tokens), each is written in and answered greedily, the answers are put to a majority vote
(`shammie.lm.majority_vote`), and the consensus is the winning answer's share of the k votes. The
routed answer is the vote when consensus >= threshold, else the direct answer (no digit stated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core import ShammieError
from ..lm import majority_vote
from .experiments import DIGIT_COL, THINK_COL, _logits, predict
from .model import MultimodalLM
from .tasks import Batch

__all__ = ["Votes", "check_threshold", "cot_votes", "routed", "threshold_grid", "sweep", "tune_threshold"]


@dataclass
class Votes:
    """Per question: the direct answer, the digit-first greedy answer, the vote's answer and its consensus
    (and the digit the greedy chain of thought stated, when known)."""

    direct: np.ndarray
    cot_greedy: np.ndarray
    majority: np.ndarray
    consensus: np.ndarray
    truth: np.ndarray
    greedy_digit: np.ndarray | None = None

    def accuracy(self, name: str) -> float:
        return float(np.mean(getattr(self, name) == self.truth))


def check_threshold(thr: float) -> float:
    if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not 0.0 <= float(thr) <= 1.0:
        raise ShammieError(f"a routing threshold must be a number in [0, 1], got {thr!r}")
    return float(thr)


def cot_votes(model: MultimodalLM, direct_batch: Batch, cot_batch: Batch, k: int, seed: int,
              temperature: float = 1.0) -> Votes:
    """Direct, digit-first greedy and k sampled digit-first answers of the same questions (`direct_batch`
    holds them as Xadd, `cot_batch` as XaddCoT). The greedy digit and the sampled ones are chosen among
    the ten digit tokens alike, so that the greedy chain of thought is never the only one that can state
    a non-digit."""
    if k < 1 or temperature <= 0:
        raise ShammieError(f"need k >= 1 samples and a positive temperature, got {k}, {temperature}")
    if not (np.array_equal(direct_batch.d1, cot_batch.d1) and np.array_equal(direct_batch.k, cot_batch.k)):
        raise ShammieError("the direct and digit-first batches must hold the same questions")
    n = len(cot_batch)
    direct = predict(model, direct_batch)
    think = _logits(model, cot_batch, THINK_COL)
    digit_logits = think[:, :10].float() / temperature
    greedy_digit = think[:, :10].argmax(-1).numpy()
    cot_greedy = predict(model, cot_batch.with_tokens(DIGIT_COL, greedy_digit))
    gen = torch.Generator().manual_seed(seed)
    sampled = torch.multinomial(torch.softmax(digit_logits, -1), k, replacement=True, generator=gen).numpy()  # (n, k)
    rows = np.repeat(np.arange(n), k)
    answers = predict(model, cot_batch.select(rows).with_tokens(DIGIT_COL, sampled.reshape(-1))).reshape(n, k)
    majority = np.empty(n, dtype=np.int64)
    consensus = np.empty(n)
    for i in range(n):
        row = answers[i].tolist()
        majority[i] = majority_vote(row)
        consensus[i] = row.count(majority[i]) / k
    return Votes(direct, cot_greedy, majority, consensus, cot_batch.answer.copy(), greedy_digit)


def routed(votes: Votes, thr: float) -> np.ndarray:
    """The routed answers: the vote where its consensus >= thr, else the direct answer."""
    thr = check_threshold(thr)
    return np.where(votes.consensus >= thr, votes.majority, votes.direct)


def threshold_grid(k: int) -> np.ndarray:
    """Thresholds 0, 1/k, ..., 1 (every distinct consensus level)."""
    return np.arange(k + 1) / k


def sweep(votes: Votes, grid: np.ndarray) -> np.ndarray:
    """Routed accuracy at each threshold of `grid`."""
    return np.array([float(np.mean(routed(votes, t) == votes.truth)) for t in grid])


def tune_threshold(votes: Votes, grid: np.ndarray) -> tuple[float, np.ndarray]:
    """The threshold with the best routed accuracy on these (validation) votes; ties go to the lowest."""
    acc = sweep(votes, grid)
    return float(grid[int(np.argmax(acc))]), acc
