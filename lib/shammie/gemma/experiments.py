"""Models, training runs and inference-time edits of notebook 07 (Gemma 2 at toy scale).

Everything trains through `shammie.lm.train_lm` on `shammie.transformer.TinyTransformer`; this module only
chooses the shapes, the batch schedules and the losses, and measures.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core import ShammieError
from ..lm import (
    CharCorpus,
    distillation_loss,
    next_token_loss,
    random_windows,
    stdlib_corpus,
    train_lm,
)
from ..transformer import TinyTransformer
from .config import GemmaConfig

__all__ = [
    "gemma_kwargs", "build", "load_corpus", "val_windows", "batch_schedule", "kd_loss", "Trained", "train",
    "val_loss", "inference_edit", "window_sweep", "cap_removal", "raw_logits", "kv_parameters",
    "equal_time_gap", "wide_deep_shapes", "train_wide_deep",
]


def gemma_kwargs(cfg: GemmaConfig, vocab_size: int, role: str = "student", *, d_model: int | None = None,
                 n_layers: int | None = None, kv_heads: int | None = None, layer_pattern: str = "LG",
                 d_ff: int | None = None) -> dict:
    """TinyTransformer options of a Gemma-2-like decoder: local/global alternation (layer 0 local), GQA,
    attention and final soft-caps, pre+post RMSNorm, GeGLU (d_ff = 2 d per branch unless given), no biases,
    tied embeddings scaled by sqrt(d), RoPE. `role` is "teacher" or "student" (the default sizes)."""
    if role not in ("teacher", "student"):
        raise ShammieError(f"role must be 'teacher' or 'student', got {role!r}")
    d = d_model or (cfg.teacher_d if role == "teacher" else cfg.student_d)
    layers = n_layers or (cfg.teacher_layers if role == "teacher" else cfg.student_layers)
    return dict(vocab_size=vocab_size, d_model=d, n_heads=cfg.n_heads, n_layers=layers, d_ff=d_ff or 2 * d,
                position="rope", max_positions=cfg.context, n_kv_heads=kv_heads or cfg.kv_heads,
                layer_pattern=layer_pattern, sliding_window=cfg.window if "L" in layer_pattern else None,
                attn_softcap=cfg.attn_softcap, final_softcap=cfg.final_softcap, norm="rmsnorm", post_norm=True,
                ffn="geglu", bias=False, tie_embeddings=True, scale_embeddings=True)


def build(cfg: GemmaConfig, vocab_size: int, role: str = "student", seed: int = 0, **shape) -> TinyTransformer:
    """A freshly initialised model (torch seeded with `seed` first, so a seed fixes the weights)."""
    torch.manual_seed(seed)
    return TinyTransformer(**gemma_kwargs(cfg, vocab_size, role, **shape))


def load_corpus(cfg: GemmaConfig) -> CharCorpus:
    """The stdlib character corpus cut at `cfg.corpus_chars`, split 90/10 by position (it differs across
    Python versions: record `corpus.python` and `corpus.sha256`)."""
    return stdlib_corpus(cfg.corpus_chars, val_fraction=0.1)


def val_windows(corpus: CharCorpus, cfg: GemmaConfig, seed: int = 12345) -> torch.Tensor:
    """A fixed set of validation windows (val_windows, context + 1), the same for every model."""
    return random_windows(corpus.val, cfg.context + 1, cfg.val_windows, torch.Generator().manual_seed(seed))


def batch_schedule(corpus: CharCorpus, cfg: GemmaConfig, seed: int):
    """`next_batch(step)` for train_lm: batch `step` of seed `seed` is fixed (the same for every model of
    that seed, whatever was drawn before), so NTP and KD students of one seed see the same windows."""
    def next_batch(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + step)
        return random_windows(corpus.train, cfg.context + 1, cfg.batch_size, g)
    return next_batch


def kd_loss(teacher: TinyTransformer, top_k: int = 0, cache: dict | None = None):
    """loss_fn for train_lm: cross-entropy from the teacher's next-token distribution (teacher-forced on the
    batch, no gradient) to the student's; `top_k` > 0 keeps the teacher's k most likely tokens renormalised.

    The teacher runs on the fly; with a `cache` (a dict shared by several students reading the same batch
    schedule) its logits for each batch are computed once and reused (keyed by the batch's contents)."""
    teacher.eval()

    def loss(model, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch[:, :-1]
        key = inputs.cpu().numpy().tobytes() if cache is not None else None
        t_logits = cache.get(key) if cache is not None else None
        if t_logits is None:
            with torch.no_grad():
                t_logits = teacher(inputs)
            if cache is not None:
                cache[key] = t_logits
        return distillation_loss(model(inputs), t_logits, top_k=top_k or None)
    return loss


@torch.no_grad()
def val_loss(model: TinyTransformer, windows: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats per character) on `windows`."""
    was = model.training
    model.eval()
    out = float(next_token_loss(model, windows))
    model.train(was)
    return out


@dataclass
class Trained:
    """A trained model, its final validation loss on all validation windows, its history ("eval_step",
    "val": the learning curve, on the first `curve_windows` windows), CPU seconds and steps."""

    model: TinyTransformer
    history: dict = field(repr=False)
    cpu_s: float
    steps: int
    val: float = float("nan")

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.cpu_s / self.steps


def train(model: TinyTransformer, corpus: CharCorpus, cfg: GemmaConfig, seed: int, steps: int, windows: torch.Tensor,
          loss_fn=next_token_loss, desc: str = "train", curve: bool = True) -> Trained:
    """Train with the shared loop on seed `seed`'s batch schedule. The learning curve is evaluated every
    `cfg.eval_every` steps on the first `cfg.curve_windows` of `windows` (all of them with `curve=False`: then
    only at the end); the final loss on all `windows`. The CPU time of the process (user + sys) is the
    run's cost (evaluations included)."""
    t0 = time.process_time()
    sub = windows[: cfg.curve_windows] if curve else windows
    hist = train_lm(model, batch_schedule(corpus, cfg, seed), steps=steps, loss_fn=loss_fn, lr=cfg.lr,
                    warmup=cfg.warmup, log_every=max(1, cfg.eval_every), eval_every=cfg.eval_every if curve else None,
                    evaluate=lambda m: {"val": val_loss(m, sub)}, desc=desc)
    final = val_loss(model, windows) if curve else hist["val"][-1]
    return Trained(model, hist, time.process_time() - t0, steps, final)


@contextlib.contextmanager
def inference_edit(model: TinyTransformer, *, window: int | None = None, caps: tuple[bool, bool] | None = None,
                   local_to_global: bool = False, allow_larger: bool = False):
    """Change the model at inference only, and restore it on exit.

    `window`: the local layers' sliding window; a window larger than the trained one lets local layers see
    keys they never saw in training, so it needs `allow_larger=True` (else a ShammieError). `caps`:
    (keep attention cap, keep final cap). `local_to_global`: every layer global (also an opt-in change).
    The trained context is never exceeded here: evaluating longer windows than `max_positions` is refused
    by the model itself."""
    spec = model.spec
    trained = spec.sliding_window
    changes: dict = {}
    if window is not None:
        if trained is None:
            raise ShammieError("this model has no local layers: there is no window to change")
        if window > trained and not allow_larger:
            raise ShammieError(f"window {window} is larger than the trained window {trained}: local layers would see "
                               "keys they never saw in training; pass allow_larger=True to do it on purpose")
        changes["sliding_window"] = window
    if local_to_global:
        if not allow_larger:
            raise ShammieError("making local layers global widens their window beyond training: pass allow_larger=True")
        changes["layer_pattern"] = "G"
        changes["sliding_window"] = None
    if caps is not None:
        changes["attn_softcap"] = spec.attn_softcap if caps[0] else None
        changes["final_softcap"] = spec.final_softcap if caps[1] else None
    original = {k: getattr(spec, k) for k in ("sliding_window", "layer_pattern", "attn_softcap", "final_softcap")}
    model.reconfigure(**changes)
    try:
        yield model
    finally:
        model.reconfigure(**original)


def window_sweep(model: TinyTransformer, windows: torch.Tensor, sizes, *, allow_larger: bool = False) -> dict:
    """Validation loss at each inference window in `sizes`, and with every layer made global ("global",
    only with `allow_larger`). A window larger than the trained one (and the all-global edit) lets local
    layers see keys they never saw in training: the caller opts in with `allow_larger=True`, else a
    ShammieError names the offending window."""
    out = {}
    for w in sizes:
        with inference_edit(model, window=int(w), allow_larger=allow_larger):
            out[int(w)] = val_loss(model, windows)
    if allow_larger:
        with inference_edit(model, local_to_global=True, allow_larger=True):
            out["global"] = val_loss(model, windows)
    return out


def cap_removal(model: TinyTransformer, windows: torch.Tensor) -> dict[str, float]:
    """Validation loss with both caps, without the attention cap, without the final cap, without both."""
    out = {}
    for name, caps in (("both caps", (True, True)), ("no attention cap", (False, True)),
                       ("no final cap", (True, False)), ("no caps", (False, False))):
        with inference_edit(model, caps=caps):
            out[name] = val_loss(model, windows)
    return out


@torch.no_grad()
def raw_logits(model: TinyTransformer, tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """The logits *before* their soft-caps: attention logits (scaled q.k of every head and layer at the
    allowed query/key pairs) and final logits (hidden @ E^T), plus the capped final logits."""
    from ..transformer import sliding_window_mask

    spec = model.spec
    model.eval()
    seen: list[torch.Tensor] = []
    hooks = [blk.qkv.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0])) for blk in model.blocks]
    try:
        hidden = model(tokens, return_hidden=True)
    finally:
        for h in hooks:
            h.remove()
    t = tokens.shape[1]
    pos = torch.arange(t).expand(tokens.shape[0], t)
    rope = model._rope_tables(pos) if model.rope_freq is not None else None
    scale = spec.attn_scale if spec.attn_scale is not None else model.head_dim ** -0.5
    groups = spec.n_heads // spec.kv_heads
    attn = []
    for blk, kind, y in zip(model.blocks, spec.kinds, seen):
        q, k, _ = model._qkv(blk, y, rope)
        k = k.repeat_interleave(groups, dim=1)
        s = (q @ k.transpose(-1, -2)) * scale
        mask = sliding_window_mask(t, spec.sliding_window if kind == "L" else None)
        attn.append(s[..., mask].flatten())
    final_raw = model.head(hidden)
    return {"attention": torch.cat(attn).numpy(), "final": final_raw.flatten().numpy(),
            "final_capped": model.logits(hidden).flatten().numpy()}


