"""Training batches (padded or packed) and the training loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ShammieError
from ..lm import train_lm
from ..transformer import TinyTransformer
from .positions import Tokenizer, encode_example, position_ids
from .tasks import SCHEMES, Example


@dataclass
class Batch:
    """Inputs (B, T), next-token targets (B, T), position ids (B, T) and a mask of the targets that count.

    The mask covers only the target part (scratchpad, answer, end), never the prompt or the padding, nor
    the target tokens the environment supplies (`Example.given`).
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    loss_mask: torch.Tensor
    segments: torch.Tensor | None = None  # packed rows: the example each token belongs to

    def to(self, device) -> Batch:
        """The batch on `device`."""
        seg = self.segments.to(device) if self.segments is not None else None
        return Batch(self.tokens.to(device), self.targets.to(device), self.positions.to(device),
                     self.loss_mask.to(device), seg)


class ExamplePool:
    """Examples encoded once for a scheme; `batch` draws training batches from them quickly.

    With ``hints`` each example gets a random hint offset here (so every hint token is trained).
    """

    def __init__(self, examples: Sequence[Example], tokenizer: Tokenizer, scheme: str,
                 rng: np.random.Generator | int = 0):
        if not examples:
            raise ShammieError("an ExamplePool needs at least one example")
        if scheme not in SCHEMES:
            raise ShammieError(f"unknown position scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.scheme = scheme
        self.tokenizer = tokenizer
        self.examples = list(examples)
        self.ids, self.align, self.prompt_len, self.given = [], [], [], []
        for ex in self.examples:
            if ex.given and scheme == "hints":
                raise ShammieError("interleaved examples take the plain, randomized or coupled scheme, not hints")
            off = int(rng.integers(max(tokenizer.n_hints, 1))) if scheme == "hints" else 0
            ids, al, p = encode_example(ex, tokenizer, scheme, off)
            self.ids.append(ids)
            self.align.append(al)
            self.prompt_len.append(p)
            self.given.append(np.asarray((False,) * p + ex.given, dtype=bool) if ex.given else None)

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, index: Sequence[int], rng: np.random.Generator | None = None, max_positions: int = 256,
              train: bool = True, pack: bool = False) -> Batch:
        """A batch of the examples at `index` (positions drawn with `rng` when `train`).

        Without `pack` one right-padded row per example. With `pack` the examples are packed
        first-fit-decreasing into rows as wide as the longest one, with segment ids that keep them
        apart: the same loss with less padding.
        """
        index = list(index)
        sizes = [len(self.ids[i]) - 1 for i in index]
        width = max(sizes)
        if pack:
            rows: list[list[int]] = []
            free: list[int] = []
            for k in sorted(range(len(index)), key=lambda k: -sizes[k]):
                r = next((r for r, f in enumerate(free) if f >= sizes[k]), None)
                if r is None:
                    rows.append([k])
                    free.append(width - sizes[k])
                else:
                    rows[r].append(k)
                    free[r] -= sizes[k]
        else:
            rows = [[k] for k in range(len(index))]
        b = len(rows)
        tokens = np.full((b, width), self.tokenizer.pad_id, dtype=np.int64)
        targets = np.full((b, width), self.tokenizer.pad_id, dtype=np.int64)
        pos = np.zeros((b, width), dtype=np.int64)
        mask = np.zeros((b, width), dtype=bool)
        seg = np.full((b, width), -1, dtype=np.int64)
        for r, members in enumerate(rows):
            at = 0
            for k in members:
                i = index[k]
                seq = self.ids[i]
                n = sizes[k]
                p = position_ids(self.scheme, self.align[i], rng, max_positions, train)
                tokens[r, at : at + n] = seq[:-1]
                targets[r, at : at + n] = seq[1:]
                pos[r, at : at + n] = p[:-1]
                mask[r, at + self.prompt_len[i] - 1 : at + n] = True
                if self.given[i] is not None:  # tokens the environment supplies are not predicted
                    mask[r, at : at + n] &= ~self.given[i][1:]
                seg[r, at : at + n] = k
                at += n
        return Batch(torch.from_numpy(tokens), torch.from_numpy(targets), torch.from_numpy(pos), torch.from_numpy(mask),
                     torch.from_numpy(seg) if pack else None)


def batch_loss(model: TinyTransformer, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions over the targets in `batch.loss_mask`."""
    hidden = model(batch.tokens, batch.positions, segments=batch.segments, return_hidden=True)
    return F.cross_entropy(model.logits(hidden[batch.loss_mask]), batch.targets[batch.loss_mask])


def train_model(model: TinyTransformer, pool: ExamplePool, *, steps: int, batch_size: int = 64, lr: float = 3e-3,
                seed: int = 0, max_positions: int | None = None, warmup: float = 0.05, weight_decay: float = 0.0,
                clip: float = 1.0, device: torch.device | str = "cpu", desc: str = "train",
                log_every: int = 25, pack: bool = True) -> dict[str, list[float]]:
    """Train `model` in place with AdamW (warm-up, then cosine decay) on batches drawn from `pool`.

    Batches are drawn with a generator seeded by `seed` (same seed, same run) and packed into rows
    (`pack`, the same loss as padding each example, computed faster). Returns the history
    {"step": [...], "loss": [...]} (the mean loss over each `log_every` steps). A non-finite loss stops
    with an error that names the step.
    """
    if batch_size < 1:
        raise ShammieError(f"batch_size must be >= 1, got {batch_size}")
    max_positions = max_positions or model.spec.max_positions
    rng = np.random.default_rng(seed)

    def next_batch(step: int) -> Batch:
        idx = rng.integers(0, len(pool), size=batch_size)
        return pool.batch(idx, rng, max_positions, train=True, pack=pack)

    # the workbook's one LM training loop (AdamW, warm-up + cosine, clipping), with this theme's batches
    return train_lm(model, next_batch, steps=steps, loss_fn=batch_loss, lr=lr, warmup=warmup,
                    weight_decay=weight_decay, betas=(0.9, 0.98), clip=clip, log_every=log_every, device=device,
                    desc=desc)

