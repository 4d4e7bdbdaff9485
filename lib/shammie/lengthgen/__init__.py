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
explicit trace per step after Zhou et al. arXiv 2211.09066: for parity and copy each step re-copies
the remaining list and reads its first element; for addition each step re-copies what is left of both
operands, the two digits read, the carry in and the column sum as two digits, tens (the carry out)
and ones (the sum digit), so finding the next digit is never a lookup by position; for variable
assignment the step restates the statement, the value read and the value written). Every target is ``steps > answer <eos>`` (``answer <eos>`` for
``none``).

Position-id schemes (`SCHEMES`): ``plain`` (0, 1, 2, ...), ``randomized`` (a sorted random subset of
0..max_positions-1, Ruoss et al. arXiv 2305.16843), ``coupled`` (tokens that must interact share an
id: bit i and scratchpad step i, digit i of both operands and of the answer; random start while
training, Cho et al. arXiv 2405.20671) and ``hints`` (plain ids, but a hint token ``h<k>`` is written
before each indexed item, the same hint for items that interact; Zhou et al. arXiv 2310.16028).
"""

from __future__ import annotations

from ..transformer import (
    alibi_slopes,  # the decoder's (Press et al.'s rule); part of this theme's API
)
from .evaluation import (
    LengthEval,
    answer_correct,
    classify,
    evaluate_by_length,
    greedy_decode,
)
from .experiments import (
    LengthGenConfig,
    Variant,
    addition_variants,
    build_model,
    parity_variants,
    run_variant,
    summarize_runs,
    trace_variants,
    variables_variants,
)
from .figures import (
    attention_maps,
    failure_counts,
    failure_examples,
    lookup_attention,
    plot_accuracy_by_length,
    plot_attention,
    plot_failure_kinds,
    plot_length_heatmap,
    plot_loss_curves,
    plot_relative_length,
    results_table,
)
from .positions import (
    Tokenizer,
    encode_example,
    max_position_needed,
    position_ids,
)
from .tasks import (
    EOS,
    FAILURE_KINDS,
    FORMATS,
    PAD,
    SCHEMES,
    SEP,
    TASKS,
    Example,
    check_task,
    interleave,
    make_example,
    sample_examples,
)
from .train import (
    Batch,
    ExamplePool,
    batch_loss,
    train_model,
)

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
    "interleave",
    "sample_examples",
    "check_task",
    "position_ids",
    "alibi_slopes",
    "encode_example",
    "Batch",
    "ExamplePool",
    "batch_loss",
    "train_model",
    "greedy_decode",
    "classify",
    "answer_correct",
    "LengthEval",
    "evaluate_by_length",
    "max_position_needed",
    "Variant",
    "LengthGenConfig",
    "parity_variants",
    "addition_variants",
    "variables_variants",
    "trace_variants",
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
