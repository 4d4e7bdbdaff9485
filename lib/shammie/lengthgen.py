"""Length generalization of tiny transformers (Anil et al., arXiv 2207.04901): algorithmic tasks with
exact answers, scratchpad formats, position-id schemes, training on short instances and greedy
evaluation on longer ones, with the failures sorted by kind.

Tasks (`TASKS`), each with a length n:

- ``parity``: n bits, answer = their XOR. Prompt ``b1 .. bn =``. Scratchpads write the running parity
  as ``E`` (even so far) / ``O`` (odd), symbols distinct from the input bits, so that a model whose
  attention is restricted to a window can still tell the state from the input.
- ``variables``: n boolean assignments over the variables a..h, executed in order; answer = the value
  of the last assigned variable. A statement is four tokens ``x : y ;`` (copy) or ``x ! y ;``
  (negate), the first one assigns a constant ``x : 0 ;``. Prompt ``statements ? x =``.
- ``addition``: two operands of n and m digits, both written with max(n, m) digits (zero-padded),
  answer = their sum written with max(n, m) + 1 digits; ``reverse=True`` writes every number least
  significant digit first. The length of an instance is max(n, m).
- ``copy``: n digits, answer = the same digits.

Formats (`FORMATS`): ``none`` (the answer right after ``=``), ``short`` (one token of state per step:
running parity, value after each assignment, carry out of each digit; copy has none), ``full`` (an
explicit trace per step in the spirit of Zhou et al. arXiv 2211.09066: the step restates what it
reads and writes what it computes). Every target is ``steps > answer <eos>`` (``answer <eos>`` for
``none``).

Position-id schemes (`SCHEMES`): ``plain`` (0, 1, 2, ...), ``randomized`` (a sorted random subset of
0..max_positions-1, Ruoss et al. arXiv 2305.16843), ``coupled`` (tokens that must interact share an
id: bit i and scratchpad step i, digit i of both operands and of the answer; random start while
training, Cho et al. arXiv 2405.20671) and ``hints`` (plain ids, but a hint token ``h<k>`` is written
before each indexed item, the same hint for items that interact; Zhou et al. arXiv 2310.16028).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, ProfileConfig
from .core import ShammieError
from .training import progress
from .transformer import POSITION_ENCODINGS, TinyTransformer, count_parameters

__all__ = [
    "TASKS",
    "FORMATS",
    "SCHEMES",
    "FAILURE_KINDS",
    "PAD",
    "EOS",
    "SEP",
    "Example",
    "Tokenizer",
    "make_example",
    "sample_examples",
    "check_task",
    "position_ids",
    "encode_example",
    "Batch",
    "ExamplePool",
    "batch_loss",
    "train_model",
    "warmup_cosine",
    "greedy_decode",
    "classify",
    "LengthEval",
    "evaluate_by_length",
    "max_position_needed",
    "Variant",
    "LengthGenConfig",
    "parity_variants",
    "addition_variants",
    "build_model",
    "run_variant",
    "summarize_runs",
    "plot_accuracy_by_length",
    "plot_length_heatmap",
    "plot_attention",
    "attention_maps",
    "results_table",
    "failure_counts",
    "failure_examples",
    "plot_failure_kinds",
    "plot_loss_curves",
    "plot_relative_length",
    "lookup_attention",
]

TASKS = ("parity", "variables", "addition", "copy")
FORMATS = ("none", "short", "full")
SCHEMES = ("plain", "randomized", "coupled", "hints")
FAILURE_KINDS = ("correct", "wrong_length", "wrong_step", "wrong_answer")

PAD, EOS, SEP = "<pad>", "<eos>", ">"
DIGITS = tuple("0123456789")
VARIABLES = tuple("abcdefgh")
SYMBOLS = ("+", "=", SEP, ":", ";", "!", "?", "[", "]")
PARITY_STATES = ("E", "O")  # running parity in a scratchpad: even / odd so far


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One problem instance rendered as tokens.

    `prompt` ends with ``=``; the target is `steps` (flattened), then ``>`` and `answer` when there are
    steps, then ``<eos>``. Each token has an `align` index (its coupled position before the random
    start: the bit/digit/statement/step it belongs to) and an `indexed` flag (it gets an index hint).
    `problem` holds the raw instance (bits, program, operands) for independent checks.
    """

    task: str
    length: int
    fmt: str
    problem: dict = field(compare=False)
    prompt: tuple[str, ...]
    steps: tuple[tuple[str, ...], ...]
    answer: tuple[str, ...]
    prompt_align: tuple[int, ...]
    step_align: tuple[int, ...]
    answer_align: tuple[int, ...]
    sep_align: int
    prompt_indexed: tuple[bool, ...]
    answer_indexed: bool

    @property
    def scratch(self) -> tuple[str, ...]:
        """The scratchpad tokens (the steps, flattened; empty for format ``none``)."""
        return tuple(t for s in self.steps for t in s)

    @property
    def target(self) -> tuple[str, ...]:
        """What the model must write after the prompt: scratchpad, ``>``, answer, ``<eos>``."""
        sep = (SEP,) if self.steps else ()
        return self.scratch + sep + self.answer + (EOS,)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Prompt and target."""
        return self.prompt + self.target

    @property
    def align(self) -> tuple[int, ...]:
        """The coupled index of every token of `tokens`."""
        out = list(self.prompt_align)
        for s, a in zip(self.steps, self.step_align):
            out += [a] * len(s)
        if self.steps:
            out.append(self.sep_align)
        out += list(self.answer_align)
        out.append(max(out) + 1)  # <eos>
        return tuple(out)

    @property
    def indexed(self) -> tuple[bool, ...]:
        """Whether each token of `tokens` belongs to an indexed item (gets an index hint)."""
        out = list(self.prompt_indexed)
        for s in self.steps:
            out += [True] * len(s)
        if self.steps:
            out.append(False)
        out += [self.answer_indexed] * len(self.answer)
        out.append(False)
        return tuple(out)

    def text(self, tokens: Sequence[str] | None = None) -> str:
        """Tokens as a compact string (single characters joined, longer tokens spaced)."""
        toks = self.tokens if tokens is None else tokens
        return "".join(t if len(t) == 1 else f" {t} " for t in toks).replace("  ", " ").strip()


def check_task(task: str, fmt: str = "none") -> None:
    """Raise a ShammieError naming the choices when `task` or `fmt` is unknown or they do not combine."""
    if task not in TASKS:
        raise ShammieError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if fmt not in FORMATS:
        raise ShammieError(f"unknown scratchpad format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if task == "copy" and fmt == "short":
        raise ShammieError("copy has no intermediate state for a short scratchpad: use fmt='none' or 'full'")


def _check_length(n: Any, what: str = "length") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ShammieError(f"{what} must be a positive integer, got {n!r}")
    return int(n)


def _parity(n: int, rng: np.random.Generator, fmt: str) -> Example:
    bits = [int(b) for b in rng.integers(0, 2, size=n)]
    states, s = [], 0
    for b in bits:
        s ^= b
        states.append(s)
    prompt = tuple(str(b) for b in bits) + ("=",)
    steps: list[tuple[str, ...]] = []
    if fmt == "short":
        steps = [(PARITY_STATES[x],) for x in states]
    elif fmt == "full":  # remaining list, its first element, old state, new state
        prev = 0
        for j in range(n):
            rest = tuple(str(b) for b in bits[j:])
            steps.append(("[",) + rest + ("]", str(bits[j]), PARITY_STATES[prev], PARITY_STATES[states[j]], ";"))
            prev = states[j]
    return Example("parity", n, fmt, {"bits": bits}, prompt, tuple(steps), (str(states[-1]),),
                   tuple(range(1, n + 1)) + (0,), tuple(range(1, len(steps) + 1)), (n + 2,), n + 1,
                   (True,) * n + (False,), False)


def _variables(n: int, rng: np.random.Generator, fmt: str, n_vars: int = len(VARIABLES)) -> Example:
    names = VARIABLES[:n_vars]
    values: dict[str, int] = {}
    program, prompt, steps, align = [], [], [], []
    for k in range(1, n + 1):
        x = names[int(rng.integers(len(names)))]
        if k == 1:
            op, ref = ":", str(int(rng.integers(2)))
            ref_val = int(ref)
        else:
            assigned = sorted(values)
            ref = assigned[int(rng.integers(len(assigned)))]
            op = ":" if rng.integers(2) == 0 else "!"
            ref_val = values[ref]
        val = ref_val ^ (op == "!")
        values[x] = val
        program.append((x, op, ref))
        prompt += [x, op, ref, ";"]
        align += [k] * 4
        if fmt == "short":
            steps.append((str(val),))
        elif fmt == "full":  # restate the statement, the value read, the value written
            steps.append((x, op, ref, str(ref_val), str(val), ";"))
    last = program[-1][0]
    prompt += ["?", last, "="]
    align += [0, 0, 0]
    return Example("variables", n, fmt, {"program": program}, tuple(prompt), tuple(steps), (str(values[last]),),
                   tuple(align), tuple(range(1, len(steps) + 1)), (n + 2,), n + 1,
                   (True,) * (4 * n) + (False,) * 3, False)


def _random_number(k: int, rng: np.random.Generator) -> int:
    if k == 1:
        return int(rng.integers(10))
    first = int(rng.integers(1, 10))
    rest = rng.integers(0, 10, size=k - 1)
    return int(str(first) + "".join(str(int(d)) for d in rest))


def _addition(n: int, rng: np.random.Generator, fmt: str, reverse: bool, second: int | None) -> Example:
    la, lb = n, (n if second is None else _check_length(second, "second operand length"))
    a, b = _random_number(la, rng), _random_number(lb, rng)
    m = max(la, lb)
    total = a + b
    da = [int(c) for c in reversed(str(a).zfill(m))]  # least significant first, zero-padded to m digits
    db = [int(c) for c in reversed(str(b).zfill(m))]
    ds = [int(c) for c in reversed(str(total).zfill(m + 1))]

    def render(digits: list[int]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        toks = tuple(str(d) for d in digits)
        al = tuple(range(1, len(digits) + 1))
        return (toks, al) if reverse else (toks[::-1], al[::-1])

    ta, aa = render(da)
    tb, ab = render(db)
    ts, as_ = render(ds)
    prompt = ta + ("+",) + tb + ("=",)
    prompt_align = aa + (0,) + ab + (0,)
    steps: list[tuple[str, ...]] = []
    carry = 0
    for i in range(m):  # the digit loop, least significant first
        x, y = da[i], db[i]
        s = x + y + carry
        if fmt == "short":
            steps.append((str(s // 10),))
        elif fmt == "full":  # the two digits, carry in, sum digit, carry out
            steps.append((str(x), str(y), str(carry), str(s % 10), str(s // 10), ";"))
        carry = s // 10
    indexed = (True,) * m + (False,) + (True,) * m + (False,)
    return Example("addition", m, fmt, {"a": a, "b": b, "reverse": reverse}, prompt, tuple(steps), ts,
                   prompt_align, tuple(range(1, len(steps) + 1)), as_, 0, indexed, True)


def _copy(n: int, rng: np.random.Generator, fmt: str) -> Example:
    xs = [int(d) for d in rng.integers(0, 10, size=n)]
    toks = tuple(str(d) for d in xs)
    steps: list[tuple[str, ...]] = []
    if fmt == "full":  # the remaining list and its first element
        steps = [("[",) + toks[j:] + ("]", toks[j], ";") for j in range(n)]
    return Example("copy", n, fmt, {"digits": xs}, toks + ("=",), tuple(steps), toks,
                   tuple(range(1, n + 1)) + (0,), tuple(range(1, len(steps) + 1)), tuple(range(1, n + 1)), 0,
                   (True,) * n + (False,), True)


def make_example(task: str, length: int, rng: np.random.Generator | int, fmt: str = "short",
                 reverse: bool = True, second_length: int | None = None) -> Example:
    """One instance of `task` of size `length` in scratchpad format `fmt`.

    For addition `length` is the first operand's digit count and `second_length` the second's
    (default: equal); `reverse` writes numbers least significant digit first. `rng` is a NumPy
    Generator or a seed.
    """
    check_task(task, fmt)
    n = _check_length(length)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if task == "parity":
        return _parity(n, rng, fmt)
    if task == "variables":
        return _variables(n, rng, fmt)
    if task == "addition":
        return _addition(n, rng, fmt, reverse, second_length)
    return _copy(n, rng, fmt)


def sample_examples(task: str, count: int, lengths: Sequence[int], rng: np.random.Generator | int,
                    fmt: str = "short", reverse: bool = True) -> list[Example]:
    """`count` instances with lengths drawn uniformly from `lengths` (addition: each operand's length
    drawn independently, so every pair of lengths is equally likely)."""
    check_task(task, fmt)
    lengths = [_check_length(n) for n in lengths]
    if not lengths:
        raise ShammieError("lengths is empty: give at least one positive length")
    if count < 1:
        raise ShammieError(f"count must be >= 1, got {count}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = []
    for _ in range(count):
        n = lengths[int(rng.integers(len(lengths)))]
        if task == "addition":
            m = lengths[int(rng.integers(len(lengths)))]
            out.append(make_example(task, n, rng, fmt, reverse, second_length=m))
        else:
            out.append(make_example(task, n, rng, fmt, reverse))
    return out


# ---------------------------------------------------------------------------------------------
# Tokens and positions
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Batches and training
# ---------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Inputs (B, T), next-token targets (B, T), position ids (B, T) and a mask of the targets that count.

    The mask covers only the target part (scratchpad, answer, end), never the prompt or the padding.
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
        self.ids, self.align, self.prompt_len = [], [], []
        for ex in self.examples:
            off = int(rng.integers(max(tokenizer.n_hints, 1))) if scheme == "hints" else 0
            ids, al, p = encode_example(ex, tokenizer, scheme, off)
            self.ids.append(ids)
            self.align.append(al)
            self.prompt_len.append(p)

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
                seg[r, at : at + n] = k
                at += n
        return Batch(torch.from_numpy(tokens), torch.from_numpy(targets), torch.from_numpy(pos), torch.from_numpy(mask),
                     torch.from_numpy(seg) if pack else None)


def batch_loss(model: TinyTransformer, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions over the targets in `batch.loss_mask`."""
    hidden = model(batch.tokens, batch.positions, segments=batch.segments, return_hidden=True)
    return F.cross_entropy(model.head(hidden[batch.loss_mask]), batch.targets[batch.loss_mask])


