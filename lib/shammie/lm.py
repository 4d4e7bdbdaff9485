"""The language-model toolkit the LM themes share (ReST^EM, Gemma 2, Gemini 1.5, the model family).

- losses: `completion_loss` (next-token cross-entropy with the prompt's targets ignored, built by
  `mask_prompt`), `distillation_loss` (cross-entropy to a teacher's full next-token distribution, or
  to its top-k renormalised one), `teacher_top_k` + `sparse_distillation_loss` (the stored form of
  the top-k teacher: indices and probabilities);
- decoding: `sample_next` (greedy, temperature, top-k, top-p) and `generate` (batched, left-padded
  prompts of any lengths, KV-cached or not, stops on an end token);
- metrics: `pass_at_k` (the unbiased estimator of Chen et al. arXiv 2107.03374), `majority_vote`,
  `per_position_nll` and `fit_power_law` (L(x) = a x^b + c, as Gemini 1.5's Fig. 7);
- data: `stdlib_corpus`, a character corpus from the running Python's standard library (offline,
  sorted files, a hash and the Python version recorded), split by position, and `random_windows`;
- training: `train_lm`, the one LM training loop (AdamW, warm-up + cosine, gradient clipping, the
  mixture-of-experts balancing loss, tqdm, history), with `warmup_cosine` its schedule.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .core import ShammieError
from .training import progress

__all__ = [
    "IGNORE_INDEX",
    "mask_prompt",
    "completion_loss",
    "distillation_loss",
    "teacher_top_k",
    "sparse_distillation_loss",
    "sample_next",
    "generate",
    "Generation",
    "pass_at_k",
    "majority_vote",
    "per_position_nll",
    "fit_power_law",
    "CharCorpus",
    "stdlib_corpus",
    "random_windows",
    "warmup_cosine",
    "next_token_loss",
    "train_lm",
]

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def mask_prompt(targets: torch.Tensor, prompt_lengths: Sequence[int] | torch.Tensor,
                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """A copy of next-token `targets` (B, T) with the first `prompt_lengths[b] - 1` targets of row b set
    to `ignore_index`: with targets = tokens[1:], those targets are prompt tokens, so only the
    completion (what follows the prompt) is scored."""
    out = targets.clone()
    lengths = torch.as_tensor(prompt_lengths, device=targets.device).reshape(-1, 1)
    if lengths.shape[0] != targets.shape[0]:
        raise ShammieError(f"{lengths.shape[0]} prompt lengths for {targets.shape[0]} rows")
    cols = torch.arange(targets.shape[1], device=targets.device).unsqueeze(0)
    out[cols < lengths - 1] = ignore_index
    return out


def completion_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean next-token cross-entropy over the targets that are not `ignore_index` (logits (..., V))."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_position.mean()
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


def _renormalised_top_k(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not 1 <= k <= probs.shape[-1]:
        raise ShammieError(f"top_k must be in 1..{probs.shape[-1]} (the vocabulary), got {k}")
    top, idx = probs.topk(k, dim=-1)
    return idx, top / top.sum(-1, keepdim=True)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None = None, *,
                      teacher_probs: torch.Tensor | None = None, top_k: int | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy from the teacher's next-token distribution to the student's (Gemma 2, sec. 3.2):
    mean over positions of -sum_x p_T(x) log p_S(x).

    Give the teacher as logits or as probabilities (a one-hot teacher gives plain cross-entropy).
    `top_k`: keep the teacher's k most likely tokens, renormalised (zero elsewhere; Gemma 3's storage
    trick, deterministic here); `mask` (same leading shape, True = scored) picks positions. The
    gradient with respect to the student logits at a position is softmax(student) - p_teacher.
    """
    if (teacher_logits is None) == (teacher_probs is None):
        raise ShammieError("give exactly one of teacher_logits and teacher_probs")
    p = torch.softmax(teacher_logits, -1) if teacher_logits is not None else teacher_probs
    if p.shape != student_logits.shape:
        raise ShammieError(f"teacher {tuple(p.shape)} and student {tuple(student_logits.shape)} shapes differ")
    p = p.detach()
    if top_k is not None:
        idx, top = _renormalised_top_k(p, top_k)
        return sparse_distillation_loss(student_logits, idx, top, mask=mask)
    per_position = -(p * torch.log_softmax(student_logits, -1)).sum(-1)
    return _masked_mean(per_position, mask)