def kv_parameters(cfg: GemmaConfig, vocab_size: int, kv_heads: int, d_model: int | None = None) -> dict[str, int]:
    """Parameters of a student with `kv_heads` key/value heads: the model's count and the count predicted by
    the formula total(MHA) - layers * 2 * (heads - kv_heads) * head_dim * d (no biases)."""
    d = d_model or cfg.student_d
    model = TinyTransformer(**gemma_kwargs(cfg, vocab_size, "student", d_model=d, kv_heads=kv_heads))
    mha = TinyTransformer(**gemma_kwargs(cfg, vocab_size, "student", d_model=d, kv_heads=cfg.n_heads))
    dh = d // cfg.n_heads
    predicted = mha.parameter_counts()["total"] - cfg.student_layers * 2 * (cfg.n_heads - kv_heads) * dh * d
    return {"kv_heads": kv_heads, "total": model.parameter_counts()["total"], "predicted": predicted}


def equal_time_gap(ntp: Trained, kd: Trained, cost_ratio: float) -> float:
    """NTP's final loss minus KD's loss at the step where KD, at `cost_ratio` times an
    NTP step's CPU time, had spent NTP's whole run (linear interpolation of KD's evaluation curve, with the
    loss at step 0 taken as the first evaluation's; KD's cosine schedule had not finished then, so this
    understates a KD run planned for that budget); both read on the learning curves' windows. Positive: KD
    ahead at equal time."""
    if cost_ratio <= 0:
        raise ShammieError(f"cost_ratio must be positive, got {cost_ratio}")
    step = ntp.steps / cost_ratio
    xs, ys = np.asarray(kd.history["eval_step"], float), np.asarray(kd.history["val"], float)
    return float(ntp.history["val"][-1] - np.interp(step, xs, ys))


