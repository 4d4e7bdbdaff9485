"""Interleaved signal-and-text tasks on MNIST-1D: the vocabulary, the six task templates, batches.

An "image" is one MNIST-1D signal of length 40 cut into 5 patches of 8 samples; it occupies 5
placeholder positions of a sequence (their token is PAD, their input vector comes from the patches).
Every sequence is left-padded to one fixed length `SEQ_LEN` (12); position ids count from 0 at the
first real token and the padding keys are masked, so a sequence's logits do not depend on how much
padding it has (the research note's pitfall 1 came from positions that differed between training
and evaluation).

Tasks (targets only on the answer positions):

====== =================================== =========================
P      BOS img NAME -> d                    perception
Tadd   BOS a + b = -> a+b                   text arithmetic (0..18)
Tcmp   BOS a b CMP -> FIRST/SECOND          text comparison (a != b)
Xadd   BOS img + k = -> d+k                 cross-modal sum, direct
XaddCoT BOS img + k THINK d = ; d at THINK, d+k at =   digit first
Xcmp   BOS img img CMP -> FIRST/SECOND      cross-modal comparison (digits differ)
====== =================================== =========================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..core import ShammieError
from ..lm import IGNORE_INDEX

__all__ = [
    "PLUS", "EQ", "NAME", "CMP", "FIRST", "SECOND", "BOS", "THINK", "PAD", "VOCAB", "VOCAB_SIZE", "SEQ_LEN",
    "SIGNAL_LEN", "PATCH", "N_PATCHES", "TASKS", "CHANCE", "TEMPLATE_LENGTHS", "Pool", "Batch", "held_out_pairs",
    "make_batch", "perception_batch", "task_counts", "answer_position", "decode", "check_answers",
]

N_NUMBERS = 19  # tokens 0..18: digits and sums
PLUS, EQ, NAME, CMP, FIRST, SECOND, BOS, THINK, PAD = range(N_NUMBERS, N_NUMBERS + 9)
VOCAB = [str(i) for i in range(N_NUMBERS)] + ["+", "=", "NAME", "CMP", "FIRST", "SECOND", "BOS", "THINK", "PAD"]
VOCAB_SIZE = len(VOCAB)  # 28
SEQ_LEN = 12
SIGNAL_LEN = 40
PATCH = 8
N_PATCHES = SIGNAL_LEN // PATCH  # 5
TASKS = ("P", "Tadd", "Tcmp", "Xadd", "XaddCoT", "Xcmp")
#: accuracy of the best constant answer (sums: the most frequent sum, 10, has probability 0.1)
CHANCE = {"P": 0.1, "Tadd": 0.1, "Tcmp": 0.5, "Xadd": 0.1, "XaddCoT": 0.1, "Xcmp": 0.5}
IMG = -1  # placeholder in templates: one image (5 positions)
_TEMPLATES = {  # token templates before padding; IMG expands to N_PATCHES positions
    "P": ("BOS", IMG, "NAME"),
    "Tadd": ("BOS", "a", "+", "b", "="),
    "Tcmp": ("BOS", "a", "b", "CMP"),
    "Xadd": ("BOS", IMG, "+", "k", "="),
    "XaddCoT": ("BOS", IMG, "+", "k", "THINK", "d", "="),
    "Xcmp": ("BOS", IMG, IMG, "CMP"),
}
TEMPLATE_LENGTHS = {t: sum(N_PATCHES if s == IMG else 1 for s in tpl) for t, tpl in _TEMPLATES.items()}
_NAMED = {"BOS": BOS, "NAME": NAME, "+": PLUS, "=": EQ, "CMP": CMP, "THINK": THINK}


@dataclass
class Pool:
    """Signals (N, 40) float32 and their digits (N,) that questions draw their images from."""

    x: np.ndarray
    y: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        if self.x.ndim != 2 or self.x.shape[1] != SIGNAL_LEN:
            raise ShammieError(f"signals must have shape (N, {SIGNAL_LEN}), got {self.x.shape}")
        if self.y.shape != (self.x.shape[0],) or self.y.min(initial=0) < 0 or self.y.max(initial=0) > 9:
            raise ShammieError("digits must be one label 0..9 per signal")
        self.by_digit = [np.flatnonzero(self.y == d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Batch:
    """Left-padded interleaved sequences (B, SEQ_LEN) and what is needed to grade them.

    tokens, positions (long), pad (True at padding), is_img (True at patch positions), patch_idx (which
    of the 5 patches), patches (B, T, 8) float, targets (IGNORE_INDEX except at answer positions); the
    numpy fields task (index into TASKS), d1, d2 (digits shown, -1 if none), a, b (text operands), k, answer
    (the final answer's token), i1, i2 (the signals' indices in the pool, -1 if none) describe each question."""

    tokens: torch.Tensor
    positions: torch.Tensor
    pad: torch.Tensor
    is_img: torch.Tensor
    patch_idx: torch.Tensor
    patches: torch.Tensor
    targets: torch.Tensor
    task: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    a: np.ndarray
    b: np.ndarray
    k: np.ndarray
    answer: np.ndarray
    i1: np.ndarray
    i2: np.ndarray

    _TENSORS = ("tokens", "positions", "pad", "is_img", "patch_idx", "patches", "targets")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device) -> Batch:
        return Batch(**{f.name: (getattr(self, f.name).to(device) if f.name in self._TENSORS else getattr(self, f.name))
                        for f in fields(self)})

    def select(self, rows) -> Batch:
        """The sub-batch of `rows` (indices or a boolean mask)."""
        rows = np.asarray(rows)
        idx = torch.as_tensor(np.flatnonzero(rows) if rows.dtype == bool else rows, dtype=torch.long)
        return Batch(**{f.name: (getattr(self, f.name)[idx] if f.name in self._TENSORS else getattr(self, f.name)[idx.numpy()])
                        for f in fields(self)})

    def with_tokens(self, column: int, values) -> Batch:
        """A copy with the tokens of one column replaced (e.g. the stated digit of a digit-first question)."""
        tokens = self.tokens.clone()
        tokens[:, column] = torch.as_tensor(np.asarray(values), dtype=torch.long, device=tokens.device)
        return Batch(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "tokens": tokens})


def held_out_pairs(fraction: float = 0.2, seed: int = 99) -> np.ndarray:
    """(10, 10) boolean: the (digit, k) pairs never shown in cross-modal sum training,
    `np.random.default_rng(seed).random((10, 10)) < fraction` (12 pairs with the defaults)."""
    return np.random.default_rng(seed).random((10, 10)) < fraction


def answer_position(task: str) -> int:
    """Column (after padding) whose next-token prediction is the final answer: the last one."""
    if task not in TASKS:
        raise ShammieError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return SEQ_LEN - 1


def task_counts(mix: dict[str, float], batch_size: int) -> dict[str, int]:
    """Questions of each task in a batch of `batch_size`: the mix's shares, rounded so they sum exactly
    (largest remainders first)."""
    bad = [t for t in mix if t not in TASKS]
    if bad:
        raise ShammieError(f"unknown task(s) {bad}: choose from {', '.join(TASKS)}")
    total = sum(mix.values())
    if total <= 0 or any(v < 0 for v in mix.values()):
        raise ShammieError(f"task shares must be >= 0 and not all 0, got {mix}")
    raw = {t: batch_size * v / total for t, v in mix.items()}
    counts = {t: int(np.floor(r)) for t, r in raw.items()}
    left = batch_size - sum(counts.values())
    for t in sorted(raw, key=lambda t: counts[t] - raw[t])[:left]:
        counts[t] += 1
    return {t: c for t, c in counts.items() if c}


def _pick(pool: Pool, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random signal index of the pool showing each digit."""
    out = np.empty(len(digits), dtype=np.int64)
    for d in np.unique(digits):
        rows = np.flatnonzero(digits == d)
        cand = pool.by_digit[d]
        if len(cand) == 0:
            raise ShammieError(f"the pool {pool.name!r} has no signal of digit {d}")
        out[rows] = cand[rng.integers(0, len(cand), len(rows))]
    return out


