"""The task of notebook 06: multi-operand addition with a running-sum scratchpad, and its binary checker.

A problem is a tuple of single digits, e.g. (7, 3, 9, 4). Its prompt is ``^7+3+9+4=`` and its worked
("human") solution the running sums ``7,10,19,23$`` (``$`` = end of sequence). The checker
`reward(problem, completion)` reads only the *final* number before the end token and compares it with the
true sum, as the paper's MATH checker reads only the final answer: a wrong scratchpad with the right final
number scores 1 (the false positives the paper mentions), a missing end token scores 0.

The data (`make_task`): H problems with worked solutions (the only supervised rationales), P training
problems with only their final answer (the E-step's inputs), a test set, a validation set (for the
uncertainty-routed vote's threshold) and a held-out set of longer problems; all disjoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core import ShammieError
from ..lm import IGNORE_INDEX

__all__ = [
    "CHARS", "VOCAB_SIZE", "PAD", "BOS", "EOS", "encode", "decode", "prompt_tokens", "solution_tokens",
    "parse_answer", "reward", "Task", "make_task", "random_problems", "pack_batch", "max_completion_tokens",
]

# ids 0-9 are the digits
CHARS = "0123456789+,=$^."  # '$' end of sequence, '^' beginning, '.' padding
VOCAB_SIZE = len(CHARS)
EOS, BOS, PAD = CHARS.index("$"), CHARS.index("^"), CHARS.index(".")
_INDEX = {c: i for i, c in enumerate(CHARS)}

Problem = tuple[int, ...]


def encode(text: str) -> list[int]:
    """Token ids of `text` (characters of `CHARS`)."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as err:
        raise ShammieError(f"character {err.args[0]!r} is not in the vocabulary {CHARS!r}") from None


def decode(ids: Sequence[int]) -> str:
    """The text of token ids."""
    return "".join(CHARS[int(i)] for i in ids)


def prompt_tokens(problem: Problem) -> list[int]:
    """``^a+b+...=`` as ids."""
    return encode("^" + "+".join(str(d) for d in problem) + "=")


def solution_tokens(problem: Problem) -> list[int]:
    """The worked solution: the running sums separated by commas, then the end token."""
    sums = np.cumsum(problem).tolist()
    return encode(",".join(str(s) for s in sums) + "$")


def max_completion_tokens(n_operands: int) -> int:
    """An upper bound on the length of a worked solution of `n_operands` digits (end token included)."""
    return len(solution_tokens((9,) * n_operands))


def parse_answer(completion: Sequence[int]) -> int | None:
    """The final number of a completion (ids): the digits between the last comma (or the start) and the
    first end token. None when there is no end token, or that tail is empty, not all digits, or longer
    than 6 digits (far longer than any sum of this task: a sampled run of digits, not an answer)."""
    ids = [int(i) for i in completion]
    if EOS not in ids:
        return None
    body = ids[: ids.index(EOS)]
    tail = body[len(body) - body[::-1].index(_INDEX[","]):] if _INDEX[","] in body else body
    if not tail or any(t > 9 for t in tail) or len(tail) > 6:
        return None
    return int("".join(str(t) for t in tail))


def reward(problem: Problem, completion: Sequence[int]) -> int:
    """The binary checker: 1 if the completion's final number equals the sum of the problem, else 0
    (the scratchpad is not read)."""
    answer = parse_answer(completion)
    return int(answer is not None and answer == sum(problem))


def random_problems(rng: np.random.Generator, count: int, min_operands: int, max_operands: int) -> list[Problem]:
    """`count` problems of digits 0-9 with a uniform number of operands in min..max (duplicates possible)."""
    lengths = rng.integers(min_operands, max_operands + 1, size=count)
    return [tuple(int(d) for d in rng.integers(0, 10, size=n)) for n in lengths]


@dataclass
class Task:
    """The problem sets (disjoint): `human` (with worked solutions), `train` (final answers only), `val`,
    `test`, `heldout` (longer problems), and the operand range."""

    human: list[Problem]
    train: list[Problem]
    val: list[Problem]
    test: list[Problem]
    heldout: list[Problem]
    min_operands: int
    max_operands: int
    heldout_operands: int

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("human", "train", "val", "test", "heldout")}

    @property
    def max_new_tokens(self) -> int:
        """Decoding length that fits every worked solution of every set (held-out included)."""
        return max_completion_tokens(max(self.max_operands, self.heldout_operands)) + 2

    @property
    def max_new_in(self) -> int:
        """Decoding length that fits every worked solution of the in-distribution sets (all but held-out)."""
        return max_completion_tokens(self.max_operands) + 2


def make_task(n_human: int, n_train: int, n_val: int, n_test: int, n_heldout: int, *, min_operands: int = 3,
              max_operands: int = 6, heldout_operands: int = 8, seed: int = 0) -> Task:
    """Draw disjoint problem sets (distinct problems within and across sets) with a fixed seed."""
    if not 1 <= min_operands <= max_operands or heldout_operands < 1:
        raise ShammieError(f"need 1 <= min_operands <= max_operands and heldout_operands >= 1, got "
                           f"{min_operands}, {max_operands}, {heldout_operands}")
    for name, n in (("n_human", n_human), ("n_train", n_train), ("n_val", n_val), ("n_test", n_test),
                    ("n_heldout", n_heldout)):
        if n < 1:
            raise ShammieError(f"{name} must be >= 1, got {n}")
    space = sum(10 ** k for k in range(min_operands, max_operands + 1))
    need = n_human + n_train + n_val + n_test
    if need > space // 2:
        raise ShammieError(f"{need} distinct problems asked of a space of {space}: use more operands")
    rng = np.random.default_rng(seed)
    seen: set[Problem] = set()

    def draw(count: int, lo: int, hi: int) -> list[Problem]:
        out: list[Problem] = []
        while len(out) < count:
            for p in random_problems(rng, count - len(out), lo, hi):
                if p not in seen:
                    seen.add(p)
                    out.append(p)
        return out

    test = draw(n_test, min_operands, max_operands)
    val = draw(n_val, min_operands, max_operands)
    human = draw(n_human, min_operands, max_operands)
    train = draw(n_train, min_operands, max_operands)
    heldout = draw(n_heldout, heldout_operands, heldout_operands)
    return Task(human, train, val, test, heldout, min_operands, max_operands, heldout_operands)


def pack_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for `shammie.lm.next_token_loss` from (prompt ids, completion ids) pairs: each
    sequence is prompt + completion, right-padded; targets are the next tokens with the prompt's and the
    padding's targets set to IGNORE_INDEX (completion-only loss)."""
    if not pairs:
        raise ShammieError("pack_batch needs at least one (prompt, completion) pair")
    seqs = [list(p) + list(c) for p, c in pairs]
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), PAD, dtype=torch.long)
    targets = torch.full((len(seqs), width - 1), IGNORE_INDEX, dtype=torch.long)
    for i, ((p, c), s) in enumerate(zip(pairs, seqs)):
        if len(p) < 1 or len(c) < 1:
            raise ShammieError("each pair needs a non-empty prompt and a non-empty completion")
        tokens[i, : len(s)] = torch.tensor(s)
        targets[i, len(p) - 1 : len(s) - 1] = torch.tensor(list(c))
    return tokens[:, :-1], targets
