"""Calibration: metrics, temperature/vector scaling, layer-stack temperature scaling (LATES), MC dropout.

Theme of notebook 01 (Khalifa, Mozer, Sedghi, Neyshabur, Alabdulmohsin, *Layer-Stack Temperature
Scaling*, arXiv 2211.10193). The paper's full text was not available to us; LATES here is the
reconstruction of `shared/research/lates_calibration.md`: linear probes on globally pooled features of
the frozen network give per-layer logits z_1..z_{L-1}, the network's own logits are z_L, and

    q(y | x) = softmax( sum_l w_l z_l(x) ),   w_l = exp(theta_l) > 0,

with theta fitted by L-BFGS on the validation NLL, starting from the temperature-scaling solution
(w_L = 1/T, earlier weights ~ 0). Temperature scaling is the special case w_1 = ... = w_{L-1} = 0.

Contents (one module per section; everything below is importable from `shammie.calibration`)
- `metrics`: metrics on logits or probabilities: accuracy, NLL, Brier, ECE (equal-width and tie-aware
  equal-mass bins), MCE, classwise ECE, AUROC of confidence for correct-vs-incorrect, reliability-diagram
  data, bootstrap confidence intervals, paired tests across seeds;
- `calibrators`: calibrators sharing one interface (`fit(val_logits, val_labels)`, `transform(test_logits)`),
  taking logits only (probabilities are refused, never guessed): `Uncalibrated`, `TemperatureScaling`,
  `VectorScaling`, `LATES`, `EqualWeightLATES`, `BestLayerTS`, and `MCDropout(base)` which averages the
  base calibrator's probabilities over S dropout samples;
- `layers`: per-layer features of any `nn.Module` through forward hooks and global average pooling,
  MC-dropout mode, linear probes;
- `experiment`: the notebook's experiment: config, data with distribution shift, the main and the
  MC-dropout networks, one seed end to end, the ensemble baseline, tables, per-seed claim values;
- `figures`: the theme's figures.
"""

from __future__ import annotations

from .calibrators import (  # noqa: F401
    LATES,
    BestLayerTS,
    Calibrator,
    EqualWeightLATES,
    MCDropout,
    TemperatureScaling,
    Uncalibrated,
    VectorScaling,
)
from .experiment import (  # noqa: F401
    CLAIM_COMPARISONS,
    ENSEMBLE,
    MC_METHODS,
    METHODS,
    CalibrationData,
    LatesConfig,
    SeedResult,
    add_ensemble_rows,
    build_backbone,
    build_mc_backbone,
    claim_values,
    compare_methods,
    corruption_table,
    layer_names,
    per_seed_diff,
    prepare_data,
    results_frame,
    run_seed,
    severity_table,
    summary_table,
)
from .figures import (  # noqa: F401
    plot_corruptions,
    plot_layers,
    plot_reliability,
    plot_severity,
)
from .layers import (  # noqa: F401
    LayerOutputs,
    LinearProbe,
    dropout_only_in_head,
    fit_probe,
    fit_probes,
    layer_features,
    layer_outputs,
    mc_dropout_mode,
    resnet18_with_dropout,
    stack_layer_logits,
)
from .metrics import (  # noqa: F401
    CalibrationInputError,
    NotFittedError,
    accuracy,
    auroc_correct,
    bootstrap_ci,
    brier,
    calibration_metrics,
    classwise_ece,
    ece,
    mce,
    nll,
    paired_test,
    reliability_data,
    to_probs,
)

__all__ = [
    "CalibrationInputError",
    "NotFittedError",
    "to_probs",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "mce",
    "classwise_ece",
    "auroc_correct",
    "reliability_data",
    "calibration_metrics",
    "bootstrap_ci",
    "paired_test",
    "Calibrator",
    "Uncalibrated",
    "TemperatureScaling",
    "VectorScaling",
    "LATES",
    "EqualWeightLATES",
    "BestLayerTS",
    "MCDropout",
    "layer_features",
    "layer_outputs",
    "LayerOutputs",
    "dropout_only_in_head",
    "mc_dropout_mode",
    "LinearProbe",
    "fit_probe",
    "fit_probes",
    "stack_layer_logits",
    "resnet18_with_dropout",
    "LatesConfig",
    "CalibrationData",
    "SeedResult",
    "METHODS",
    "prepare_data",
    "build_backbone",
    "run_seed",
    "results_frame",
    "summary_table",
    "severity_table",
    "compare_methods",
    "corruption_table",
    "layer_names",
    "plot_reliability",
    "plot_layers",
    "plot_severity",
    "plot_corruptions",
    "MC_METHODS",
    "ENSEMBLE",
    "add_ensemble_rows",
    "claim_values",
    "per_seed_diff",
    "CLAIM_COMPARISONS",
    "build_mc_backbone",
]