def warmup_cosine(step: int, steps: int, warmup: float = 0.05) -> float:
    """Learning-rate factor at `step` of `steps`: linear warm-up over a `warmup` fraction, then a cosine to 0."""
    w = max(1, round(warmup * steps))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1.0 + math.cos(math.pi * (step - w) / max(1, steps - w)))


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
    if steps < 1 or batch_size < 1:
        raise ShammieError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if lr <= 0:
        raise ShammieError(f"lr must be positive, got {lr}")
    max_positions = max_positions or model.spec.max_positions
    device = torch.device(device)
    model.to(device).train()
    rng = np.random.default_rng(seed)
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup))
    history: dict[str, list[float]] = {"step": [], "loss": []}
    running, count = 0.0, 0
    for step in progress(range(1, steps + 1), desc=desc, leave=False):
        idx = rng.integers(0, len(pool), size=batch_size)
        batch = pool.batch(idx, rng, max_positions, train=True, pack=pack).to(device)
        loss = batch_loss(model, batch)
        if not torch.isfinite(loss):
            raise ShammieError(f"{desc}: the loss became {loss.item()} at step {step}; lower lr (lr={lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
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
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# Decoding and evaluation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy_decode(model: TinyTransformer, prompt: torch.Tensor, positions: torch.Tensor, n_new: int,
                  use_cache: bool = True) -> torch.Tensor:
    """Greedily generate `n_new` tokens after `prompt` (B, P); `positions` (B, P + n_new) gives the ids
    of the prompt and of each generated slot. Returns the generated ids (B, n_new)."""
    if positions.shape[1] < prompt.shape[1] + n_new:
        raise ShammieError(f"positions cover {positions.shape[1]} slots; prompt + n_new needs {prompt.shape[1] + n_new}")
    was_training = model.training
    model.eval()
    p = prompt.shape[1]
    out = []
    if use_cache:
        cache: list = []
        logits = model(prompt, positions[:, :p], cache=cache)
        for k in range(n_new):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            if k + 1 < n_new:
                logits = model(nxt, positions[:, p + k : p + k + 1], cache=cache)
    else:
        seq = prompt
        for k in range(n_new):
            logits = model(seq, positions[:, : p + k])
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            seq = torch.cat([seq, nxt], dim=1)
    model.train(was_training)
    return torch.cat(out, dim=1)


