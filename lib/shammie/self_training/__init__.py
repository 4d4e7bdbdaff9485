"""Self-training with binary feedback (ReST^EM), after Singh, Co-Reyes, Agarwal et al., "Beyond Human Data:
Scaling Self-Training for Problem-Solving with Language Models" (arXiv 2312.06585), with a tiny decoder
trained from scratch on the CPU.

Sections: `config` (the profiles), `task` (running-sum addition, the binary checker), `algorithms` (E-step,
filter, M-step from the base, the iterations, SFT), `evaluation` (greedy pass@1, pass@k, majority and
uncertainty-routed votes, difficulty bins), `experiments` (one seed's runs), `figures`.
"""

from .algorithms import (
    EmptyKeptSet,
    Iteration,
    ReSTRun,
    Samples,
    clone_model,
    e_step,
    human_pairs,
    keep_correct,
    m_step,
    rest_em,
    same_weights,
    sample_completions,
    sft,
)
from .config import SelfTrainingConfig
from .evaluation import (
    DIFFICULTY_BINS,
    SampleSet,
    accuracy_by_bin,
    choose_threshold,
    difficulty_bin,
    draw_samples,
    greedy_accuracy,
    greedy_answers,
    pass_at_k_curve,
    routed_answers,
    vote,
    vote_accuracy,
)
from .experiments import (
    ModelReport,
    SeedResult,
    build_model,
    evaluator,
    report_model,
    run_seed,
    size_sweep,
    task_for,
    train_base,
)
from .figures import (
    plot_accuracy_by_iteration,
    plot_difficulty,
    plot_e_step,
    plot_pass_k,
    plot_size_sweep,
    plot_votes,
)
from .task import (
    BOS,
    CHARS,
    EOS,
    PAD,
    VOCAB_SIZE,
    Task,
    decode,
    encode,
    make_task,
    max_completion_tokens,
    pack_batch,
    parse_answer,
    prompt_tokens,
    random_problems,
    reward,
    solution_tokens,
)

__all__ = [
    "SelfTrainingConfig",
    "DIFFICULTY_BINS", "SampleSet", "accuracy_by_bin", "choose_threshold", "difficulty_bin", "draw_samples",
    "greedy_accuracy", "greedy_answers", "pass_at_k_curve", "routed_answers", "vote", "vote_accuracy",
    "ModelReport", "SeedResult", "build_model", "evaluator", "report_model", "run_seed", "size_sweep", "task_for",
    "train_base",
    "EmptyKeptSet", "Iteration", "ReSTRun", "Samples", "clone_model", "e_step", "human_pairs", "keep_correct",
    "m_step", "rest_em", "same_weights", "sample_completions", "sft",
    "BOS", "CHARS", "EOS", "PAD", "VOCAB_SIZE", "Task", "decode", "encode", "make_task", "max_completion_tokens",
    "pack_batch", "parse_answer", "prompt_tokens", "random_problems", "reward", "solution_tokens",
    "plot_accuracy_by_iteration", "plot_difficulty", "plot_e_step", "plot_pass_k", "plot_size_sweep", "plot_votes",
]
