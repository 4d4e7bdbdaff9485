"""Scaling-law extrapolation after Alabdulmohsin, Neyshabur & Zhai, "Revisiting Neural Scaling Laws in
Language and Vision" (NeurIPS 2022, arXiv 2209.06640): judge a law by how well it extrapolates.

Sections: `estimators` (M1-M4 by variable projection), `protocol` (split, RMSE, win fractions, the
fixed-exponent scan, horizon sweep), `curves` (the sphere toy, MNIST-1D batched ensembles), `experiments`
(the notebook's curves and fit tables), `benchmark` (the released CSVs, only when asked), `figures`.
"""

from .benchmark import BenchmarkUnavailable, benchmark_curves, load_benchmark, read_benchmark_csv
from .config import ScalingLawsConfig
from .curves import (
    EnsembleCurves,
    ensemble_curves,
    log_sizes,
    sphere_curve,
    sphere_error,
    until_best,
)
from .estimators import (
    ESTIMATORS,
    M1,
    M2,
    M3,
    M4,
    ScalingLaw,
    check_curve,
    m4_curve,
    make_estimator,
)
from .experiments import (
    Curve,
    fit_table,
    measure_mnist,
    measure_sphere,
    mnist_curves,
    planted_curves,
    sphere_sizes,
)
from .figures import (
    plot_curve_panels,
    plot_exponent_scan,
    plot_horizon,
    plot_sphere_cutoffs,
    plot_win_fractions,
)
from .protocol import (
    CurveFit,
    exponent_scan,
    extrapolation_split,
    fit_curve,
    horizon_sweep,
    rmse_log,
    win_fractions,
)

__all__ = [
    "BenchmarkUnavailable", "benchmark_curves", "load_benchmark", "read_benchmark_csv", "ScalingLawsConfig",
    "EnsembleCurves", "ensemble_curves", "log_sizes", "sphere_curve", "sphere_error", "until_best", "ESTIMATORS",
    "M1", "M2", "M3", "M4", "ScalingLaw", "check_curve", "m4_curve", "make_estimator", "Curve", "fit_table",
    "measure_mnist", "measure_sphere", "mnist_curves", "planted_curves", "sphere_sizes", "plot_curve_panels",
    "plot_exponent_scan", "plot_horizon", "plot_sphere_cutoffs", "plot_win_fractions", "CurveFit", "exponent_scan",
    "extrapolation_split", "fit_curve", "horizon_sweep", "rmse_log", "win_fractions",
]
