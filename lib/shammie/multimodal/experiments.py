"""Training and evaluation: the joint family, the specialists, the pipelines, digit-first answers.

Training goes through the workbook's one LM loop (`shammie.lm.train_lm`: AdamW, warm-up + cosine,
clipping); each step draws fresh questions over the training signals from a NumPy generator of its
own, so the global RNGs play no part. Evaluation uses fixed question sets over the test signals only
(`question_sets`), the same questions for every model (paired comparisons).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import ShammieError
from ..data import load_mnist1d
from ..lm import train_lm
from .model import MultimodalLM, answer_loss
from .tasks import (
    BOS,
    CMP,
    EQ,
    PAD,
    PLUS,
    SEQ_LEN,
    TASKS,
    Batch,
    Pool,
    make_batch,
    perception_batch,
    task_counts,
)

__all__ = [
    "Pools", "load_pools", "question_sets", "Trained", "train_model", "predict", "cot_predict", "evaluate",
    "text_batch", "pipeline_xadd", "pipeline_xcmp", "self_pipeline_xcmp", "THINK_COL", "DIGIT_COL",
]

THINK_COL = SEQ_LEN - 3  # a digit-first question's THINK token: its prediction is the stated digit
DIGIT_COL = SEQ_LEN - 2  # where the stated digit is written before the answer is read


@dataclass
class Pools:
    """Training signals (8000), validation (the first half of the test signals: routing thresholds only)
    and test (the second half: every reported number)."""

    train: Pool
    val: Pool
    test: Pool
    name: str = ""


def load_pools(num_samples: int = 10_000, seed: int = 0) -> Pools:
    """MNIST-1D generated locally (shammie.data, cached): 80% train, the test part split in halves."""
    ds = load_mnist1d(num_samples, seed=seed)
    xt, yt = ds.x_test.numpy(), ds.y_test.numpy()
    half = len(yt) // 2
    return Pools(Pool(ds.x_train.numpy(), ds.y_train.numpy(), "train"), Pool(xt[:half], yt[:half], "val"),
                 Pool(xt[half:], yt[half:], "test"), ds.name)


def question_sets(pool: Pool, n: int, seed: int, held: np.ndarray) -> dict[str, Batch]:
    """n fixed questions per task over `pool` (cross-modal sums on seen pairs), plus "Xadd held" and
    "XaddCoT held" on the held-out (digit, k) pairs only. Xadd and XaddCoT hold the same questions (the
    same images and k: direct and digit-first answers are paired). The same seed gives the same questions."""
    key = {"P": 0, "Tadd": 1, "Tcmp": 2, "Xadd": 3, "XaddCoT": 3, "Xcmp": 4}
    sets = {t: make_batch({t: n}, pool, np.random.default_rng([seed, key[t]]), held=held) for t in TASKS}
    for t in ("Xadd", "XaddCoT"):
        sets[f"{t} held"] = make_batch({t: n}, pool, np.random.default_rng([seed, 5]), held=held, pairs="held")
    return sets


@dataclass
class Trained:
    """A trained model, its loss history and the CPU seconds its training took."""

    model: MultimodalLM
    history: dict = field(default_factory=dict)
    cpu_s: float = 0.0
    steps: int = 0


def train_model(model: MultimodalLM, pool: Pool, held: np.ndarray, mix: dict[str, float], *, steps: int,
                batch_size: int, seed: int, lr: float = 3e-3, warmup: int = 50, weight_decay: float = 0.01,
                loss_fn: Callable | None = None, desc: str = "train") -> Trained:
    """Train on fresh questions of the task `mix` each step (held-out pairs never shown), AdamW
    (betas 0.9, 0.98) with warm-up and cosine decay via lm.train_lm."""
    counts = task_counts(mix, batch_size)
    rng = np.random.default_rng(seed)
    t0 = time.process_time()
    hist = train_lm(model, lambda step: make_batch(counts, pool, rng, held=held), steps=steps,
                    loss_fn=loss_fn or answer_loss, lr=lr, warmup=min(warmup, max(1, steps // 5)),
                    weight_decay=weight_decay, betas=(0.9, 0.98), clip=1.0, log_every=max(1, steps // 20), desc=desc)
    return Trained(model, hist, time.process_time() - t0, steps)


@torch.no_grad()
def _logits(model: MultimodalLM, batch: Batch, column: int, chunk: int = 512) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(batch), chunk):
        part = batch.select(np.arange(i, min(i + chunk, len(batch))))
        out.append(model(part)[:, column])
    return torch.cat(out)


def predict(model: MultimodalLM, batch: Batch, column: int = SEQ_LEN - 1) -> np.ndarray:
    """Greedy next token at `column` (default: the final answer) for every question."""
    return _logits(model, batch, column).argmax(-1).numpy()


def cot_predict(model: MultimodalLM, batch: Batch, digits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Digit-first answers of XaddCoT questions: the model states the digit (greedy at THINK, or the
    given `digits`), the digit is written in, then the answer is read. Returns (stated digits, answers).
    The causal mask makes the THINK prediction blind to the (teacher-forced) digit after it."""
    stated = predict(model, batch, THINK_COL) if digits is None else np.asarray(digits)
    return stated, predict(model, batch.with_tokens(DIGIT_COL, stated))


