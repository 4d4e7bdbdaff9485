"""The vocabulary, position-id schemes (plain, randomized, coupled, hints) and encoding examples as ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core import ShammieError
from .tasks import DIGITS, EOS, PAD, PARITY_STATES, SCHEMES, SYMBOLS, VARIABLES, Example


class Tokenizer:
    """A fixed vocabulary for every task: padding, end, digits, variables, symbols and `n_hints` hint tokens
    (0 when the hints scheme is not used: a smaller output layer)."""

    def __init__(self, n_hints: int = 128):
        if n_hints < 0:
            raise ShammieError(f"n_hints must be >= 0, got {n_hints}")
        self.n_hints = n_hints
        self.vocab: tuple[str, ...] = (PAD, EOS) + DIGITS + VARIABLES + SYMBOLS + PARITY_STATES + tuple(f"h{i}" for i in range(n_hints))
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id = self.index[PAD]
        self.eos_id = self.index[EOS]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token strings to ids."""
        try:
            return [self.index[t] for t in tokens]
        except KeyError as err:
            raise ShammieError(f"token {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids to token strings."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.vocab):
                raise ShammieError(f"id {i} is outside the vocabulary (0..{len(self.vocab) - 1})")
            out.append(self.vocab[i])
        return out

    def hint(self, k: int) -> str:
        """The hint token for index `k` (cyclic over the `n_hints` hint tokens)."""
        if self.n_hints == 0:
            raise ShammieError("this tokenizer has no hint tokens: build it with Tokenizer(n_hints=...) to use hints")
        return f"h{k % self.n_hints}"

    def is_hint(self, token: str) -> bool:
        """Whether `token` is a hint token."""
        return token.startswith("h") and token[1:].isdigit()


def position_ids(scheme: str, align: Sequence[int], rng: np.random.Generator | None = None,
                 max_positions: int = 256, train: bool = False) -> np.ndarray:
    """Position ids of a sequence whose tokens have coupled indices `align`, under `scheme`.

    plain/hints: 0..T-1. randomized: a sorted random subset of 0..max_positions-1 (a fresh draw each
    call). coupled: `align` + a start drawn uniformly so the ids fit below `max_positions` when
    `train`, else 0.
    """
    if scheme not in SCHEMES:
        raise ShammieError(f"unknown position scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    t = len(align)
    if scheme in ("plain", "hints"):
        return np.arange(t)
    if scheme == "randomized":
        if t > max_positions:
            raise ShammieError(f"randomized positions need max_positions >= the sequence length {t}")
        rng = rng if rng is not None else np.random.default_rng(0)
        return np.sort(rng.choice(max_positions, size=t, replace=False))
    al = np.asarray(align)
    top = int(al.max())
    if top >= max_positions:
        raise ShammieError(f"coupled ids reach {top}: use max_positions > {top}")
    start = int(rng.integers(0, max_positions - top)) if (train and rng is not None) else 0
    return al + start


def encode_example(ex: Example, tokenizer: Tokenizer, scheme: str = "plain",
                   hint_offset: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids, coupled indices and prompt length (in tokens) of `ex` under `scheme`.

    With ``hints`` a hint token (index `align + hint_offset`, cyclic) is inserted before every indexed
    item; the hint shares its item's coupled index.
    """
    if scheme not in SCHEMES:
        raise ShammieError(f"unknown position scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    toks, align, indexed = list(ex.tokens), list(ex.align), ex.indexed
    n_prompt = len(ex.prompt)
    if scheme == "hints":
        out_t, out_a, new_prompt = [], [], 0
        for i, (tk, a, ix) in enumerate(zip(toks, align, indexed)):
            starts_item = ix and (i == 0 or i == n_prompt or align[i - 1] != a or not indexed[i - 1])
            if starts_item:
                out_t.append(tokenizer.hint(a + hint_offset))
                out_a.append(a)
            out_t.append(tk)
            out_a.append(a)
            if i == n_prompt - 1:
                new_prompt = len(out_t)
        toks, align, n_prompt = out_t, out_a, new_prompt
    return np.asarray(tokenizer.encode(toks), dtype=np.int64), np.asarray(align, dtype=np.int64), n_prompt


def max_position_needed(ex: Example, scheme: str, max_positions: int, tokenizer: Tokenizer | None = None) -> int:
    """The largest position id the model reads when it writes `ex`'s target under `scheme` (the final
    end token is written, never read)."""
    if scheme == "randomized":
        return max_positions - 1
    if scheme == "coupled":
        return max(ex.align[:-1])
    n = len(encode_example(ex, tokenizer or Tokenizer(), scheme)[0]) if scheme == "hints" else len(ex.tokens)
    return n - 2