def classify(ex: Example, generated: Sequence[str]) -> tuple[str, int | None]:
    """The kind of the first error of `generated` (hint tokens ignored) against `ex.target`.

    ``correct``; ``wrong_step`` (the first difference is a wrong value inside a scratchpad step: the
    step's 1-based index is returned); ``wrong_length`` (the first difference is structural: the
    model ends, or starts the answer, too early or too late); ``wrong_answer`` (every step right, the
    answer wrong).
    """
    gen = [t for t in generated if not (t.startswith("h") and t[1:].isdigit())]
    if EOS in gen:
        gen = gen[: gen.index(EOS) + 1]
    ref = list(ex.target)
    if gen == ref:
        return "correct", None
    first = next((i for i, (g, r) in enumerate(zip(gen, ref)) if g != r), min(len(gen), len(ref)))
    structural = (SEP, EOS)
    n_scratch = len(ex.scratch)
    g = gen[first] if first < len(gen) else EOS
    r = ref[first] if first < len(ref) else EOS
    if g in structural or r in structural:
        return "wrong_length", None
    if first < n_scratch:
        k = 0
        for j, step in enumerate(ex.steps):
            k += len(step)
            if first < k:
                return "wrong_step", j + 1
    return "wrong_answer", None


def _until_end(tokens: Sequence[str]) -> list[str]:
    """The tokens up to and including the first end token."""
    tokens = list(tokens)
    return tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens


def _answer_correct(ex: Example, generated: Sequence[str]) -> bool:
    gen = [t for t in generated if not (t.startswith("h") and t[1:].isdigit())]
    if EOS not in gen:
        return False
    gen = gen[: gen.index(EOS)]
    return tuple(gen[len(gen) - len(ex.answer):]) == ex.answer if len(gen) >= len(ex.answer) else False


@dataclass
class LengthEval:
    """Exact-match accuracy (whole target), answer accuracy and failure kinds per test length."""

    lengths: list[int]
    exact: dict[int, float]
    answer: dict[int, float]
    kinds: dict[int, dict[str, int]]
    step_errors: dict[int, list[int]]  # per length: the first wrong step of each wrong_step failure
    samples: list[dict] = field(default_factory=list)  # a few (length, kind, prompt, reference, generated)

    def to_dict(self) -> dict:
        """Plain values for metrics.json (lengths as string keys)."""
        return {"exact": {str(k): v for k, v in self.exact.items()},
                "answer": {str(k): v for k, v in self.answer.items()},
                "kinds": {str(k): v for k, v in self.kinds.items()}}


def _eval_examples(task: str, n: int, count: int, seed: int, fmt: str, reverse: bool) -> list[Example]:
    rng = np.random.default_rng([seed, n, TASKS.index(task)])
    return [make_example(task, n, rng, fmt, reverse) for _ in range(count)]


