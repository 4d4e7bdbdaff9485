"""Linear mode connectivity and REPAIR: permutation specs, neuron alignment, interpolation, barriers,
and the renormalization of interpolated networks.

Papers: Jordan, Sedghi, Saukh, Entezari & Neyshabur, "REPAIR: REnormalizing Permuted Activations for
Interpolation Repair", ICLR 2023, arXiv 2211.08403; Ainsworth, Hayase & Srinivasa, "Git Re-Basin:
Merging Models modulo Permutation Symmetries", ICLR 2023, arXiv 2209.04836.

Conventions.
- A `PermSpec` (from `permutation_spec(model)`) names one permutation per group of hidden units and
  says, for every state-dict entry, which permutation acts on each of its axes. A residual stream is
  one group: every layer that writes into it shares its permutation.
- A permutation `perm` of a group of size n is a LongTensor in which `perm[i]` is the unit of network
  B matched to unit i of network A. Applying it to B puts B's units in A's order:
  `w.index_select(axis, perm)` on every axis the group touches.
- `alpha` interpolates from network A (alpha=0) to network B (alpha=1).
- Statistics are per channel: dimension 1 of a module's output, pooled over the batch and every
  spatial position, accumulated in float64 about a per-channel shift (the first batch's mean), so that
  units with a large mean relative to their spread keep exact variances and correlations.

Layout: config (errors, `ConnectivityConfig`, network names), models (`build_network`; VGG and ResNet-20
live in `shammie.models` and are re-exported), permutation
(specs, applying permutations, folding BatchNorm), statistics, alignment (activation and weight
matching), repair (interpolation, BatchNorm reset, REPAIR), barriers (curves), experiments (the
notebook's pairs and trends), figures.
"""

from __future__ import annotations

from .alignment import (  # noqa: F401
    Alignment,
    _CrossMoments,
    align,
    match_activations,
    match_weights,
)
from .barriers import (  # noqa: F401
    barrier,
    barrier_summary,
    barrier_table,
    interpolation_curve,
    relative_reduction,
)
from .config import (  # noqa: F401
    ArchitectureMismatchError,
    ConnectivityConfig,
    UnsupportedLayerError,
    parse_network,
)
from .experiments import (  # noqa: F401
    METHODS,
    NetworkStudy,
    ThemeData,
    collapse_profile,
    load_theme_data,
    matching_comparison,
    max_output_gap,
    pair_seeds,
    pair_slopes,
    per_pair,
    study_network,
    study_pairs,
    train_network,
    train_pairs,
)
from .figures import (  # noqa: F401
    plot_curves,
    plot_depth_sweep,
    plot_paper_comparison,
    plot_variance_collapse,
    plot_width_sweep,
)
from .models import (  # noqa: F401
    VGG,
    ResNet20,
    build_network,
)
from .permutation import (  # noqa: F401
    PermSpec,
    Tap,
    Unit,
    _module_config,
    apply_permutation,
    check_compatible,
    fold_batchnorm,
    permutation_spec,
    permute_state,
    random_permutations,
)
from .repair import (  # noqa: F401
    interpolate,
    interpolate_state,
    repair,
    repair_points,
    reset_bn_stats,
    variance_ratios,
)
from .statistics import (  # noqa: F401
    _Moments,
    channel_stats,
)

__all__ = [
    "ConnectivityConfig",
    "UnsupportedLayerError",
    "ArchitectureMismatchError",
    "VGG",
    "ResNet20",
    "build_network",
    "parse_network",
    "Tap",
    "Unit",
    "PermSpec",
    "permutation_spec",
    "check_compatible",
    "random_permutations",
    "permute_state",
    "apply_permutation",
    "fold_batchnorm",
    "channel_stats",
    "Alignment",
    "match_activations",
    "match_weights",
    "align",
    "interpolate_state",
    "interpolate",
    "reset_bn_stats",
    "repair_points",
    "repair",
    "variance_ratios",
    "interpolation_curve",
    "barrier",
    "relative_reduction",
    "barrier_table",
    "barrier_summary",
    "collapse_profile",
    "ThemeData",
    "load_theme_data",
    "train_network",
    "NetworkStudy",
    "study_network",
    "pair_seeds",
    "train_pairs",
    "study_pairs",
    "per_pair",
    "pair_slopes",
    "max_output_gap",
    "matching_comparison",
    "plot_curves",
    "plot_variance_collapse",
    "plot_width_sweep",
    "plot_depth_sweep",
    "plot_paper_comparison",
]