def evaluate(model: MultimodalLM, sets: dict[str, Batch]) -> dict[str, float]:
    """Accuracy per task on the fixed question sets: direct answers; for XaddCoT the digit-first answer
    ("XaddCoT") and the stated digit ("XaddCoT digit"); the held-out-pair sets likewise."""
    acc = {}
    for name, batch in sets.items():
        if name.startswith("XaddCoT"):
            stated, ans = cot_predict(model, batch)
            acc[name] = float(np.mean(ans == batch.answer))
            acc[name.replace("XaddCoT", "XaddCoT digit")] = float(np.mean(stated == batch.d1))
        else:
            acc[name] = float(np.mean(predict(model, batch) == batch.answer))
    return acc


def text_batch(rows: list[list[int]]) -> Batch:
    """Text-only questions (token lists, no images) left-padded into a Batch, for pipelines."""
    n = len(rows)
    tokens = torch.full((n, SEQ_LEN), PAD, dtype=torch.long)
    pad = torch.ones((n, SEQ_LEN), dtype=torch.bool)
    positions = torch.zeros((n, SEQ_LEN), dtype=torch.long)
    for i, r in enumerate(rows):
        if not 1 <= len(r) <= SEQ_LEN:
            raise ShammieError(f"a text question needs 1..{SEQ_LEN} tokens, got {len(r)}")
        tokens[i, SEQ_LEN - len(r):] = torch.as_tensor(r)
        pad[i, SEQ_LEN - len(r):] = False
        positions[i, SEQ_LEN - len(r):] = torch.arange(len(r))
    z = np.full(n, -1)
    return Batch(tokens, positions, pad, torch.zeros_like(pad), torch.zeros_like(tokens),
                 torch.zeros((n, SEQ_LEN, 8)), torch.full_like(tokens, -100), np.zeros(n, dtype=np.int64),
                 z, z, z, z, z, z, z, z)


def _perceive(model: MultimodalLM, pool: Pool, images: np.ndarray) -> np.ndarray:
    """The model's answer to a P question about each signal (non-digit answers kept as they are)."""
    return predict(model, perception_batch(pool, images))


def _digit_or_zero(d: np.ndarray) -> np.ndarray:
    return np.where((d >= 0) & (d <= 9), d, 0)  # a text model reads digits only


def pipeline_xadd(perceiver: MultimodalLM, reasoner: MultimodalLM, batch: Batch, pool: Pool) -> float:
    """Accuracy of perceive-then-compute on Xadd questions: `perceiver` names the digit (a P question),
    `reasoner` answers the text question 'BOS d + k ='."""
    d = _digit_or_zero(_perceive(perceiver, pool, batch.i1))
    ans = predict(reasoner, text_batch([[BOS, int(a), PLUS, int(k), EQ] for a, k in zip(d, batch.k)]))
    return float(np.mean(ans == batch.answer))


def pipeline_xcmp(perceiver: MultimodalLM, reasoner: MultimodalLM, batch: Batch, pool: Pool) -> float:
    """Accuracy of perceive-then-compare on Xcmp questions ('BOS d1 d2 CMP' to `reasoner`)."""
    d1 = _digit_or_zero(_perceive(perceiver, pool, batch.i1))
    d2 = _digit_or_zero(_perceive(perceiver, pool, batch.i2))
    ans = predict(reasoner, text_batch([[BOS, int(a), int(b), CMP] for a, b in zip(d1, d2)]))
    return float(np.mean(ans == batch.answer))


def self_pipeline_xcmp(model: MultimodalLM, batch: Batch, pool: Pool) -> float:
    """The joint model as its own pipeline on Xcmp: its P answer on each image, then its own Tcmp."""
    return pipeline_xcmp(model, model, batch, pool)