@torch.no_grad()
def evaluate_by_length(model: TinyTransformer, task: str, lengths: Sequence[int], *, fmt: str = "short",
                       scheme: str = "plain", tokenizer: Tokenizer | None = None, n_samples: int = 100,
                       seed: int = 1234, reverse: bool = True, max_positions: int | None = None,
                       keep_samples: int = 3, device: torch.device | str | None = None) -> LengthEval:
    """Greedy-decode `n_samples` fresh instances per length in `lengths` and score them.

    The test instances depend only on (`seed`, length, task), so every model sees the same ones. The
    decoder writes as many tokens as the reference target has (the known length is used only to
    stop); a missing or misplaced end token counts as ``wrong_length``.
    """
    check_task(task, fmt)
    lengths = [_check_length(n, "test length") for n in lengths]
    if n_samples < 1:
        raise ShammieError(f"n_samples must be >= 1, got {n_samples}")
    tokenizer = tokenizer or Tokenizer()
    max_positions = max_positions or model.spec.max_positions
    device = torch.device(device) if device is not None else next(model.parameters()).device
    out = LengthEval(lengths, {}, {}, {}, {})
    for n in lengths:
        exs = _eval_examples(task, n, n_samples, seed, fmt, reverse)
        need = max_position_needed(exs[0], scheme, max_positions, tokenizer)
        if model.spec.position == "learned" and need >= model.spec.max_positions:
            raise ShammieError(
                f"test length {n} needs position id {need}, beyond the {model.spec.max_positions} learned absolute "
                f"positions of this model: build it with max_positions >= {need + 1}, or test shorter lengths")
        rng = np.random.default_rng([seed, n, 99])
        enc = [encode_example(ex, tokenizer, scheme) for ex in exs]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (ids, _, p) in enumerate(enc):
            groups.setdefault((len(ids), p), []).append(i)
        kinds: Counter = Counter()
        steps: list[int] = []
        exact = answer = 0
        for (total, p), members in groups.items():
            ids = torch.tensor(np.stack([enc[i][0] for i in members]), device=device)
            pos = torch.tensor(np.stack([position_ids(scheme, enc[i][1], rng, max_positions, train=False)
                                         for i in members]), device=device)
            gen = greedy_decode(model, ids[:, :p], pos, total - p).cpu().numpy()
            for row, i in enumerate(members):
                g = tokenizer.decode(gen[row])
                kind, step = classify(exs[i], g)
                kinds[kind] += 1
                exact += kind == "correct"
                answer += _answer_correct(exs[i], g)
                if step is not None:
                    steps.append(step)
                if kind != "correct" and sum(s["length"] == n and s["kind"] == kind for s in out.samples) < keep_samples:
                    out.samples.append({"length": n, "kind": kind, "first_wrong_step": step,
                                        "prompt": exs[i].text(exs[i].prompt), "reference": exs[i].text(exs[i].target),
                                        "generated": exs[i].text(_until_end([t for t in g if not tokenizer.is_hint(t)]))})
        out.exact[n] = exact / len(exs)
        out.answer[n] = answer / len(exs)
        out.kinds[n] = {k: int(kinds.get(k, 0)) for k in FAILURE_KINDS}
        out.step_errors[n] = steps
    return out


# ---------------------------------------------------------------------------------------------
# Experiments: variants, config, runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One experimental arm: task, scratchpad format, position scheme, encoding, window, depth."""

    name: str
    task: str = "parity"
    fmt: str = "short"
    scheme: str = "plain"
    position: str = "learned"
    window: int | None = None
    n_layers: int = 2
    reverse: bool = True
    lr: float | None = None  # None: the config's lr

    def __post_init__(self):
        check_task(self.task, self.fmt)
        if self.scheme not in SCHEMES:
            raise ShammieError(f"unknown position scheme {self.scheme!r}: choose one of {', '.join(SCHEMES)}")
        if self.position not in POSITION_ENCODINGS:
            raise ShammieError(f"unknown position encoding {self.position!r}: choose one of {', '.join(POSITION_ENCODINGS)}")


