"""Needle haystacks after Gemini 1.5's text haystack (arXiv 2403.05530, sec. 5.2.1.2), at toy scale.

A probe is ``[haystack of L tokens holding k needles] [QUERY] [KEY q]`` and its answer the two digits
``a b`` of the needle whose key is q. A needle is the four tokens ``[NEEDLE] [KEY k] [DIGIT a] [DIGIT b]``
("The special magic {city} number is: {number}"); the filler is random letters or standard-library
characters. Depth d puts the first token of a single needle at index ``round(d * (L - 4))`` of the
haystack: depth 0 is the very beginning, depth 1 ends the needle just before the query.

Also: the two-needle "which came first" variant (MRCR-lite: two needles with the same key, the query asks
for the first or the second value), the receptive field of stacked sliding-window layers and which grid
cells a local-only model can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core import ShammieError
from ..lm import IGNORE_INDEX

__all__ = [
    "NEEDLE_TOKENS", "NeedleVocab", "Probes", "needle_starts", "make_probes", "make_mrcr_probes",
    "training_batch", "receptive_field", "answer_distance", "reachable",
]

NEEDLE_TOKENS = 4  # [NEEDLE] [KEY] [DIGIT a] [DIGIT b]
ANSWER_TOKENS = 2


@dataclass(frozen=True)
class NeedleVocab:
    """Token ids: 0 PAD, 1 NEEDLE, 2 QUERY, 3 FIRST, 4 SECOND (MRCR-lite queries), then 10 digits,
    `n_keys` keys ("cities"), `n_filler` filler symbols (letters, or the characters of a text)."""

    n_keys: int = 26
    n_filler: int = 26

    PAD = 0
    NEEDLE = 1
    QUERY = 2
    FIRST = 3
    SECOND = 4
    DIGIT0 = 5

    def __post_init__(self):
        if self.n_keys < 1 or self.n_filler < 1:
            raise ShammieError(f"need n_keys >= 1 and n_filler >= 1, got {self.n_keys}, {self.n_filler}")

    @property
    def key0(self) -> int:
        return self.DIGIT0 + 10

    @property
    def filler0(self) -> int:
        return self.key0 + self.n_keys

    @property
    def size(self) -> int:
        return self.filler0 + self.n_filler

    def digits(self, values: torch.Tensor) -> torch.Tensor:
        """Two-digit values (any shape, 0..99) -> their digit tokens (..., 2)."""
        return torch.stack([values // 10, values % 10], -1) + self.DIGIT0


@dataclass
class Probes:
    """A batch of probes of one context length: `prompt` (B, L + 2) ends with the query, `answer` (B, 2)
    holds the target's digit tokens; `starts` (B, k) the first index of each needle, `keys` (B, k) their key
    ids (0-based), `values` (B, k) their two-digit values, `target` (B,) which needle is asked for."""

    prompt: torch.Tensor
    answer: torch.Tensor
    starts: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    target: torch.Tensor

    @property
    def length(self) -> int:
        """The haystack length L (the prompt holds L + 2 tokens)."""
        return self.prompt.shape[1] - 2

    def target_start(self) -> torch.Tensor:
        return self.starts.gather(1, self.target.unsqueeze(1)).squeeze(1)

    def sequence(self) -> torch.Tensor:
        """Prompt and answer, (B, L + 4)."""
        return torch.cat([self.prompt, self.answer], 1)


def _depths(depth, batch: int) -> np.ndarray:
    d = np.broadcast_to(np.asarray(depth, dtype=float), (batch,)).copy()
    if np.isnan(d).any() or (d < 0).any() or (d > 1).any():
        raise ShammieError(f"depth must lie in [0, 1] (0 = the beginning, 1 = just before the query), got {depth}")
    return d


def needle_starts(length: int, depth, n_needles: int = 1, batch: int = 1, rng: np.random.Generator | None = None,
                  ) -> np.ndarray:
    """First index of each needle (batch, k), sorted, non-overlapping, inside a haystack of `length` tokens.

    One needle at `depth` (a number or one per row): ``round(depth * (length - 4))``. Several needles (or
    `depth` None): k insertion points drawn uniformly among the filler and sorted, so the needles are placed
    at random without overlapping (depth is a single-needle notion, as in Gemini's grid)."""
    if n_needles < 1:
        raise ShammieError(f"n_needles must be >= 1, got {n_needles}")
    free = length - NEEDLE_TOKENS * n_needles
    if free < 0:
        raise ShammieError(f"a haystack of {length} tokens cannot hold {n_needles} needle(s) of {NEEDLE_TOKENS} "
                           f"tokens: use length >= {NEEDLE_TOKENS * n_needles}")
    if n_needles == 1 and depth is not None:
        d = _depths(depth, batch)
        return np.rint(d * free).astype(np.int64)[:, None]
    rng = rng if rng is not None else np.random.default_rng(0)
    ins = np.sort(rng.integers(0, free + 1, size=(batch, n_needles)), axis=1)
    return ins + NEEDLE_TOKENS * np.arange(n_needles)


def _filler(vocab: NeedleVocab, batch: int, length: int, rng: np.random.Generator,
            text: torch.Tensor | None) -> np.ndarray:
    if text is None:
        return rng.integers(0, vocab.n_filler, size=(batch, length)) + vocab.filler0
    ids = text.numpy() if isinstance(text, torch.Tensor) else np.asarray(text)
    if ids.size < length + 1:
        raise ShammieError(f"the filler text ({ids.size} ids) is shorter than one haystack ({length})")
    if ids.max() >= vocab.n_filler:
        raise ShammieError(f"filler text ids reach {ids.max()}, past n_filler={vocab.n_filler}")
    off = rng.integers(0, ids.size - length + 1, size=batch)
    return ids[off[:, None] + np.arange(length)] + vocab.filler0


def make_probes(vocab: NeedleVocab, length: int, depth=None, n_needles: int = 1, batch: int = 64,
                rng: np.random.Generator | int = 0, text: torch.Tensor | None = None) -> Probes:
    """`batch` probes with a haystack of `length` tokens and `n_needles` needles of distinct keys.

    Single needle: at `depth` (a number or one per probe; None = uniform at random). Several needles: at
    random places, the queried one chosen at random. `text` (1-D ids below `vocab.n_filler`): filler taken
    from random windows of it instead of random letters. `rng`: a numpy Generator or a seed."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if n_needles > vocab.n_keys:
        raise ShammieError(f"{n_needles} needles need as many distinct keys, but there are only {vocab.n_keys}")
    if batch < 1:
        raise ShammieError(f"batch must be >= 1, got {batch}")
    if n_needles == 1 and depth is None:
        depth = rng.random(batch)
    starts = needle_starts(length, depth if n_needles == 1 else None, n_needles, batch, rng)
    tokens = _filler(vocab, batch, length, rng, text)
    keys = np.argsort(rng.random((batch, vocab.n_keys)), axis=1)[:, :n_needles]
    values = rng.integers(0, 100, size=(batch, n_needles))
    target = rng.integers(0, n_needles, size=batch)
    rows = np.arange(batch)[:, None]
    tokens[rows, starts] = vocab.NEEDLE
    tokens[rows, starts + 1] = keys + vocab.key0
    tokens[rows, starts + 2] = values // 10 + vocab.DIGIT0
    tokens[rows, starts + 3] = values % 10 + vocab.DIGIT0
    qkey = keys[np.arange(batch), target]
    prompt = np.concatenate([tokens, np.full((batch, 1), vocab.QUERY), (qkey + vocab.key0)[:, None]], 1)
    val = values[np.arange(batch), target]
    answer = np.stack([val // 10, val % 10], 1) + vocab.DIGIT0
    t = torch.from_numpy
    return Probes(t(prompt).long(), t(answer).long(), t(starts).long(), t(keys).long(), t(values).long(),
                  t(target).long())


def make_mrcr_probes(vocab: NeedleVocab, length: int, batch: int = 64, rng: np.random.Generator | int = 0,
                     text: torch.Tensor | None = None) -> Probes:
    """MRCR-lite ("which came first"): two needles with the *same* key and different values at random places;
    the query ``[FIRST|SECOND] [KEY]`` asks for the value of the earlier or the later one (the answer depends
    on order, not on the key: the shape of MRCR's two adversarially similar requests)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    p = make_probes(vocab, length, None, 2, batch, rng, text)
    same = p.keys[:, :1].expand(-1, 2).clone()
    seq = p.prompt.clone()
    rows = torch.arange(batch).unsqueeze(1)
    seq[rows, p.starts + 1] = same + vocab.key0
    v0 = p.values[:, 0]
    v1 = (v0 + torch.from_numpy(rng.integers(1, 100, size=batch))) % 100  # always a different value
    values = torch.stack([v0, v1], 1)
    seq[rows, p.starts + 2] = values // 10 + vocab.DIGIT0
    seq[rows, p.starts + 3] = values % 10 + vocab.DIGIT0
    which = p.target  # 0: first (earlier start), 1: second; starts are sorted
    seq[:, -2] = torch.where(which == 0, vocab.FIRST, vocab.SECOND)
    seq[:, -1] = same[:, 0] + vocab.key0
    val = values.gather(1, which.unsqueeze(1)).squeeze(1)
    return Probes(seq, vocab.digits(val), p.starts, same, values, which)


def training_batch(probes: Probes) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for `shammie.lm.train_lm`: next-token targets on the two answer tokens only (the
    second digit teacher-forced), every other target `IGNORE_INDEX`."""
    seq = probes.sequence()
    inputs, targets = seq[:, :-1], seq[:, 1:].clone()
    targets[:, : -ANSWER_TOKENS] = IGNORE_INDEX
    return inputs, targets


def receptive_field(n_local_layers: int, window: int) -> int:
    """How far back (in tokens) a stack of `n_local_layers` sliding-window layers can read: each layer lets a
    query see keys i - W < j <= i, i.e. W - 1 tokens back, so the stack reaches L * (W - 1)."""
    if n_local_layers < 0 or window < 1:
        raise ShammieError(f"need n_local_layers >= 0 and window >= 1, got {n_local_layers}, {window}")
    return n_local_layers * (window - 1)


def answer_distance(length: int, start) -> np.ndarray:
    """Tokens between the query's last token (index L + 1, where the first digit is predicted) and the
    needle's first digit (start + 2); the second digit is read at the same distance one step later."""
    return (length + 1) - (np.asarray(start) + 2)


def reachable(length: int, depth: float, n_local_layers: int, window: int) -> bool:
    """Whether a model with only local layers can read the single needle of the grid cell (length, depth)."""
    start = needle_starts(length, depth)[0, 0]
    return bool(answer_distance(length, start) <= receptive_field(n_local_layers, window))
