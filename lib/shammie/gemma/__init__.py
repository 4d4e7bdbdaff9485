"""Gemma 2's architecture and distillation at toy scale, after Gemma Team, "Gemma 2: Improving Open Language
Models at a Practical Size" (arXiv 2408.00118): character LMs of the standard library's source on the CPU.

Sections: `config` (the profiles), `experiments` (Gemma-2-like shapes of the shared decoder, batch schedules,
distillation loss on the fly, training through `shammie.lm.train_lm`, inference-time edits of the window and
the caps, raw logits against the caps, KV-head parameter counts), `figures`.
"""

from .config import GemmaConfig
from .experiments import (
    Trained,
    batch_schedule,
    build,
    cap_removal,
    equal_time_gap,
    gemma_kwargs,
    inference_edit,
    kd_loss,
    kv_parameters,
    load_corpus,
    raw_logits,
    train,
    train_wide_deep,
    val_loss,
    val_windows,
    wide_deep_shapes,
    window_sweep,
)
from .figures import plot_caps, plot_curves, plot_kv_heads, plot_size_sweep, plot_window_sweep

__all__ = [
    "GemmaConfig", "Trained", "batch_schedule", "build", "cap_removal", "equal_time_gap", "gemma_kwargs",
    "inference_edit", "kd_loss", "kv_parameters", "load_corpus", "raw_logits", "train", "val_loss", "val_windows",
    "window_sweep", "wide_deep_shapes", "train_wide_deep", "plot_caps", "plot_curves", "plot_kv_heads", "plot_size_sweep", "plot_window_sweep",
]
