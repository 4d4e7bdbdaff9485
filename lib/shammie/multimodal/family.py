"""One seed of the notebook's experiment: the family, its baselines, distilled and quantized Nano, routing.

`run_seed` trains, for one seed, nano, pro and ultra jointly on the task mix, a perception specialist
(ultra's size, perception only), a text-only model (nano's size), a nano distilled from this seed's
ultra (optionally a deeper ultra and a matched-steps specialist), then evaluates all of them on the same
fixed test questions, quantizes, and runs the routing sweep (thresholds tuned on the validation signals).
It returns plain numbers (and the models, for the example figure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .compress import SCHEMES, memory_bytes, quantize_model
from .config import MultimodalConfig
from .experiments import (
    Pools,
    Trained,
    evaluate,
    pipeline_xadd,
    pipeline_xcmp,
    question_sets,
    self_pipeline_xcmp,
    train_model,
)
from .model import build, kd_loss
from .routing import cot_votes, sweep, threshold_grid, tune_threshold
from .tasks import Batch, held_out_pairs

__all__ = ["SeedResult", "FAMILY", "QUANT_TASKS", "run_seed", "eval_sets"]

FAMILY = ("nano", "pro", "ultra")
QUANT_TASKS = ("P", "Tadd")


@dataclass
class SeedResult:
    """Everything measured for one seed (accuracies in [0, 1]); `models` keeps the trained models."""

    seed: int
    acc: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> task -> accuracy
    params: dict[str, int] = field(default_factory=dict)
    pipelines: dict[str, float] = field(default_factory=dict)
    quant: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # model -> scheme -> task -> acc
    memory: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> scheme -> bytes
    routing: dict[str, dict] = field(default_factory=dict)  # size -> numbers
    cpu_s: dict[str, float] = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def numbers(self) -> dict:
        """The measurements without the models (JSON-able)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("models", "cpu_s")}


def eval_sets(cfg: MultimodalConfig, pools: Pools) -> tuple[dict[str, Batch], dict[str, Batch]]:
    """(test questions, validation questions): fixed by `question_seed`, the same for every seed and model."""
    held = held_out_pairs()
    test = question_sets(pools.test, cfg.eval_questions, cfg.question_seed, held)
    val = question_sets(pools.val, cfg.val_questions, cfg.question_seed + 1, held)
    return test, {k: val[k] for k in ("Xadd", "XaddCoT")}


def run_seed(cfg: MultimodalConfig, pools: Pools, test: dict[str, Batch], val: dict[str, Batch], seed: int,
             keep_models: bool = False) -> SeedResult:
    """All experiments of one seed (see the module docstring)."""
    held = held_out_pairs()
    mix = cfg.mix_dict
    res = SeedResult(seed)
    trained: dict[str, Trained] = {}

    def train(name: str, d: int, layers: int, task_mix: dict, steps: int, loss_fn=None) -> Trained:
        t = train_model(build(d, layers, seed=1000 * seed + len(trained)), pools.train, held, task_mix, steps=steps,
                        batch_size=cfg.batch_size, seed=seed, lr=cfg.lr, warmup=cfg.warmup, loss_fn=loss_fn,
                        desc=f"{name} seed {seed}")
        trained[name] = t
        res.cpu_s[f"train {name}"] = t.cpu_s
        return t

    for name, (d, layers) in cfg.sizes.items():
        train(name, d, layers, mix, cfg.steps)
    if cfg.deep_layers:
        train("ultra-deep", cfg.widths[-1], cfg.deep_layers, mix, cfg.steps)
    train("specialist", cfg.widths[-1], cfg.layers, {"P": 1.0}, cfg.specialist_steps)
    if cfg.spec_matched_steps:
        train("specialist-steps", cfg.widths[-1], cfg.layers, {"P": 1.0}, cfg.steps)
    train("text", cfg.widths[0], cfg.layers, {"Tadd": 0.5, "Tcmp": 0.5}, cfg.text_steps)
    # the distilled nano: the same initial weights and batches as nano, the teacher is this seed's ultra
    t = train_model(build(cfg.widths[0], cfg.layers, seed=1000 * seed), pools.train, held, mix, steps=cfg.steps,
                    batch_size=cfg.batch_size, seed=seed, lr=cfg.lr, warmup=cfg.warmup,
                    loss_fn=kd_loss(trained["ultra"].model, cfg.kd_alpha), desc=f"nano-KD seed {seed}")
    trained["nano-KD"] = t
    res.cpu_s["train nano-KD"] = t.cpu_s

    t0 = time.process_time()
    for name, tr in trained.items():
        res.params[name] = tr.model.parameter_count()
        res.acc[name] = evaluate(tr.model, test if name not in ("specialist", "specialist-steps", "text")
                                 else {k: test[k] for k in (("P",) if name.startswith("specialist") else ("Tadd", "Tcmp"))})
    spec, text = trained["specialist"].model, trained["text"].model
    res.pipelines["Xadd specialist->text"] = pipeline_xadd(spec, text, test["Xadd"], pools.test)
    res.pipelines["Xcmp specialist->text"] = pipeline_xcmp(spec, text, test["Xcmp"], pools.test)
    if cfg.spec_matched_steps:
        s2 = trained["specialist-steps"].model
        res.pipelines["Xadd specialist(steps)->text"] = pipeline_xadd(s2, text, test["Xadd"], pools.test)
        res.pipelines["Xcmp specialist(steps)->text"] = pipeline_xcmp(s2, text, test["Xcmp"], pools.test)
    for name in FAMILY:
        res.pipelines[f"Xcmp self {name}"] = self_pipeline_xcmp(trained[name].model, test["Xcmp"], pools.test)
    res.cpu_s["evaluate"] = time.process_time() - t0

    t0 = time.process_time()
    qsets = {k: test[k] for k in QUANT_TASKS}
    for name in ("nano", "nano-KD", "pro", "ultra"):
        model = trained[name].model
        res.quant[name] = {"fp32": {k: res.acc[name][k] for k in QUANT_TASKS}}
        res.memory[name] = {"fp32": memory_bytes(model)}
        for scheme, (bits, per_channel) in SCHEMES.items():
            res.quant[name][scheme] = evaluate(quantize_model(model, bits, per_channel), qsets)
            res.memory[name][scheme] = memory_bytes(model, bits, per_channel)
    res.cpu_s["quantize"] = time.process_time() - t0

    t0 = time.process_time()
    grid = threshold_grid(cfg.vote_samples)
    for name in FAMILY:
        model = trained[name].model
        v_val = cot_votes(model, val["Xadd"], val["XaddCoT"], cfg.vote_samples, seed=seed)
        v_test = cot_votes(model, test["Xadd"], test["XaddCoT"], cfg.vote_samples, seed=seed + 7919)
        thr, val_curve = tune_threshold(v_val, grid)
        test_curve = sweep(v_test, grid)
        res.routing[name] = {
            "threshold": thr, "val_curve": val_curve.tolist(), "test_curve": test_curve.tolist(),
            "greedy": v_test.accuracy("direct"), "cot_greedy": v_test.accuracy("cot_greedy"),
            "cot_vote": v_test.accuracy("majority"), "routed": float(test_curve[int(np.argmax(grid == thr))]),
            "val_direct": v_val.accuracy("direct"), "val_cot_vote": v_val.accuracy("majority"),
            "routed_at_0_minus_vote": float(test_curve[0]) - v_test.accuracy("majority"),
        }
    res.cpu_s["routing"] = time.process_time() - t0
    if keep_models:
        res.models = {k: v.model for k, v in trained.items()}
    return res