def teacher_top_k(teacher_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's k most likely tokens per position and their probabilities renormalised to sum to 1:
    (indices (..., k), probs (..., k)), the compact form to store for `sparse_distillation_loss`."""
    return _renormalised_top_k(torch.softmax(teacher_logits.detach(), -1), k)


def sparse_distillation_loss(student_logits: torch.Tensor, indices: torch.Tensor, probs: torch.Tensor, *,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
    """`distillation_loss` against a teacher given on a few tokens per position (indices, probs)."""
    logp = torch.log_softmax(student_logits, -1).gather(-1, indices)
    return _masked_mean(-(probs.detach() * logp).sum(-1), mask)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `logits` (B, V): the argmax when `temperature` is 0, else a sample of
    softmax(logits / temperature) restricted to the `top_k` most likely tokens and to the smallest
    set whose probability reaches `top_p` (nucleus). Returns (B,) token ids."""
    if temperature < 0:
        raise ShammieError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.float() / temperature
    if top_k is not None:
        if top_k < 1:
            raise ShammieError(f"top_k must be >= 1, got {top_k}")
        kth = z.topk(min(top_k, z.shape[-1]), dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ShammieError(f"top_p must be in (0, 1], got {top_p}")
        sorted_z, order = z.sort(-1, descending=True)
        probs = torch.softmax(sorted_z, -1)
        before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop = torch.zeros_like(z, dtype=torch.bool).scatter(-1, order, before >= top_p)
        z = z.masked_fill(drop, float("-inf"))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(-1)


@dataclass
class Generation:
    """What `generate` returns: the new tokens (B, N) (`pad_id` after a row's end token), each row's
    length up to and including its end token (N if it has none), and optionally each step's logits."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    logits: list[torch.Tensor] = field(default_factory=list)

    def rows(self) -> list[list[int]]:
        """Each row's new tokens as a list, cut after its end token."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist())]


def _left_pad(prompts, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2 or prompts.shape[1] < 1:
            raise ShammieError(f"prompts must have shape (batch, length >= 1), got {tuple(prompts.shape)}")
        return prompts.to(device), torch.zeros(prompts.shape, dtype=torch.bool, device=device)
    rows = [torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in prompts]
    if not rows or min(len(r) for r in rows) < 1:
        raise ShammieError("every prompt needs at least one token")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pad = torch.ones((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        pad[i, width - len(r):] = False
    return tokens.to(device), pad.to(device)


@torch.no_grad()
def generate(model, prompts: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None, pad_id: int = 0,
             generator: torch.Generator | None = None, use_cache: bool = True,
             keep_logits: bool = False) -> Generation:
    """Continue each prompt by up to `max_new_tokens` tokens (see `sample_next` for the sampling knobs).

    `prompts` is a (B, P) tensor or a list of token sequences of any lengths (left-padded with
    `pad_id` and hidden by a key-padding mask; each row's position ids start at 0). A row stops at
    `eos_id`; generation stops when every row has. With `use_cache` each step reads one token
    through the KV cache; without, the whole sequence is re-run (the same logits, slower).
    """
    spec = model.spec
    if max_new_tokens < 1:
        raise ShammieError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if eos_id is not None and not 0 <= eos_id < spec.vocab_size:
        raise ShammieError(f"eos_id {eos_id} is outside the vocabulary 0..{spec.vocab_size - 1}")
    if not 0 <= pad_id < spec.vocab_size:
        raise ShammieError(f"pad_id {pad_id} is outside the vocabulary 0..{spec.vocab_size - 1}")
    device = next(model.parameters()).device
    tokens, pad = _left_pad(prompts, pad_id, device)
    b = tokens.shape[0]
    positions = (torch.cumsum(~pad, dim=1) - 1).clamp_min(0)
    has_pad = bool(pad.any())
    was_training = model.training
    model.eval()
    out, kept = [], []
    done = torch.zeros(b, dtype=torch.bool, device=device)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long, device=device)
    cache: list | None = [] if use_cache else None
    step_tokens, step_pos, step_pad = tokens, positions, pad
    try:
        for step in range(max_new_tokens):
            if use_cache:
                logits = model(step_tokens, step_pos, key_padding_mask=step_pad if has_pad else None, cache=cache)
            else:
                logits = model(tokens, positions, key_padding_mask=pad if has_pad else None)
            last = logits[:, -1]
            if keep_logits:
                kept.append(last.clone())
            nxt = sample_next(last, temperature, top_k, top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            out.append(nxt)
            if eos_id is not None:
                ended = (nxt == eos_id) & ~done
                lengths[ended] = step + 1
                done |= ended
                if bool(done.all()):
                    break
            step_tokens, step_pos = nxt.unsqueeze(1), positions[:, -1:] + 1
            step_pad = torch.zeros_like(step_tokens, dtype=torch.bool)
            tokens = torch.cat([tokens, step_tokens], 1)
            positions = torch.cat([positions, step_pos], 1)
            pad = torch.cat([pad, step_pad], 1)
    finally:
        model.train(was_training)
    new = torch.stack(out, 1)
    return Generation(new, lengths.clamp_max(new.shape[1]), kept)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021), computed as a stable product."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ShammieError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers: Iterable[Hashable | None]) -> Hashable | None:
    """The most frequent answer (None entries, i.e. no answer, ignored; ties go to the first seen)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in counts if counts[a] == best)


@torch.no_grad()
def per_position_nll(model, windows: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Mean next-token NLL (nats) at each position over `windows` (N, T + 1) of token ids: entry t is
    the loss of predicting token t + 1 from tokens 0..t, averaged over the N windows."""
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ShammieError(f"windows must have shape (N, T + 1) with T >= 1, got {tuple(windows.shape)}")
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    total = torch.zeros(windows.shape[1] - 1, dtype=torch.float64)
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i : i + batch_size].to(device)
        logits = model(w[:, :-1])
        nll = F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="none")
        total += nll.double().sum(0).cpu()
    model.train(was)
    return (total / windows.shape[0]).numpy()


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of y = a * x^b + c (scipy's curve_fit): {"a", "b", "c", "rmse"}."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 4 or (x <= 0).any():
        raise ShammieError("fit_power_law needs >= 4 points with x > 0 and as many y values")

    def law(x, a, b, c):
        return a * np.power(x, b) + c

    p0 = (float(y[0] - y[-1]) or 1.0, -0.5, float(y[-1]))
    (a, b, c), _ = curve_fit(law, x, y, p0=p0, maxfev=20000)
    rmse = float(np.sqrt(np.mean((law(x, a, b, c) - y) ** 2)))
    return {"a": float(a), "b": float(b), "c": float(c), "rmse": rmse}


# ---------------------------------------------------------------------------------------------
# Data: a character corpus of the standard library
# ---------------------------------------------------------------------------------------------
@dataclass
class CharCorpus:
    """Characters of a text as ids: `train` and `val` (1-D LongTensors split by position), the
    alphabet, a sha256 of the text, the Python version and the files read."""

    text: str
    chars: list[str]
    train: torch.Tensor
    val: torch.Tensor
    sha256: str
    python: str
    files: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        index = {c: i for i, c in enumerate(self.chars)}
        return [index[c] for c in s]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def stdlib_corpus(max_chars: int = 1_200_000, val_fraction: float = 0.1) -> CharCorpus:
    """The top-level .py files of the running Python's standard library, sorted by name, concatenated
    and cut at `max_chars` characters; the first 1 - `val_fraction` is train, the rest validation."""
    if max_chars < 100 or not 0 < val_fraction < 1:
        raise ShammieError(f"need max_chars >= 100 and 0 < val_fraction < 1, got {max_chars}, {val_fraction}")
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, files, size = [], [], 0
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        files.append(path.name)
        size += len(text)
        if size >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    if len(text) < 100:
        raise ShammieError(f"found too little standard-library source under {root}")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(round(len(ids) * (1 - val_fraction)))
    return CharCorpus(text, chars, ids[:cut], ids[cut:], hashlib.sha256(text.encode()).hexdigest(),
                      sys.version.split()[0], files)


def random_windows(data: torch.Tensor, length: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` windows (count, length) of consecutive ids from the 1-D `data`, at random offsets."""
    if data.numel() < length:
        raise ShammieError(f"the data ({data.numel()} ids) is shorter than one window ({length})")
    start = torch.randint(0, data.numel() - length + 1, (count,), generator=generator)
    return data[start.unsqueeze(1) + torch.arange(length)]


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def warmup_cosine(step: int, steps: int, warmup: float | int = 0.05) -> float:
    """Learning-rate factor at `step` (0-based) of `steps`: linear warm-up over `warmup` steps (an int)
    or over a fraction of the run (a float < 1), then a cosine to 0."""
    w = max(1, warmup if isinstance(warmup, int) else round(warmup * steps))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / max(1, steps - w)))


def next_token_loss(model, batch: Any) -> torch.Tensor:
    """The default loss of `train_lm`: a (B, T + 1) tensor -> next-token cross-entropy on it; an
    (inputs, targets) pair -> cross-entropy with `IGNORE_INDEX` targets skipped (completion-only)."""
    if isinstance(batch, torch.Tensor):
        inputs, targets = batch[:, :-1], batch[:, 1:]
    else:
        inputs, targets = batch
    return completion_loss(model(inputs), targets)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple | list):
        return type(batch)(_to(b, device) for b in batch)
    return batch.to(device) if hasattr(batch, "to") else batch


def train_lm(model, next_batch: Callable[[int], Any], *, steps: int,
             loss_fn: Callable[[Any, Any], torch.Tensor] = next_token_loss, lr: float = 3e-3,
             warmup: float | int = 0.05, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95),
             clip: float | None = 1.0, aux_weight: float = 0.01, log_every: int = 25,
             evaluate: Callable[[Any], dict[str, float]] | None = None, eval_every: int | None = None,
             device: torch.device | str = "cpu", desc: str = "train") -> dict[str, list[float]]:
    """Train `model` in place: AdamW with warm-up then cosine decay, gradient-norm clipping.

    `next_batch(step)` (step 1..steps) returns a batch and `loss_fn(model, batch)` its loss (default
    `next_token_loss`). A model with a mixture-of-experts layer adds `aux_weight` times its
    load-balancing loss. History: "step" and "loss" (the mean over each `log_every` steps, the
    balancing loss left out), and with `evaluate(model) -> {name: value}` (run in eval mode every
    `eval_every` steps and at the end) "eval_step" and one list per name. A non-finite loss stops
    with an error naming the step. The model is left in eval mode.
    """
    if steps < 1 or log_every < 1:
        raise ShammieError(f"steps and log_every must be >= 1, got {steps}, {log_every}")
    if lr <= 0:
        raise ShammieError(f"lr must be positive, got {lr}")
    device = torch.device(device)
    model.to(device).train()
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup))
    history: dict[str, list[float]] = {"step": [], "loss": []}
    running, count = 0.0, 0

    def run_eval(step: int) -> None:
        model.eval()
        with torch.no_grad():
            values = evaluate(model)
        history.setdefault("eval_step", []).append(step)
        for name, value in values.items():
            history.setdefault(name, []).append(float(value))
        model.train()

    for step in progress(range(1, steps + 1), desc=desc, leave=False):
        batch = _to(next_batch(step), device)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise ShammieError(f"{desc}: the loss became {loss.item()} at step {step}; lower lr (lr={lr})")
        total = loss
        aux = getattr(model, "aux_loss", None)
        if aux is not None and aux_weight:
            total = loss + aux_weight * aux
        opt.zero_grad(set_to_none=True)
        total.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        running += loss.item()
        count += 1
        if step % log_every == 0 or step == steps:
            history["step"].append(step)
            history["loss"].append(running / count)
            running, count = 0.0, 0
        if evaluate is not None and ((eval_every and step % eval_every == 0) or step == steps):
            run_eval(step)
    model.eval()
    return history
