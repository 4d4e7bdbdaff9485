"""A natively multimodal model family at toy scale, after Gemini Team, "Gemini: A Family of Highly Capable
Multimodal Models" (arXiv 2312.11805): MNIST-1D signals as the "image" modality, read as patch embeddings by
the workbook's one decoder, interleaved with text tokens.

Sections: `config` (the profiles), `tasks` (vocabulary, task templates, fixed-length batches, held-out
(digit, k) pairs), `model` (the decoder with its patch encoder, the answer and distillation losses),
`experiments` (training through `shammie.lm.train_lm`, evaluation, pipelines), `compress` (int4/int8
post-training quantization, memory), `routing` (uncertainty-routed voting), `family` (one seed of the
notebook's experiment), `figures`.
"""

from .compress import (
    SCHEMES,
    check_bits,
    memory_bytes,
    quantize_model,
    quantize_tensor,
    quantized_weights,
)
from .config import DEFAULT_MIX, MultimodalConfig
from .experiments import (
    DIGIT_COL,
    THINK_COL,
    Pools,
    Trained,
    cot_predict,
    evaluate,
    load_pools,
    pipeline_xadd,
    pipeline_xcmp,
    predict,
    question_sets,
    self_pipeline_xcmp,
    text_batch,
    train_model,
)
from .family import FAMILY, QUANT_TASKS, SeedResult, eval_sets, run_seed
from .figures import (
    plot_composition,
    plot_distillation,
    plot_examples,
    plot_family,
    plot_pipelines,
    plot_quantization,
    plot_routing,
)
from .model import MultimodalLM, answer_loss, build, expected_parameters, kd_loss
from .routing import (
    Votes,
    check_threshold,
    cot_votes,
    routed,
    sweep,
    threshold_grid,
    tune_threshold,
)
from .tasks import (
    CHANCE,
    SEQ_LEN,
    TASKS,
    TEMPLATE_LENGTHS,
    VOCAB,
    VOCAB_SIZE,
    Batch,
    Pool,
    check_answers,
    decode,
    held_out_pairs,
    make_batch,
    perception_batch,
    task_counts,
)

__all__ = [
    "SCHEMES", "check_bits", "memory_bytes", "quantize_model", "quantize_tensor", "quantized_weights",
    "DEFAULT_MIX", "MultimodalConfig", "DIGIT_COL", "THINK_COL", "Pools", "Trained", "cot_predict", "evaluate",
    "load_pools", "pipeline_xadd", "pipeline_xcmp", "predict", "question_sets", "self_pipeline_xcmp", "text_batch",
    "train_model", "FAMILY", "QUANT_TASKS", "SeedResult", "eval_sets", "run_seed", "plot_composition",
    "plot_distillation", "plot_examples", "plot_family", "plot_pipelines", "plot_quantization", "plot_routing",
    "MultimodalLM", "answer_loss", "build", "expected_parameters", "kd_loss", "Votes", "check_threshold",
    "cot_votes", "routed", "sweep", "threshold_grid", "tune_threshold", "CHANCE", "SEQ_LEN", "TASKS",
    "TEMPLATE_LENGTHS", "VOCAB", "VOCAB_SIZE", "Batch", "Pool", "check_answers", "decode", "held_out_pairs",
    "make_batch", "perception_batch", "task_counts",
]
