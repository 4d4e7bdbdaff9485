"""The knobs of notebook 05 per profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import ConfigError, ProfileConfig

__all__ = ["ScalingLawsConfig"]


@dataclass(frozen=True)
class ScalingLawsConfig(ProfileConfig):
    """Knobs of notebook 05. Defaults are the quick profile.

    A *replicate* is one learning curve measured with its own seeds; every claim is judged over the
    replicates. Sphere curves average `sphere_seeds_per_curve` seeds each (single-seed curves are too
    rough at small n for any 4-parameter fit); MNIST-1D curves are one seed each.
    """

    replicates: int = 3
    sphere_seeds_per_curve: int = 3
    sphere_dim: int = 100
    sphere_delta: float = 0.2
    sphere_min: int = 100
    sphere_max: int = 100_000
    sphere_sizes: int = 16
    cutoffs: tuple[int, ...] = (0, 100, 1000)
    num_samples: int = 10_000  # MNIST-1D examples (80% training pool, 20% test)
    min_size: int = 64
    steps: int = 2000
    hidden: int = 64
    lr: float = 3e-3
    batch_size: int = 128
    checkpoints: int = 24
    factors: tuple[int, ...] = (2, 4, 8)
    use_benchmark: bool = False

    PROFILES: ClassVar[dict] = {
        "smoke": {"replicates": 2, "sphere_seeds_per_curve": 1, "sphere_min": 10, "sphere_max": 3000,
                  "sphere_sizes": 12, "cutoffs": (0, 20, 100),
                  "num_samples": 2000, "steps": 60, "hidden": 16, "checkpoints": 8},
        "quick": {},
        "full": {"replicates": 5, "sphere_seeds_per_curve": 5, "sphere_max": 300_000, "sphere_sizes": 24,
                 "num_samples": 40_000, "steps": 6000, "hidden": 128, "checkpoints": 48},
    }

    def validate(self) -> None:
        if self.replicates < 1 or self.sphere_seeds_per_curve < 1:
            raise ConfigError("replicates and sphere_seeds_per_curve must be >= 1")
        if not 0 < self.sphere_delta < 0.5:
            raise ConfigError(f"sphere_delta is a label-noise rate in (0, 0.5), got {self.sphere_delta}")
        if not 2 <= self.sphere_min < self.sphere_max or self.sphere_sizes < 6:
            raise ConfigError("need 2 <= sphere_min < sphere_max and sphere_sizes >= 6")
        if self.sphere_max > 2_000_000:
            raise ConfigError(f"sphere_max={self.sphere_max} would hold {self.sphere_max * self.sphere_dim * 8 / 2**30:.1f} "
                              "GiB per curve; use at most 2,000,000")
        if not 500 <= self.num_samples <= 200_000:
            raise ConfigError(f"num_samples={self.num_samples}: use 500 .. 200,000 (generation costs ~1 ms each)")
        if not 8 <= self.min_size < 0.8 * self.num_samples / 4:
            raise ConfigError("min_size must be >= 8 and leave at least two octaves below the training pool")
        if self.steps < 10 or self.hidden < 4 or self.batch_size < 1 or self.checkpoints < 4:
            raise ConfigError("steps >= 10, hidden >= 4, batch_size >= 1 and checkpoints >= 4 are needed")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if any(f <= 1 for f in self.factors) or not self.factors:
            raise ConfigError(f"every extrapolation factor must exceed 1, got {self.factors}")
        if any(c < 0 for c in self.cutoffs) or not self.cutoffs:
            raise ConfigError(f"cut-offs are non-negative data sizes, got {self.cutoffs}")
