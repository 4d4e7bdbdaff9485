"""Long context after Gemini 1.5 (Gemini Team, "Gemini 1.5: Unlocking multimodal understanding across millions of
tokens of context", arXiv 2403.05530) at toy scale: needle-in-a-haystack recall of tiny decoders trained on the
CPU, multi-needle retrieval, the per-position NLL and its power law, dense against mixture-of-experts LMs.

Sections: `config` (the profiles), `haystack` (needle probes, MRCR-lite, receptive fields), `needles` (needle
models, the recall grid, needle counts, key ablation, window sweep), `context_lm` (char LMs: per-position NLL,
power-law fit, dense vs MoE at equal active parameters),
`figures`.
"""

from .config import LongContextConfig
from .context_lm import (
    LMRun,
    active_parameter_gap,
    build_lm,
    cumulative_nll,
    lm_kwargs,
    lm_schedule,
    load_corpus,
    nll_drop,
    power_law,
    r_squared,
    router_parameters,
    train_lm_pair,
    val_windows,
)
from .figures import plot_moe_curves, plot_needle_counts, plot_position_nll, plot_recall_grids
from .haystack import (
    NEEDLE_TOKENS,
    NeedleVocab,
    Probes,
    answer_distance,
    make_mrcr_probes,
    make_probes,
    needle_starts,
    reachable,
    receptive_field,
    training_batch,
)
from .needles import (
    PATTERNS,
    Trained,
    answer_hits,
    build_needle_model,
    chance_recall,
    key_ablation,
    mrcr_recall,
    multi_needle_recall,
    needle_kwargs,
    needle_schedule,
    reachable_grid,
    recall,
    recall_grid,
    train_needle_model,
    window_edit,
    window_sweep,
)

__all__ = [
    "LongContextConfig",
    "LMRun", "active_parameter_gap", "build_lm", "cumulative_nll", "lm_kwargs", "lm_schedule", "load_corpus",
    "nll_drop", "power_law", "r_squared", "router_parameters", "train_lm_pair", "val_windows",
    "plot_moe_curves", "plot_needle_counts", "plot_position_nll", "plot_recall_grids",
    "NEEDLE_TOKENS", "NeedleVocab", "Probes", "answer_distance", "make_mrcr_probes", "make_probes", "needle_starts",
    "reachable", "receptive_field", "training_batch",
    "PATTERNS", "Trained", "answer_hits", "build_needle_model", "chance_recall", "key_ablation", "mrcr_recall",
    "multi_needle_recall", "needle_kwargs", "needle_schedule", "reachable_grid", "recall", "recall_grid",
    "train_needle_model", "window_edit", "window_sweep",
]
