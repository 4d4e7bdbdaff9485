"""The knobs of notebook 09 per profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import ConfigError, ProfileConfig
from .tasks import TASKS

__all__ = ["MultimodalConfig", "DEFAULT_MIX"]

#: the training mix of the research note (shares of a batch)
DEFAULT_MIX = (("P", 0.25), ("Tadd", 0.10), ("Tcmp", 0.10), ("Xadd", 0.20), ("Xcmp", 0.20), ("XaddCoT", 0.15))


@dataclass(frozen=True)
class MultimodalConfig(ProfileConfig):
    """Knobs of notebook 09. Defaults are the quick profile.

    Every seed trains the family (nano, pro, ultra: widths `widths`, `layers` layers each) jointly on the
    task mix, a perception specialist (ultra's size, perception only, `spec_steps` steps: the joint model's
    number of perception examples when None), a text-only model (nano's size), a nano distilled from that
    seed's ultra, then quantizes nano, the distilled nano, pro and ultra, and runs the routing sweep. Claims are
    judged over the seeds.
    """

    num_samples: int = 10_000  # MNIST-1D signals (80% train; the test part is split into val and test)
    data_seed: int = 0
    seeds: int = 3
    widths: tuple[int, ...] = (24, 40, 64)  # d_model of nano, pro, ultra
    layers: int = 2
    steps: int = 220  # training steps of each family member (and of the distilled nano)
    batch_size: int = 128
    lr: float = 5e-3
    warmup: int = 25
    spec_steps: int | None = None  # perception specialist; None: matched perception examples
    spec_matched_steps: bool = False  # also a specialist trained for `steps` steps (matched steps)
    text_steps: int = 100  # the text-only model (Tadd + Tcmp)
    kd_alpha: float = 0.5  # (1 - alpha) CE + alpha KD, temperature 1
    eval_questions: int = 1000  # per task, from the test signals
    val_questions: int = 500  # validation questions (routing thresholds only), from the validation signals
    question_seed: int = 12345
    vote_samples: int = 8  # k of CoT@k in the routing sweep
    deep_layers: int = 0  # > 0: also an ultra-width model of this many layers (does depth close the gap?)
    mix: tuple[tuple[str, float], ...] = field(default=DEFAULT_MIX)

    PROFILES: ClassVar[dict] = {
        "smoke": {"num_samples": 1000, "seeds": 1, "widths": (8, 16, 24), "steps": 4, "batch_size": 32, "warmup": 2,
                  "text_steps": 3, "eval_questions": 40, "val_questions": 40, "vote_samples": 4},
        "quick": {},
        "full": {"seeds": 5, "steps": 1000, "batch_size": 128, "lr": 3e-3, "warmup": 50, "spec_matched_steps": True, "text_steps": 300,
                 "val_questions": 1000, "vote_samples": 16, "deep_layers": 3},
    }
    LIMITS: ClassVar[dict] = {"num_samples": 100_000, "steps": 20_000, "eval_questions": 20_000, "val_questions": 20_000}

    @property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """name -> (d_model, layers) of the family."""
        return dict(zip(("nano", "pro", "ultra"), ((w, self.layers) for w in self.widths)))

    @property
    def mix_dict(self) -> dict[str, float]:
        return dict(self.mix)

    @property
    def perception_share(self) -> float:
        m = self.mix_dict
        return m.get("P", 0.0) / sum(m.values())

    @property
    def specialist_steps(self) -> int:
        """The specialist's steps: as many perception examples as the joint model saw, unless set."""
        if self.spec_steps is not None:
            return self.spec_steps
        return max(1, round(self.steps * self.perception_share))

    def validate(self) -> None:
        if len(self.widths) != 3 or any(w < 2 or w % 2 for w in self.widths) or list(self.widths) != sorted(set(self.widths)):
            raise ConfigError(f"widths must be three increasing even numbers (nano, pro, ultra), got {self.widths}")
        if self.layers < 1 or self.deep_layers < 0:
            raise ConfigError(f"layers must be >= 1 and deep_layers >= 0, got {self.layers}, {self.deep_layers}")
        names = [t for t, _ in self.mix]
        if sorted(names) != sorted(TASKS) or any(v <= 0 for _, v in self.mix):
            raise ConfigError(f"mix must give every task ({', '.join(TASKS)}) a positive share, got {self.mix}")
        if self.lr <= 0 or not 0 <= self.kd_alpha <= 1:
            raise ConfigError(f"lr must be > 0 and kd_alpha in [0, 1], got {self.lr}, {self.kd_alpha}")
        if self.num_samples < 500:
            raise ConfigError(f"num_samples must be >= 500 (every digit in every pool), got {self.num_samples}")
        if self.vote_samples < 2:
            raise ConfigError(f"vote_samples must be >= 2, got {self.vote_samples}")
        if self.spec_steps is not None and self.spec_steps < 1:
            raise ConfigError(f"spec_steps must be None or >= 1, got {self.spec_steps}")
