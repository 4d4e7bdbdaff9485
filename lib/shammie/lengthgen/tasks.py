"""Task generators (parity, variable assignment, addition, copy) and their scratchpad formats."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import ShammieError

TASKS = ("parity", "variables", "addition", "copy")
FORMATS = ("none", "short", "full")
SCHEMES = ("plain", "randomized", "coupled", "hints")
FAILURE_KINDS = ("correct", "wrong_length", "wrong_step", "wrong_answer")

PAD, EOS, SEP = "<pad>", "<eos>", ">"
DIGITS = tuple("0123456789")
VARIABLES = tuple("abcdefgh")
SYMBOLS = ("+", "=", SEP, ":", ";", "!", "?", "[", "]")
PARITY_STATES = ("E", "O")  # running parity in a scratchpad: even / odd so far



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
    given: tuple[bool, ...] = ()  # per target token: True where the environment supplies it (see `interleave`)

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

    def rest(digits: list[int], i: int) -> tuple[str, ...]:
        """The digits not consumed yet (from digit i on), in the prompt's order: the next one is the first
        (reversed) or the last (most significant first), as in Zhou et al.'s prompt."""
        left = tuple(str(d) for d in digits[i:])
        return left if reverse else left[::-1]

    steps: list[tuple[str, ...]] = []
    carry = 0
    for i in range(m):  # the digit loop, least significant first
        x, y = da[i], db[i]
        s = x + y + carry
        if fmt == "short":
            steps.append((str(s // 10),))
        elif fmt == "full":  # Zhou et al.: re-copy what is left of both operands, then the column sum
            steps.append(("[",) + rest(da, i) + ("]", "[") + rest(db, i)
                         + ("]", str(x), str(y), str(carry), str(s // 10), str(s % 10), ";"))
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


def interleave(ex: Example) -> Example:
    """Anil et al.'s distractors removed at the data level (parity, short scratchpad): the input bits are no
    longer in the prompt; the environment gives each bit right before the state that reads it, and the answer
    marker when the input ends. The sequence is ``= b1 s1 b2 s2 ... bn sn > y <eos>``: the bits not read yet
    are absent (no input distractors), the earlier bits and states stay in view (the scratchpad's
    distractors). `given` marks the supplied tokens (the bits and ``>``): training leaves them out of the
    loss and decoding writes them in instead of the model's guess."""
    if ex.task != "parity" or ex.fmt != "short":
        raise ShammieError(f"interleave takes parity with a short scratchpad, got {ex.task!r} / {ex.fmt!r}")
    if ex.given:
        raise ShammieError("this example is interleaved already")
    bits = tuple(str(b) for b in ex.problem["bits"])
    steps = tuple((b,) + s for b, s in zip(bits, ex.steps))
    given = tuple(g for _ in steps for g in (True, False)) + (True,) + (False,) * (len(ex.answer) + 1)
    return dataclasses.replace(ex, prompt=("=",), prompt_align=(0,), prompt_indexed=(False,), steps=steps,
                               given=given)


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