def wide_deep_shapes(cfg: GemmaConfig, vocab_size: int) -> dict:
    """Two student shapes at (nearly) equal parameters, the paper's Table 9 analog: "deep" has
    `cfg.deep_layers` layers of width `cfg.student_d` (GeGLU d_ff = 2 d); "wide" has `cfg.student_layers`
    layers, the width (a multiple of 2 * n_heads, as RoPE needs) whose count with d_ff = 2 d is closest to the
    deep one's, then the d_ff that brings its count closest. Each entry: {"d_model", "n_layers", "d_ff",
    "params"}; "gap" is (wide - deep) / deep parameters."""
    step = 2 * cfg.n_heads

    def count(d: int, layers: int, d_ff: int | None = None) -> int:
        shape = gemma_kwargs(cfg, vocab_size, "student", d_model=d, n_layers=layers, d_ff=d_ff)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return TinyTransformer(**shape).parameter_counts()["total"]

    target = count(cfg.student_d, cfg.deep_layers)
    deep = {"d_model": cfg.student_d, "n_layers": cfg.deep_layers, "d_ff": 2 * cfg.student_d, "params": target}
    layers = cfg.student_layers
    d = min(range(step, 4 * cfg.student_d + step, step), key=lambda w: (abs(count(w, layers) - target), w))
    base, slope = count(d, layers, 1), count(d, layers, 2) - count(d, layers, 1)  # linear in d_ff
    ff = max(1, round(1 + (target - base) / slope))
    wide = {"d_model": d, "n_layers": layers, "d_ff": ff, "params": count(d, layers, ff)}
    return {"wide": wide, "deep": deep, "gap": (wide["params"] - target) / target}


def train_wide_deep(cfg: GemmaConfig, corpus: CharCorpus, seed: int, batches: int, windows: torch.Tensor,
                    loss_fn=next_token_loss, steps: int | None = None) -> dict[str, Trained]:
    """Train the wide and the deep student of `wide_deep_shapes` from seed `seed` on batch schedule `batches`
    with `loss_fn` (the notebook distils both from one teacher), `steps` (default `cfg.student_steps`) each."""
    shapes = wide_deep_shapes(cfg, corpus.vocab_size)
    out = {}
    for name in ("wide", "deep"):
        sh = shapes[name]
        model = build(cfg, corpus.vocab_size, "student", seed, d_model=sh["d_model"], n_layers=sh["n_layers"],
                      d_ff=sh["d_ff"])
        out[name] = train(model, corpus, cfg, batches, steps or cfg.student_steps, windows, loss_fn=loss_fn,
                          desc=f"{name} d={sh['d_model']} L={sh['n_layers']} seed {seed}")
    return out