@dataclass(frozen=True)
class LengthGenConfig(ProfileConfig):
    """Knobs of notebook 04. Defaults are the quick profile (a 2-core CPU, a few minutes)."""

    train_max: int = 10  # parity: train on 1..train_max bits
    test_lengths: tuple[int, ...] = (5, 10, 15, 20, 30, 40)
    steps: int = 1200  # optimizer steps per parity model
    seeds: int = 2  # training runs per variant
    add_train_max: int = 5  # addition: train on operands of 1..add_train_max digits
    add_test_lengths: tuple[int, ...] = (3, 5, 8, 10, 15)
    add_steps: int = 1500
    add_seeds: int = 1
    add_plain_baseline: bool = False  # also train plain-position addition (it does not fit even the training lengths in a CPU budget)
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    baseline_layers: int = 2  # depth of the plain-position variants
    coupled_layers: int = 1  # depth of the coupled variants
    window: int = 4  # attention window (in coupled id space) of the distractor-removal variant
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate of the coupled (1-layer) variants
    baseline_lr: float = 2e-3  # peak learning rate of the plain-position (2-layer) variants
    pool_size: int = 8000  # training instances generated per variant (parity of <= 10 bits has only 2046)
    eval_samples: int = 100  # test instances per length
    max_positions: int = 256
    parity_encodings: tuple[str, ...] = ("learned", "rope", "none")  # scratchpad baselines

    PROFILES: ClassVar[dict] = {
        "smoke": {"steps": 40, "seeds": 1, "add_steps": 40, "test_lengths": (5, 10, 20), "add_test_lengths": (3, 6),
                  "eval_samples": 8, "pool_size": 500, "parity_encodings": ("learned",)},
        "quick": {},
        "full": {"train_max": 20, "test_lengths": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), "steps": 20000,
                 "seeds": 4, "add_train_max": 20, "add_test_lengths": (5, 10, 20, 30, 40, 50, 60, 80, 100),
                 "add_steps": 30000, "add_seeds": 3, "add_plain_baseline": True, "d_model": 256, "n_heads": 8, "d_ff": 1024, "baseline_layers": 4,
                 "coupled_layers": 1, "batch_size": 256, "lr": 5e-4, "baseline_lr": 3e-4, "pool_size": 200000, "eval_samples": 200,
                 "max_positions": 512, "parity_encodings": ("learned", "sinusoidal", "rope", "alibi", "none")},
    }

    def validate(self) -> None:
        for name in ("train_max", "steps", "seeds", "add_train_max", "add_steps", "add_seeds", "d_model", "n_heads",
                     "d_ff", "baseline_layers", "coupled_layers", "batch_size", "pool_size", "eval_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if self.window < 0:
            raise ConfigError(f"window must be >= 0, got {self.window}")
        if self.lr <= 0 or self.baseline_lr <= 0:
            raise ConfigError(f"lr and baseline_lr must be positive, got {self.lr}, {self.baseline_lr}")
        if not self.test_lengths or min(self.test_lengths) < 1 or not self.add_test_lengths or min(self.add_test_lengths) < 1:
            raise ConfigError("test_lengths and add_test_lengths must be non-empty lists of positive lengths")
        bad = [p for p in self.parity_encodings if p not in POSITION_ENCODINGS]
        if bad:
            raise ConfigError(f"unknown position encoding {bad[0]!r} in parity_encodings: choose from {', '.join(POSITION_ENCODINGS)}")
        need = max(2 * max(self.test_lengths) + 4, 3 * max(self.add_test_lengths) + 5)
        if self.max_positions <= need:
            raise ConfigError(f"max_positions={self.max_positions} is too small for the longest test sequence "
                              f"({need} tokens): use max_positions > {need}")


def parity_variants(cfg: LengthGenConfig) -> list[Variant]:
    """The parity arms: direct answer; scratchpad with each of `cfg.parity_encodings`; coupled; coupled + window."""
    base = dict(n_layers=cfg.baseline_layers, lr=cfg.baseline_lr)
    out = [Variant("direct", "parity", "none", "plain", "learned", **base)]
    names = {"learned": "absolute", "none": "NoPE"}
    for enc in cfg.parity_encodings:
        out.append(Variant(f"scratchpad, {names.get(enc, enc)}", "parity", "short", "plain", enc, **base))
    out.append(Variant("coupled", "parity", "short", "coupled", "relbias", None, cfg.coupled_layers, lr=cfg.lr))
    out.append(Variant("coupled + window", "parity", "short", "coupled", "relbias", cfg.window, cfg.coupled_layers,
                       lr=cfg.lr))
    return out


def addition_variants(cfg: LengthGenConfig) -> list[Variant]:
    """The reversed-addition arms: (plain positions when `cfg.add_plain_baseline`); coupled; coupled + window 1."""
    plain = [Variant("absolute", "addition", "none", "plain", "learned", None, cfg.baseline_layers, lr=cfg.baseline_lr)]
    return (plain if cfg.add_plain_baseline else []) + [
        Variant("coupled", "addition", "none", "coupled", "relbias", None, cfg.coupled_layers, lr=cfg.lr),
        Variant("coupled + window", "addition", "none", "coupled", "relbias", 1, cfg.coupled_layers, lr=cfg.lr),
    ]


def build_model(variant: Variant, cfg: LengthGenConfig, tokenizer: Tokenizer, seed: int) -> TinyTransformer:
    """A freshly initialised TinyTransformer for `variant` (weights seeded by `seed`)."""
    torch.manual_seed(seed)
    return TinyTransformer(len(tokenizer), d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=variant.n_layers,
                           d_ff=cfg.d_ff, position=variant.position, max_positions=cfg.max_positions,
                           window=variant.window)


def run_variant(variant: Variant, cfg: LengthGenConfig, seed: int, *, train_lengths: Sequence[int],
                test_lengths: Sequence[int], steps: int, tokenizer: Tokenizer | None = None,
                device: torch.device | str = "cpu", eval_seed: int = 1234) -> dict:
    """Train `variant` from scratch on instances of `train_lengths` and evaluate it on `test_lengths`.

    Returns {"variant", "seed", "model", "history", "eval" (a LengthEval), "params"}.
    """
    tokenizer = tokenizer or Tokenizer()
    rng = np.random.default_rng([seed, 7])
    examples = sample_examples(variant.task, cfg.pool_size, train_lengths, rng, variant.fmt, variant.reverse)
    pool = ExamplePool(examples, tokenizer, variant.scheme, rng)
    model = build_model(variant, cfg, tokenizer, seed).to(device)
    history = train_model(model, pool, steps=steps, batch_size=cfg.batch_size, lr=variant.lr or cfg.lr, seed=seed,
                          max_positions=cfg.max_positions, device=device, desc=f"{variant.name} s{seed}")
    ev = evaluate_by_length(model, variant.task, test_lengths, fmt=variant.fmt, scheme=variant.scheme,
                            tokenizer=tokenizer, n_samples=cfg.eval_samples, seed=eval_seed, reverse=variant.reverse,
                            max_positions=cfg.max_positions, device=device)
    return {"variant": variant, "seed": seed, "model": model, "history": history, "eval": ev,
            "params": count_parameters(model)}


def summarize_runs(runs: Sequence[dict], metric: str = "exact") -> dict[int, dict[str, float]]:
    """Per length: mean, min and max over the runs (seeds) of `metric` ("exact" or "answer")."""
    if metric not in ("exact", "answer"):
        raise ShammieError(f"metric must be 'exact' or 'answer', got {metric!r}")
    lengths = runs[0]["eval"].lengths
    out = {}
    for n in lengths:
        v = np.array([getattr(r["eval"], metric)[n] for r in runs])
        out[n] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}
    return out


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def plot_accuracy_by_length(results: dict[str, Sequence[dict]], train_max: int, ax=None, metric: str = "exact",
                            title: str = "", chance: float | None = None):
    """Accuracy against test length per variant: mean over seeds (line), each seed (faint), training
    lengths shaded."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.axvspan(0.5, train_max + 0.5, color="0.9", zorder=0, label="training lengths")
    markers = "osD^vPX*"
    for i, (name, runs) in enumerate(results.items()):
        s = summarize_runs(runs, metric)
        xs = list(s)
        for r in runs if len(runs) > 1 else []:
            ax.plot(xs, [getattr(r["eval"], metric)[n] for n in xs], color=f"C{i}", alpha=0.3, lw=1)
        ax.plot(xs, [s[n]["mean"] for n in xs], marker=markers[i % len(markers)], color=f"C{i}", lw=2, label=name)
    if chance is not None:
        ax.axhline(chance, color="0.4", ls=":", lw=1, label="chance")
    ax.set_xlabel("test length")
    ax.set_ylabel("exact-match accuracy" if metric == "exact" else "answer accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(0.5, None)
    if title:
        ax.set_title(title)
    return ax


def plot_length_heatmap(results: dict[str, Sequence[dict]], train_max: int, ax=None, metric: str = "exact",
                        title: str = ""):
    """Heatmap of variant (rows) by test length (columns), mean accuracy annotated, a line at the
    training maximum."""
    import matplotlib.pyplot as plt

    names = list(results)
    lengths = results[names[0]][0]["eval"].lengths
    grid = np.array([[summarize_runs(results[v], metric)[n]["mean"] for n in lengths] for v in names])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.8 * len(lengths), 0.6 + 0.45 * len(names)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if grid[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    inside = [j for j, n in enumerate(lengths) if n <= train_max]
    if inside and len(inside) < len(lengths):
        ax.axvline(max(inside) + 0.5, color="white", lw=2, ls="--")
    ax.set_xlabel("test length")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return ax


@torch.no_grad()
def attention_maps(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str,
                   max_positions: int | None = None) -> tuple[list[torch.Tensor], list[str]]:
    """Per-layer attention weights (H, T, T) of `model` reading `ex` (teacher forced), and the tokens."""
    ids, align, _ = encode_example(ex, tokenizer, scheme)
    pos = position_ids(scheme, align, np.random.default_rng(0), max_positions or model.spec.max_positions, train=False)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    _, maps = model(torch.tensor(ids[None], device=device), torch.tensor(pos[None], device=device), return_attention=True)
    model.train(was)
    return [m[0].cpu() for m in maps], tokenizer.decode(ids)


def plot_attention(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str, layer: int = -1,
                   ax=None, title: str = "", max_positions: int | None = None, targets_only: bool = True):
    """The attention of one layer (mean over heads) on `ex`: rows are queries (by default only the
    tokens that predict the target: ``=`` onwards), columns keys; square-root colour scale."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    maps, toks = attention_maps(model, ex, tokenizer, scheme, max_positions)
    w = maps[layer].mean(0).numpy()
    first = len(toks) - len(ex.target) - 1 if targets_only else 0
    w = w[first:-1] if targets_only else w
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(w, cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=max(float(w.max()), 1e-6)), aspect="auto")
    ax.grid(False)
    labels = [t.replace(EOS, "$") for t in toks]
    step = max(1, math.ceil(len(toks) / 45))
    ax.set_xticks(range(0, len(toks), step), labels[::step], fontsize=6)
    rows = list(range(first, first + w.shape[0]))
    ax.set_yticks(range(0, len(rows), step), [labels[r] for r in rows][::step], fontsize=6)
    ax.set_xlabel("key")
    ax.set_ylabel("query (predicts the next token)")
    if title:
        ax.set_title(title)
    return ax


