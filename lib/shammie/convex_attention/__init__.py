"""Convex attention (Ergen, Neyshabur & Mehta, "Convexifying Transformers", arXiv 2211.11052).

The paper replaces the score matrix of self-attention by a trainable row-stochastic matrix shared by
all samples. With weight decay on the value and output weights, the multi-head model

    f(X) = sum_j (w_j^T X v_j) b_j,   w_j in the simplex,
    P_h = min  1/2 sum_i ||f(X_i) - y_i||^2 + beta/2 sum_j (||v_j||^2 + ||b_j||_1^2)

is a non-convex problem whose optimum, given at least as many heads as needed (h >= n tokens for a
scalar output, h >= n*c for c outputs), equals the group lasso with one group per token position

    D = min_Z  1/2 sum_i ||<Z, X_i> - y_i||^2 + beta sum_k ||Z_k||_2          (Theorem 1, corrected)

and every non-convex point scores at least D at its aggregate Z = sum_j w_j (b_j v_j)^T. We use the
corrected statements of the research note: the same 1/2 on the loss in both objectives, the width
condition, and the recovery map indexed by the *active* tokens.

Shapes. Inputs X are (N, n, d) (n tokens of d features). A scalar target y is (N,) and its convex
variable Z is (n, d); a vector target Y is (N, c) and Z is (c, n, d) (one matrix per output). Heads
hold W (h, n) attention rows, V (h, d) values and B (h,) or (h, c) outputs. Everything is float64.

Modules, one per section (the package exports the same public API as the former single module):

- `config`: the notebook's config, the error type, the float type;
- `tasks`: input checks, the planted-teacher task, the modular-arithmetic task (exploratory);
- `model`: objectives, predictions and the maps between heads and Z;
- `solver`: lambda_max, the duality-gap certificate, KKT conditions, FISTA with group soft-thresholding
  and restarts (beta = 0 solved and certified as least squares), cvxpy as a reference, the path;
- `training`: the non-convex model (eq. 8) and the softmax self-attention baseline, trained with Adam;
- `experiments`: a softmax-attention teacher, per-token contributions and effective tokens, models
  tuned on validation, and the race to a stated gap to the certified optimum;
- `figures`: the theme's figures.
"""

from __future__ import annotations

from .config import (  # noqa: F401
    DTYPE,
    ConvexAttentionConfig,
    ConvexAttentionError,
)
from .experiments import (  # noqa: F401
    SpeedRace,
    TeacherTask,
    TunedConvex,
    TunedSoftmax,
    effective_tokens,
    race_to_optimum,
    softmax_teacher_task,
    token_contributions,
    tune_convex,
    tune_softmax,
)
from .figures import (  # noqa: F401
    FIT_COLORS,
    plot_attention_maps,
    plot_errors,
    plot_objective_gap,
    plot_path,
    plot_token_norms,
)
from .model import (  # noqa: F401
    Heads,
    active_tokens,
    balanced_factor,
    convex_objective,
    convex_predict,
    group_norms,
    heads_predict,
    heads_to_convex,
    mse,
    nonconvex_objective,
    recover_heads,
    token_norms,
)
from .solver import (  # noqa: F401
    ConvexProblem,
    ConvexSolution,
    PathResult,
    duality_gap,
    group_soft_threshold,
    lambda_max,
    optimality_conditions,
    regularization_path,
    solve_convex,
    solve_convex_cvxpy,
)
from .tasks import (  # noqa: F401
    ModularTask,
    PlantedTask,
    accuracy,
    as_tensor,
    gated_features,
    modular_task,
    planted_task,
    random_gates,
)
from .training import (  # noqa: F401
    Fit,
    SimplexAttention,
    SoftmaxAttention,
    head_magnitudes,
    steps_to_reach,
    summarize_fits,
    train_nonconvex,
    train_softmax_attention,
)

__all__ = [
    "ConvexAttentionError",
    "ConvexAttentionConfig",
    "PlantedTask",
    "planted_task",
    "Heads",
    "as_tensor",
    "convex_predict",
    "convex_objective",
    "group_norms",
    "token_norms",
    "active_tokens",
    "heads_predict",
    "nonconvex_objective",
    "heads_to_convex",
    "recover_heads",
    "balanced_factor",
    "lambda_max",
    "duality_gap",
    "optimality_conditions",
    "group_soft_threshold",
    "ConvexSolution",
    "ConvexProblem",
    "solve_convex",
    "solve_convex_cvxpy",
    "PathResult",
    "regularization_path",
    "SimplexAttention",
    "SoftmaxAttention",
    "Fit",
    "train_nonconvex",
    "train_softmax_attention",
    "mse",
    "steps_to_reach",
    "head_magnitudes",
    "summarize_fits",
    "ModularTask",
    "modular_task",
    "random_gates",
    "gated_features",
    "accuracy",
    "FIT_COLORS",
    "plot_objective_gap",
    "plot_token_norms",
    "plot_attention_maps",
    "plot_path",
    "plot_errors",
    "TeacherTask",
    "softmax_teacher_task",
    "token_contributions",
    "effective_tokens",
    "TunedConvex",
    "tune_convex",
    "TunedSoftmax",
    "tune_softmax",
    "SpeedRace",
    "race_to_optimum",
]