def _questions(task: str, m: int, pool: Pool, rng: np.random.Generator, held: np.ndarray | None,
               pairs: str) -> dict[str, np.ndarray]:
    """Operands of m questions: image indices i1, i2 (-1: none), digits d1, d2, a, b, k."""
    neg = np.full(m, -1, dtype=np.int64)
    q = {"i1": neg.copy(), "i2": neg.copy(), "d1": neg.copy(), "d2": neg.copy(), "a": neg.copy(), "b": neg.copy(),
         "k": neg.copy()}
    if task in ("P", "Xadd", "XaddCoT", "Xcmp"):
        if task in ("Xadd", "XaddCoT") and pairs == "held":
            if held is None or not held.any():
                raise ShammieError("pairs='held' needs a non-empty held-out mask")
            dd, kk = np.nonzero(held)
            j = rng.integers(0, len(dd), m)
            q["i1"] = _pick(pool, dd[j], rng)
            q["k"] = kk[j]
        else:
            q["i1"] = rng.integers(0, len(pool), m)
        q["d1"] = pool.y[q["i1"]]
    if task in ("Xadd", "XaddCoT") and pairs != "held":
        k = rng.integers(0, 10, m)
        if held is not None and pairs == "seen":  # resample held-out (digit, k) pairs
            bad = held[q["d1"], k]
            while bad.any():
                k[bad] = rng.integers(0, 10, int(bad.sum()))
                bad = held[q["d1"], k]
        q["k"] = k
    if task == "Xcmp":
        i2 = rng.integers(0, len(pool), m)
        tie = pool.y[i2] == q["d1"]
        while tie.any():  # ties resampled
            i2[tie] = rng.integers(0, len(pool), int(tie.sum()))
            tie = pool.y[i2] == q["d1"]
        q["i2"], q["d2"] = i2, pool.y[i2]
    if task == "Tadd":
        q["a"], q["b"] = rng.integers(0, 10, m), rng.integers(0, 10, m)
    if task == "Tcmp":
        q["a"] = rng.integers(0, 10, m)
        q["b"] = (q["a"] + rng.integers(1, 10, m)) % 10  # uniform over b != a
    return q