def results_table(results: dict[str, Sequence[dict]], metric: str = "exact"):
    """A DataFrame: one row per variant, one column per test length, the mean over seeds of `metric`."""
    import pandas as pd

    rows = {name: {n: s["mean"] for n, s in summarize_runs(runs, metric).items()} for name, runs in results.items()}
    df = pd.DataFrame(rows).T
    df.columns.name = "test length"
    return df


def failure_counts(results: dict[str, Sequence[dict]], min_length: int = 1):
    """A DataFrame of failure-kind counts per variant, summed over seeds and test lengths >= `min_length`."""
    import pandas as pd

    rows = {}
    for name, runs in results.items():
        c = Counter()
        for r in runs:
            for n, kinds in r["eval"].kinds.items():
                if n >= min_length:
                    c.update(kinds)
        rows[name] = {k: int(c.get(k, 0)) for k in FAILURE_KINDS}
    return pd.DataFrame(rows).T[list(FAILURE_KINDS)]


def failure_examples(results: dict[str, Sequence[dict]], per_kind: int = 1):
    """A DataFrame with up to `per_kind` examples of each failure kind (first seed of each variant first)."""
    import pandas as pd

    rows, seen = [], Counter()
    for name, runs in results.items():
        for r in runs:
            for s in r["eval"].samples:
                if seen[s["kind"]] < per_kind:
                    seen[s["kind"]] += 1
                    step = s["first_wrong_step"]
                    rows.append({"variant": name, "seed": r["seed"], **s, "first_wrong_step": "-" if step is None else step})
    order = {k: i for i, k in enumerate(FAILURE_KINDS)}
    rows.sort(key=lambda row: order[row["kind"]])
    return pd.DataFrame(rows, columns=["kind", "variant", "seed", "length", "first_wrong_step", "prompt", "reference",
                                       "generated"])


