"""Greedy decoding, failure kinds and accuracy by test length."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import ShammieError
from ..transformer import TinyTransformer
from .positions import Tokenizer, encode_example, max_position_needed, position_ids
from .tasks import (
    EOS,
    FAILURE_KINDS,
    SEP,
    TASKS,
    Example,
    _check_length,
    check_task,
    interleave,
    make_example,
)


@torch.no_grad()
def greedy_decode(model: TinyTransformer, prompt: torch.Tensor, positions: torch.Tensor, n_new: int,
                  use_cache: bool = True, forced: torch.Tensor | None = None,
                  force_mask: Sequence[bool] | None = None) -> torch.Tensor:
    """Greedily generate `n_new` tokens after `prompt` (B, P); `positions` (B, P + n_new) gives the ids
    of the prompt and of each generated slot. With `forced` (B, n_new) and `force_mask` (n_new booleans),
    slot k takes `forced[:, k]` where `force_mask[k]` (a token the environment supplies) instead of the
    model's choice. Returns the ids of the n_new slots (B, n_new)."""
    if positions.shape[1] < prompt.shape[1] + n_new:
        raise ShammieError(f"positions cover {positions.shape[1]} slots; prompt + n_new needs {prompt.shape[1] + n_new}")
    if (forced is None) != (force_mask is None):
        raise ShammieError("give both forced and force_mask, or neither")
    if force_mask is not None and (len(force_mask) != n_new or forced.shape != (prompt.shape[0], n_new)):
        raise ShammieError(f"forced must be (B, n_new) = ({prompt.shape[0]}, {n_new}) and force_mask n_new long")

    def choose(logits: torch.Tensor, k: int) -> torch.Tensor:
        if force_mask is not None and force_mask[k]:
            return forced[:, k : k + 1]
        return logits[:, -1].argmax(-1, keepdim=True)
    was_training = model.training
    model.eval()
    p = prompt.shape[1]
    out = []
    if use_cache:
        cache: list = []
        logits = model(prompt, positions[:, :p], cache=cache)
        for k in range(n_new):
            nxt = choose(logits, k)
            out.append(nxt)
            if k + 1 < n_new:
                logits = model(nxt, positions[:, p + k : p + k + 1], cache=cache)
    else:
        seq = prompt
        for k in range(n_new):
            logits = model(seq, positions[:, : p + k])
            nxt = choose(logits, k)
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


def answer_correct(ex: Example, generated: Sequence[str]) -> bool:
    """Whether `generated` (hint tokens ignored) states `ex`'s answer: with a scratchpad, the answer marker
    ``>`` must be written and exactly the answer must follow it, then the end token; without one, exactly
    the answer, then the end token. The scratchpad itself may be wrong (that is what answer accuracy
    forgives); a model that writes the steps and stops without the marker gets no credit, even when
    its last step equals the answer."""
    gen = [t for t in generated if not (t.startswith("h") and t[1:].isdigit())]
    if EOS not in gen:
        return False
    gen = gen[: gen.index(EOS)]
    if ex.steps:
        if SEP not in gen:
            return False
        gen = gen[gen.index(SEP) + 1 :]
    return tuple(gen) == ex.answer


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


def _eval_examples(task: str, n: int, count: int, seed: int, fmt: str, reverse: bool,
                   interleaved: bool = False) -> list[Example]:
    rng = np.random.default_rng([seed, n, TASKS.index(task)])
    exs = [make_example(task, n, rng, fmt, reverse) for _ in range(count)]
    return [interleave(ex) for ex in exs] if interleaved else exs


@torch.no_grad()
def evaluate_by_length(model: TinyTransformer, task: str, lengths: Sequence[int], *, fmt: str = "short",
                       scheme: str = "plain", tokenizer: Tokenizer | None = None, n_samples: int = 100,
                       seed: int = 1234, reverse: bool = True, max_positions: int | None = None,
                       keep_samples: int = 3, device: torch.device | str | None = None,
                       interleaved: bool = False) -> LengthEval:
    """Greedy-decode `n_samples` fresh instances per length in `lengths` and score them.

    The test instances depend only on (`seed`, length, task), so every model sees the same ones. The
    decoder writes as many tokens as the reference target has (the known length is used only to
    stop); a missing or misplaced end token counts as ``wrong_length``. With `interleaved` the instances
    are `interleave`d (the same instances otherwise) and the tokens the environment supplies are forced.
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
        exs = _eval_examples(task, n, n_samples, seed, fmt, reverse, interleaved)
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
            force = (ids[:, p:], list(exs[members[0]].given)) if interleaved else (None, None)
            gen = greedy_decode(model, ids[:, :p], pos, total - p, forced=force[0], force_mask=force[1]).cpu().numpy()
            for row, i in enumerate(members):
                g = tokenizer.decode(gen[row])
                kind, step = classify(exs[i], g)
                kinds[kind] += 1
                exact += kind == "correct"
                answer += answer_correct(exs[i], g)
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