def _answers(task: str, q: dict[str, np.ndarray]) -> np.ndarray:
    if task == "P":
        return q["d1"]
    if task == "Tadd":
        return q["a"] + q["b"]
    if task == "Tcmp":
        return np.where(q["a"] > q["b"], FIRST, SECOND)
    if task in ("Xadd", "XaddCoT"):
        return q["d1"] + q["k"]
    return np.where(q["d1"] > q["d2"], FIRST, SECOND)  # Xcmp


def make_batch(counts: dict[str, int], pool: Pool, rng: np.random.Generator, *, held: np.ndarray | None = None,
               pairs: str = "seen") -> Batch:
    """A batch holding `counts[task]` fresh questions of each task, images drawn from `pool`.

    `pairs` (cross-modal sums): "seen" resamples k so that no (digit, k) pair of `held` appears (training,
    and the seen-pairs evaluation), "held" draws only held-out pairs, "all" ignores `held`."""
    if pairs not in ("seen", "held", "all"):
        raise ShammieError(f"pairs must be 'seen', 'held' or 'all', got {pairs!r}")
    parts = []
    for task, m in counts.items():
        if task not in TASKS:
            raise ShammieError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
        if m < 0:
            raise ShammieError(f"question counts must be >= 0, got {task}={m}")
        if m:
            parts.append((task, m, _questions(task, m, pool, rng, held, pairs)))
    if not parts:
        raise ShammieError("a batch needs at least one question")
    n = sum(m for _, m, _ in parts)
    tokens = np.full((n, SEQ_LEN), PAD, dtype=np.int64)
    positions = np.zeros((n, SEQ_LEN), dtype=np.int64)
    pad = np.ones((n, SEQ_LEN), dtype=bool)
    is_img = np.zeros((n, SEQ_LEN), dtype=bool)
    patch_idx = np.zeros((n, SEQ_LEN), dtype=np.int64)
    patches = np.zeros((n, SEQ_LEN, PATCH), dtype=np.float32)
    targets = np.full((n, SEQ_LEN), IGNORE_INDEX, dtype=np.int64)
    meta = {name: np.empty(n, dtype=np.int64) for name in ("task", "d1", "d2", "a", "b", "k", "answer", "i1", "i2")}
    r0 = 0
    for task, m, q in parts:
        rows = slice(r0, r0 + m)
        length = TEMPLATE_LENGTHS[task]
        col = SEQ_LEN - length
        pad[rows, col:] = False
        positions[rows, col:] = np.arange(length)
        images = iter((q["i1"], q["i2"]))
        ans = _answers(task, q)
        for sym in _TEMPLATES[task]:
            if sym == IMG:
                idx = next(images)
                sig = pool.x[idx].reshape(m, N_PATCHES, PATCH)
                patches[rows, col:col + N_PATCHES] = sig
                is_img[rows, col:col + N_PATCHES] = True
                patch_idx[rows, col:col + N_PATCHES] = np.arange(N_PATCHES)
                col += N_PATCHES
                continue
            if sym in _NAMED:
                tokens[rows, col] = _NAMED[sym]
            elif sym == "d":
                tokens[rows, col] = q["d1"]  # the true digit (teacher forcing)
            else:  # a, b, k
                tokens[rows, col] = q[sym]
            if sym == "THINK":
                targets[rows, col] = q["d1"]
            col += 1
        targets[rows, SEQ_LEN - 1] = ans
        meta["task"][rows] = TASKS.index(task)
        for name in ("d1", "d2", "a", "b", "k", "i1", "i2"):
            meta[name][rows] = q[name]
        meta["answer"][rows] = ans
        r0 += m
    return Batch(torch.from_numpy(tokens), torch.from_numpy(positions), torch.from_numpy(pad),
                 torch.from_numpy(is_img), torch.from_numpy(patch_idx), torch.from_numpy(patches),
                 torch.from_numpy(targets), **meta)