def plot_failure_kinds(results: dict[str, Sequence[dict]], min_length: int = 1, ax=None, title: str = ""):
    """Stacked bars: the share of each failure kind per variant (test lengths >= `min_length`)."""
    import matplotlib.pyplot as plt

    counts = failure_counts(results, min_length)
    share = counts.div(counts.sum(axis=1), axis=0)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(share)))
    left = np.zeros(len(share))
    colors = {"correct": "tab:green", "wrong_length": "tab:orange", "wrong_step": "tab:red", "wrong_answer": "tab:purple"}
    for kind in FAILURE_KINDS:
        ax.barh(range(len(share)), share[kind], left=left, color=colors[kind], label=kind.replace("_", " "))
        left += share[kind].to_numpy()
    ax.set_yticks(range(len(share)), share.index)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of test instances")
    ax.legend(frameon=False, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8)
    if title:
        ax.set_title(title, pad=28)
    return ax


def plot_loss_curves(results: dict[str, Sequence[dict]], ax=None, title: str = ""):
    """Training loss (log scale) against step, one line per variant (its first seed)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, runs) in enumerate(results.items()):
        h = runs[0]["history"]
        ax.plot(h["step"], h["loss"], color=f"C{i}", lw=1.5, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (targets only)")
    if title:
        ax.set_title(title)
    return ax


def plot_relative_length(results: dict[str, Sequence[dict]], train_max: int, reference=None, ax=None,
                         metric: str = "answer", title: str = ""):
    """Accuracy against test length / maximum training length: our variants (mean over seeds, solid)
    beside a published table `reference` (dashed; a DataFrame with columns position_encoding,
    train_max, test_length, accuracy)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (name, runs) in enumerate(results.items()):
        s = summarize_runs(runs, metric)
        ax.plot([n / train_max for n in s], [v["mean"] for v in s.values()], marker="o", color=f"C{i}", lw=2,
                label=f"ours: {name}")
    if reference is not None:
        for j, (pe, df) in enumerate(reference.groupby("position_encoding", sort=False)):
            ax.plot(df["test_length"] / df["train_max"], df["accuracy"], ls="--", marker="s", ms=4,
                    color=f"C{len(results) + j}", label=f"published: {pe}")
    ax.axvline(1.0, color="0.5", lw=1)
    ax.axhline(0.5, color="0.4", ls=":", lw=1)
    ax.set_xlabel("test length / longest training length")
    ax.set_ylabel("answer accuracy" if metric == "answer" else "exact-match accuracy")
    ax.set_ylim(-0.03, 1.03)
    if title:
        ax.set_title(title)
    return ax


def lookup_attention(model: TinyTransformer, ex: Example, tokenizer: Tokenizer, scheme: str, layer: int = -1,
                     max_positions: int | None = None) -> dict[str, float]:
    """How much attention the target-writing queries of `ex` put on the input item they need next.

    For every query from ``=`` up to the last scratchpad step or answer digit, the weight (mean over
    heads of layer `layer`) on the prompt tokens whose coupled index is one above the query's (parity:
    the next bit; reversed addition: the next digit of both operands), and on all other prompt tokens.
    Returns the means over queries: {"needed": ..., "other_input": ...}.
    """
    maps, _ = attention_maps(model, ex, tokenizer, scheme, max_positions)
    ids, align, p = encode_example(ex, tokenizer, scheme)
    w = maps[layer].mean(0).numpy()
    needed, other = [], []
    for q in range(p - 1, len(ids) - 1):
        want = [k for k in range(p) if align[k] == align[q] + 1 and k < p - 1]
        if not want:
            continue
        row = w[q]
        needed.append(float(row[want].sum()))
        other.append(float(row[: p].sum() - row[want].sum()))
    if not needed:
        raise ShammieError("no query of this example has an input item one index ahead")
    return {"needed": float(np.mean(needed)), "other_input": float(np.mean(other))}
