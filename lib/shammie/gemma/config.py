"""The knobs of notebook 07 per profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import ConfigError, ProfileConfig

__all__ = ["GemmaConfig"]


@dataclass(frozen=True)
class GemmaConfig(ProfileConfig):
    """Knobs of notebook 07. Defaults are the quick profile.

    One teacher (Gemma-2-like: local/global layers, GQA, soft-caps, pre+post RMSNorm, GeGLU, tied scaled
    embeddings, RoPE) is trained once; every seed then trains a student by next-token prediction (NTP) and
    the same student (same initial weights, same batches) by distillation from the teacher (KD); the first
    `mha_seeds` seeds also train an MHA twin of the NTP student (and an MQA one with `compare_mqa`). Claims
    are judged over the seeds. With `shared_schedule` every seed reads the same batches (seeds then vary the
    initial weights only) and the teacher's distribution of each batch is computed once and reused.
    """

    corpus_chars: int = 400_000  # characters of the stdlib corpus (90% train, 10% validation by position)
    context: int = 64  # training context T
    batch_size: int = 32
    seeds: int = 5
    mha_seeds: int = 3
    shared_schedule: bool = True
    teacher_d: int = 64
    teacher_layers: int = 4
    teacher_steps: int = 200
    student_d: int = 32
    student_layers: int = 2
    student_steps: int = 150
    n_heads: int = 4
    kv_heads: int = 2
    window: int = 16  # sliding window of the local layers (keys seen, itself included)
    attn_softcap: float = 50.0
    final_softcap: float = 30.0
    lr: float = 3e-3
    warmup: float = 0.1
    val_windows: int = 128
    curve_windows: int = 64  # the first validation windows, on which learning curves are evaluated
    eval_every: int = 30
    top_k: int = 0  # KD against the teacher's top-k renormalised probabilities; 0 = the full distribution
    inference_windows: tuple[int, ...] = (4, 8, 16, 32, 64)
    compare_mqa: bool = False
    compare_top_k: int = 0  # > 0: also a KD student on the teacher's top-k (Gemma 3's trick), per seed
    size_sweep: tuple[int, ...] = ()  # student widths d for NTP vs KD at several sizes (Table 7 analog)
    all_global: bool = False  # also train all-global NTP students (our experiment; not in the paper)
    wide_deep: bool = False  # wide vs deep distilled students at equal parameters (Table 9 analog; full only)
    deep_layers: int = 4  # the deep student's layers (width student_d); the wide one has student_layers layers

    PROFILES: ClassVar[dict] = {
        "smoke": {"corpus_chars": 40_000, "context": 32, "batch_size": 8, "seeds": 2, "mha_seeds": 2, "teacher_d": 32,
                  "teacher_layers": 2, "teacher_steps": 6, "student_d": 16, "student_steps": 6, "window": 8,
                  "val_windows": 16, "curve_windows": 8, "eval_every": 3, "inference_windows": (4, 8, 16, 32), "size_sweep": (8,), "all_global": True},
        "quick": {},
        "full": {"corpus_chars": 1_200_000, "context": 128, "seeds": 5, "mha_seeds": 5, "shared_schedule": False, "teacher_d": 96, "teacher_steps": 1500,
                 "student_d": 48, "student_steps": 600, "window": 32, "val_windows": 512, "curve_windows": 128, "eval_every": 50,
                 "inference_windows": (4, 8, 16, 32, 64, 128), "compare_mqa": True, "compare_top_k": 8, "size_sweep": (32, 64, 96), "all_global": True,
                 "wide_deep": True},
    }

    def validate(self) -> None:
        if self.seeds < 1 or not 0 <= self.mha_seeds <= self.seeds:
            raise ConfigError(f"need seeds >= 1 and 0 <= mha_seeds <= seeds, got {self.seeds}, {self.mha_seeds}")
        for name in ("teacher_d", "student_d"):
            if getattr(self, name) % (2 * self.n_heads):
                raise ConfigError(f"{name}={getattr(self, name)} must be a multiple of 2 * n_heads "
                                  f"({2 * self.n_heads}): RoPE needs an even head dimension")
        if self.n_heads % self.kv_heads:
            raise ConfigError(f"n_heads ({self.n_heads}) must be divisible by kv_heads ({self.kv_heads})")
        if not 1 <= self.window < self.context:
            raise ConfigError(f"window must be in 1..context-1 (a local layer must be local), got {self.window}")
        if self.window not in self.inference_windows:
            raise ConfigError(f"inference_windows {self.inference_windows} must include the trained window {self.window}")
        if self.window // 2 not in self.inference_windows or 2 * self.window not in self.inference_windows:
            raise ConfigError("inference_windows must include window // 2 and 2 * window (the claims compare them)")
        if any(w < 1 or w > self.context for w in self.inference_windows):
            raise ConfigError(f"inference windows must lie in 1..context ({self.context}), got {self.inference_windows}")
        if self.corpus_chars < 20 * self.context or self.corpus_chars > 5_000_000:
            raise ConfigError(f"corpus_chars must be in 20 * context .. 5,000,000, got {self.corpus_chars}")
        if self.attn_softcap <= 0 or self.final_softcap <= 0 or self.lr <= 0 or not 0 <= self.warmup < 1:
            raise ConfigError("caps and lr must be positive, warmup a fraction in [0, 1)")
        if any(d < 1 or d % (2 * self.n_heads) for d in self.size_sweep):
            raise ConfigError(f"size_sweep widths must be multiples of 2 * n_heads, got {self.size_sweep}")
        if (self.size_sweep or self.all_global) and not self.mha_seeds:
            raise ConfigError("size_sweep and all_global run on the first mha_seeds seeds: set mha_seeds >= 1")
        if self.wide_deep and self.mha_seeds < 3:
            raise ConfigError(f"wide_deep is a claim over the first mha_seeds seeds: it needs mha_seeds >= 3, "
                              f"got {self.mha_seeds}")
        if self.deep_layers <= self.student_layers:
            raise ConfigError(f"deep_layers ({self.deep_layers}) must exceed student_layers ({self.student_layers}): "
                              "the wide student has student_layers layers")
        if not 1 <= self.curve_windows <= self.val_windows:
            raise ConfigError(f"curve_windows must be in 1..val_windows, got {self.curve_windows}")
        if self.top_k < 0 or self.compare_top_k < 0:
            raise ConfigError("top_k and compare_top_k are >= 0 (0 = the full distribution / off)")
