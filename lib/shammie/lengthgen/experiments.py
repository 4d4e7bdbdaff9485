"""The experiments of notebook 04: arms (variants), the profile config, one run of an arm, summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..config import ConfigError, ProfileConfig
from ..core import ShammieError
from ..transformer import POSITION_ENCODINGS, TinyTransformer, count_parameters
from .evaluation import evaluate_by_length
from .positions import Tokenizer
from .tasks import SCHEMES, check_task, interleave, sample_examples
from .train import ExamplePool, train_model


@dataclass(frozen=True)
class Variant:
    """One experimental arm: task, scratchpad format, position scheme, encoding, window, depth.

    `lr`, `steps` and `max_positions` override the config's values for this arm (None: the config's).
    """

    name: str
    task: str = "parity"
    fmt: str = "short"
    scheme: str = "plain"
    position: str = "learned"
    window: int | None = None
    n_layers: int = 2
    reverse: bool = True
    lr: float | None = None  # None: the config's lr
    steps: int | None = None  # None: the steps run_variant is given
    max_positions: int | None = None  # None: the config's max_positions
    interleaved: bool = False  # distractors removed at the data level (`interleave`: parity, short, not hints)

    def __post_init__(self):
        check_task(self.task, self.fmt)
        if self.interleaved and (self.task, self.fmt) != ("parity", "short") or self.interleaved and self.scheme == "hints":
            raise ShammieError("an interleaved arm is parity with a short scratchpad, not with index hints")
        if self.scheme not in SCHEMES:
            raise ShammieError(f"unknown position scheme {self.scheme!r}: choose one of {', '.join(SCHEMES)}")
        if self.position not in POSITION_ENCODINGS:
            raise ShammieError(f"unknown position encoding {self.position!r}: choose one of {', '.join(POSITION_ENCODINGS)}")
        if self.steps is not None and self.steps < 1:
            raise ShammieError(f"steps must be None or >= 1, got {self.steps}")


@dataclass(frozen=True)
class LengthGenConfig(ProfileConfig):
    """Knobs of notebook 04. Defaults are the quick profile (a 2-core CPU, about two minutes of CPU)."""

    train_max: int = 8  # parity: train on 1..train_max bits
    test_lengths: tuple[int, ...] = (4, 8, 12, 16, 24)
    steps: int = 1000  # optimizer steps per plain-position parity model (direct, scratchpad): enough to fit the training lengths
    coupled_steps: int = 600  # optimizer steps per coupled parity model
    seeds: int = 3  # training runs per variant
    addition_arms: bool = False  # train reversed addition (quick leaves it out: it does not fit the training lengths in its CPU budget)
    add_train_max: int = 5  # addition: train on operands of 1..add_train_max digits
    add_test_lengths: tuple[int, ...] = (3, 5, 8, 10, 15)
    add_steps: int = 1500
    add_seeds: int = 3
    add_plain_baseline: bool = False  # also train plain-position addition (it does not fit even the training lengths in a CPU budget)
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    baseline_layers: int = 2  # depth of the plain-position variants
    coupled_layers: int = 1  # depth of the coupled variants
    window: int = 2  # attention window (in coupled id space) of the parity distractor-removal variant
    add_window: int = 1  # the same for addition
    window_sweep: tuple[int, ...] = ()  # more parity windows to train (a sweep: where does removal stop working?)
    parity_schemes: tuple[str, ...] = ()  # more scratchpad parity arms with these position schemes (randomized, hints)
    trace_arms: bool = False  # also train Zhou et al.'s full traces (parity, addition) against the short scratchpad
    variables_arms: bool = False  # also train variable assignment (short scratchpad; plain and coupled ids)
    data_removal: bool = True  # parity with the input distractors removed from the data (interleaved bits)
    batch_size: int = 32
    add_batch_size: int = 32
    lr: float = 3e-3  # peak learning rate of the coupled (1-layer) variants
    add_lr: float = 3e-3  # peak learning rate of the addition variants
    baseline_lr: float = 2e-3  # peak learning rate of the plain-position (2-layer) variants (3e-3 left a seed short of fitting)
    pool_size: int = 4000  # training instances generated per variant (parity of <= 8 bits has only 510)
    eval_samples: int = 64  # test instances per length
    max_positions: int = 64  # learned position table of the plain-position variants
    coupled_max_positions: int = 32  # learned table of the coupled ids (random start in training covers all of it)
    parity_encodings: tuple[str, ...] = ("learned",)  # scratchpad baselines

    PROFILES: ClassVar[dict] = {
        "smoke": {"steps": 12, "coupled_steps": 12, "seeds": 1, "add_steps": 12, "add_seeds": 1, "test_lengths": (4, 8, 12),
                  "add_test_lengths": (3, 6), "eval_samples": 4, "pool_size": 100, "window_sweep": (1,),
                  "parity_schemes": ("randomized", "hints"), "trace_arms": True, "variables_arms": True,
                  "addition_arms": True},
        "quick": {},
        "full": {"train_max": 20, "test_lengths": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), "steps": 20000,
                 "coupled_steps": 20000, "seeds": 5, "add_train_max": 20,
                 "add_test_lengths": (5, 10, 20, 30, 40, 50, 60, 80, 100), "add_steps": 30000, "add_seeds": 5,
                 "addition_arms": True, "add_plain_baseline": True, "d_model": 256, "n_heads": 8, "d_ff": 1024, "baseline_layers": 4,
                 "coupled_layers": 1, "window_sweep": (1, 4, 8), "parity_schemes": ("randomized", "hints"),
                 "trace_arms": True, "variables_arms": True, "batch_size": 256, "add_batch_size": 256, "lr": 5e-4,
                 "add_lr": 5e-4, "baseline_lr": 3e-4, "pool_size": 200000, "eval_samples": 200,
                 "max_positions": 512, "coupled_max_positions": 256,
                 "parity_encodings": ("learned", "sinusoidal", "rope", "alibi", "none")},
    }

    def validate(self) -> None:
        for name in ("train_max", "steps", "coupled_steps", "seeds", "add_train_max", "add_steps", "add_seeds",
                     "d_model", "n_heads", "d_ff", "baseline_layers", "coupled_layers", "batch_size", "add_batch_size",
                     "pool_size", "eval_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if self.window < 0 or self.add_window < 0 or any(w < 0 for w in self.window_sweep):
            raise ConfigError(f"windows must be >= 0, got {self.window}, {self.add_window}, {self.window_sweep}")
        if self.lr <= 0 or self.baseline_lr <= 0 or self.add_lr <= 0:
            raise ConfigError(f"lr, add_lr and baseline_lr must be positive, got {self.lr}, {self.add_lr}, {self.baseline_lr}")
        if not self.test_lengths or min(self.test_lengths) < 1 or not self.add_test_lengths or min(self.add_test_lengths) < 1:
            raise ConfigError("test_lengths and add_test_lengths must be non-empty lists of positive lengths")
        bad = [p for p in self.parity_encodings if p not in POSITION_ENCODINGS]
        if bad:
            raise ConfigError(f"unknown position encoding {bad[0]!r} in parity_encodings: choose from {', '.join(POSITION_ENCODINGS)}")
        bad = [s for s in self.parity_schemes if s not in ("randomized", "hints")]
        if bad:
            raise ConfigError(f"parity_schemes takes 'randomized' and 'hints', got {bad[0]!r}")
        need = max(2 * max(self.test_lengths) + 4, 3 * max(self.add_test_lengths) + 5)
        if self.max_positions <= need:
            raise ConfigError(f"max_positions={self.max_positions} is too small for the longest test sequence "
                              f"({need} tokens): use max_positions > {need}")
        need = max(max(self.test_lengths), max(self.add_test_lengths)) + 3
        if self.coupled_max_positions <= need:
            raise ConfigError(f"coupled_max_positions={self.coupled_max_positions} is too small for the longest test "
                              f"instance (coupled ids up to {need}): use coupled_max_positions > {need}")


def parity_variants(cfg: LengthGenConfig) -> list[Variant]:
    """The parity arms: direct answer; scratchpad with each of `cfg.parity_encodings` (plain ids); position
    coupling as Cho et al. published it (learned embeddings of coupled ids, random start in training);
    the same with a window in coupled-id space (distractors removed); the input distractors removed at the
    data level (`interleave`: each bit given right before its state; plain ids, relative bias, no window);
    then the optional arms of the config (more windows, randomized positions, index hints)."""
    base = dict(n_layers=cfg.baseline_layers, lr=cfg.baseline_lr, steps=cfg.steps)
    cpl = dict(n_layers=cfg.coupled_layers, lr=cfg.lr, steps=cfg.coupled_steps, max_positions=cfg.coupled_max_positions)
    out = [Variant("direct", "parity", "none", "plain", "learned", **base)]
    names = {"learned": "absolute", "none": "NoPE"}
    for enc in cfg.parity_encodings:
        out.append(Variant(f"scratchpad, {names.get(enc, enc)}", "parity", "short", "plain", enc, **base))
    out.append(Variant("coupled", "parity", "short", "coupled", "learned", None, **cpl))
    out.append(Variant("coupled + window", "parity", "short", "coupled", "learned", cfg.window, **cpl))
    if cfg.data_removal:  # no window, plain ids with a relative bias: what is left to fail is the growing history
        out.append(Variant("interleaved, relbias", "parity", "short", "plain", "relbias", None, cfg.coupled_layers,
                           lr=cfg.lr, steps=cfg.coupled_steps, interleaved=True))
    for w in cfg.window_sweep:
        if w != cfg.window:
            out.append(Variant(f"coupled + window {w}", "parity", "short", "coupled", "learned", w, **cpl))
    for scheme in cfg.parity_schemes:  # a hint before every bit and state: about twice the tokens
        wide = max(cfg.max_positions, 4 * max(cfg.test_lengths) + 8) if scheme == "hints" else None
        out.append(Variant(f"scratchpad, {scheme}", "parity", "short", scheme, "learned", max_positions=wide, **base))
    return out


def addition_variants(cfg: LengthGenConfig) -> list[Variant]:
    """The reversed-addition arms: (plain positions when `cfg.add_plain_baseline`); position coupling as
    published (learned embeddings of coupled ids, random start); coupled ids + a window of `cfg.add_window`
    ids with a learned relative bias."""
    kw = dict(lr=cfg.add_lr, steps=cfg.add_steps)
    plain = [Variant("absolute", "addition", "none", "plain", "learned", None, cfg.baseline_layers, **kw)]
    out = (plain if cfg.add_plain_baseline else []) + [
        Variant("coupled", "addition", "none", "coupled", "learned", None, cfg.coupled_layers,
                max_positions=cfg.coupled_max_positions, **kw),
        # a relative bias here: with learned coupled embeddings and a window of one id, addition did not fit the
        # training lengths in a CPU budget; the random start is then a no-op (the window arm is our construction)
        Variant("coupled + window", "addition", "none", "coupled", "relbias", cfg.add_window, cfg.coupled_layers,
                max_positions=cfg.coupled_max_positions, **kw),
    ]
    return out


def trace_variants(cfg: LengthGenConfig, task: str) -> list[Variant]:
    """Zhou et al.'s explicit trace against the short scratchpad on `task` (parity or addition), at equal
    steps, depth and encoding (plain ids with a learned relative bias, which can reuse a lookup at any
    distance it was trained on)."""
    if task not in ("parity", "addition"):
        raise ShammieError(f"trace arms exist for parity and addition, not {task!r}")
    kw = (dict(lr=cfg.baseline_lr, steps=cfg.steps) if task == "parity" else dict(lr=cfg.add_lr, steps=cfg.add_steps))
    return [Variant(f"{fmt} trace, relbias", task, fmt, "plain", "relbias", None, cfg.baseline_layers, **kw)
            for fmt in ("short", "full")]


def variables_variants(cfg: LengthGenConfig) -> list[Variant]:
    """Variable assignment (Anil et al.'s second task), short scratchpad: plain ids (absolute) and coupled ids
    (learned, random start; statement k and step k share an id)."""
    wide = max(cfg.max_positions, 5 * max(cfg.test_lengths) + 8)  # four tokens per statement, one per step
    return [Variant("scratchpad, absolute", "variables", "short", "plain", "learned", None, cfg.baseline_layers,
                    lr=cfg.baseline_lr, steps=cfg.steps, max_positions=wide),
            Variant("coupled", "variables", "short", "coupled", "learned", None, cfg.coupled_layers, lr=cfg.lr,
                    steps=cfg.coupled_steps, max_positions=cfg.coupled_max_positions)]


def build_model(variant: Variant, cfg: LengthGenConfig, tokenizer: Tokenizer, seed: int) -> TinyTransformer:
    """A freshly initialised TinyTransformer for `variant` (weights seeded by `seed`)."""
    torch.manual_seed(seed)
    model = TinyTransformer(len(tokenizer), d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=variant.n_layers,
                            d_ff=cfg.d_ff, position=variant.position,
                            max_positions=variant.max_positions or cfg.max_positions, window=variant.window)
    return model


def run_variant(variant: Variant, cfg: LengthGenConfig, seed: int, *, train_lengths: Sequence[int],
                test_lengths: Sequence[int], steps: int | None = None, tokenizer: Tokenizer | None = None,
                device: torch.device | str = "cpu", eval_seed: int = 1234) -> dict:
    """Train `variant` from scratch on instances of `train_lengths` and evaluate it on `test_lengths`.

    Steps: the variant's own, else `steps`. Returns {"variant", "seed", "model", "history", "eval" (a
    LengthEval), "params"}.
    """
    steps = variant.steps or steps
    if steps is None:
        raise ShammieError(f"variant {variant.name!r} has no steps of its own: pass steps=")
    if variant.scheme == "hints" and (tokenizer is None or tokenizer.n_hints == 0):
        tokenizer = Tokenizer()
    tokenizer = tokenizer or Tokenizer()
    max_positions = variant.max_positions or cfg.max_positions
    batch_size = cfg.add_batch_size if variant.task == "addition" else cfg.batch_size
    rng = np.random.default_rng([seed, 7])
    examples = sample_examples(variant.task, cfg.pool_size, train_lengths, rng, variant.fmt, variant.reverse)
    if variant.interleaved:
        examples = [interleave(ex) for ex in examples]
    pool = ExamplePool(examples, tokenizer, variant.scheme, rng)
    model = build_model(variant, cfg, tokenizer, seed).to(device)
    history = train_model(model, pool, steps=steps, batch_size=batch_size, lr=variant.lr or cfg.lr, seed=seed,
                          max_positions=max_positions, device=device, desc=f"{variant.name} s{seed}")
    ev = evaluate_by_length(model, variant.task, test_lengths, fmt=variant.fmt, scheme=variant.scheme,
                            tokenizer=tokenizer, n_samples=cfg.eval_samples, seed=eval_seed, reverse=variant.reverse,
                            max_positions=max_positions, device=device, interleaved=variant.interleaved)
    return {"variant": variant, "seed": seed, "model": model, "history": history, "eval": ev,
            "params": count_parameters(model), "tokenizer": tokenizer}


def summarize_runs(runs: Sequence[dict], metric: str = "exact") -> dict[int, dict[str, float]]:
    """Per length: mean, min and max over the runs (seeds) of `metric` ("exact" or "answer")."""
    if metric not in ("exact", "answer"):
        raise ShammieError(f"metric must be 'exact' or 'answer', got {metric!r}")
    lengths = runs[0]["eval"].lengths
    out = {}
    for n in lengths:
        v = np.array([getattr(r["eval"], metric)[n] for r in runs])
        out[n] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}
    return out