def perception_batch(pool: Pool, images: np.ndarray) -> Batch:
    """P questions ('BOS img NAME') about the given signal indices of `pool`, in order."""
    images = np.asarray(images, dtype=np.int64)
    batch = make_batch({"P": len(images)}, pool, np.random.default_rng(0))
    batch.patches[:, SEQ_LEN - 1 - N_PATCHES:SEQ_LEN - 1] = torch.from_numpy(
        pool.x[images].reshape(len(images), N_PATCHES, PATCH))
    batch.d1[:] = pool.y[images]
    batch.answer[:] = pool.y[images]
    batch.targets[:, -1] = torch.from_numpy(pool.y[images])
    batch.i1[:] = images
    return batch


def decode(batch: Batch, row: int) -> str:
    """One sequence as text, images shown as [img d]: e.g. 'BOS [img 7] + 3 = -> 10'."""
    out, t = [], batch.tokens[row].tolist()
    img = batch.is_img[row].tolist()
    pads = batch.pad[row].tolist()
    shown = iter(d for d in (batch.d1[row], batch.d2[row]) if d >= 0)
    for c in range(SEQ_LEN):
        if pads[c]:
            continue
        if img[c]:
            if batch.patch_idx[row, c] == 0:
                out.append(f"[img {next(shown)}]")
            continue
        out.append(VOCAB[t[c]])
    return " ".join(out) + f" -> {VOCAB[int(batch.answer[row])]}"


def check_answers(batch: Batch, pool: Pool) -> int:
    """Count the questions whose recorded answer disagrees with an independent recomputation from the
    tokens and the signals' labels (0 for a correct generator): a grader's second opinion."""
    bad = 0
    label_of = {pool.x[i].tobytes(): int(pool.y[i]) for i in range(len(pool))}
    for r in range(len(batch)):
        task = TASKS[int(batch.task[r])]
        toks = [VOCAB[i] for i, p in zip(batch.tokens[r].tolist(), batch.pad[r].tolist()) if not p]
        imgs = []
        img_rows = batch.patches[r][batch.is_img[r]].numpy()
        for j in range(0, len(img_rows), N_PATCHES):
            imgs.append(label_of[img_rows[j:j + N_PATCHES].reshape(-1).tobytes()])
        nums = [int(s) for s in toks if s.isdigit()]
        if task == "P":
            want = imgs[0]
        elif task == "Tadd":
            want = nums[0] + nums[1]
        elif task == "Tcmp":
            want = FIRST if nums[0] > nums[1] else SECOND
        elif task in ("Xadd", "XaddCoT"):
            want = imgs[0] + nums[0]
        else:
            want = FIRST if imgs[0] > imgs[1] else SECOND
        bad += int(want != int(batch.answer[r]) or want != int(batch.targets[r, -1]))
    return bad
