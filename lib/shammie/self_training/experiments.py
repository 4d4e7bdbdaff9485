"""The experiments of notebook 06: the task and base model from a config, and one seed's runs (SFT on the
human solutions, ReST^EM restarting from the base, the continue-from-last variant) with their evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..lm import train_lm
from ..transformer import TinyTransformer
from .algorithms import ReSTRun, _batches, human_pairs, rest_em, sft
from .config import SelfTrainingConfig
from .evaluation import (
    SampleSet,
    accuracy_by_bin,
    choose_threshold,
    draw_samples,
    greedy_answers,
    pass_at_k_curve,
    routed_answers,
    vote_accuracy,
)
from .task import VOCAB_SIZE, Task, make_task

__all__ = ["task_for", "build_model", "train_base", "evaluator", "ModelReport", "report_model", "SeedResult",
           "run_seed", "size_sweep"]


def task_for(cfg: SelfTrainingConfig) -> Task:
    """The problem sets of the config (fixed by `data_seed`)."""
    return make_task(cfg.n_human, cfg.n_train, cfg.n_val, cfg.n_test, cfg.n_heldout, min_operands=cfg.min_operands,
                     max_operands=cfg.max_operands, heldout_operands=cfg.heldout_operands, seed=cfg.data_seed)


def build_model(cfg: SelfTrainingConfig, seed: int) -> TinyTransformer:
    """The tiny decoder (RoPE, GeGLU, pre+post RMSNorm, global attention), weights fixed by `seed`."""
    torch.manual_seed(seed)
    return TinyTransformer(VOCAB_SIZE, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, position="rope",
                           max_positions=64, norm="rmsnorm", post_norm=True, ffn="geglu", bias=False)


def train_base(cfg: SelfTrainingConfig, task: Task, seed: int) -> tuple[TinyTransformer, dict]:
    """The base model: trained from scratch on the human worked solutions (completion-only loss); it stands
    in for the paper's pretrained model with a few-shot prompt."""
    model = build_model(cfg, seed)
    torch.manual_seed(seed)
    history = train_lm(model, _batches(human_pairs(task.human), cfg.batch_size, 10_000 + seed), steps=cfg.base_steps,
                       lr=cfg.lr, warmup=0.05, desc="base")
    return model, history


def evaluator(cfg: SelfTrainingConfig, task: Task):
    """evaluate(model) -> greedy pass@1 on the train (first n_train_eval), test and held-out problems."""
    train = task.train[: cfg.n_train_eval]

    def evaluate(model) -> dict[str, float]:
        out = {}
        for name, probs in (("train", train), ("test", task.test), ("heldout", task.heldout)):
            ans = greedy_answers(model, probs, task.max_new_tokens if name == "heldout" else task.max_new_in)
            out[name] = float(np.mean([a == sum(p) for p, a in zip(probs, ans)]))
        return out
    return evaluate


@dataclass
class ModelReport:
    """A model's evaluation: greedy accuracies, pass@k at T = 1 and majority voting on the first n_passk test
    problems, and per-problem greedy correctness there."""

    greedy: dict[str, float]
    pass_k: dict[int, float]
    vote_acc: float  # nan when votes were not asked for
    greedy_sub: float  # greedy accuracy on the same n_passk problems
    greedy_correct: np.ndarray
    samples_t1: SampleSet
    vote_samples: SampleSet | None
    greedy_answers_sub: list


def report_model(cfg: SelfTrainingConfig, task: Task, model, seed: int, greedy: dict[str, float] | None = None,
                 votes: bool = True) -> ModelReport:
    """Evaluate one model (greedy metrics reused when given; the vote's samples only with `votes`)."""
    greedy = greedy or evaluator(cfg, task)(model)
    sub = task.test[: cfg.n_passk]
    ans = greedy_answers(model, sub, task.max_new_in)
    correct = np.array([a == sum(p) for p, a in zip(sub, ans)], dtype=np.int64)
    t1 = draw_samples(model, sub, cfg.eval_samples, 1.0, task.max_new_in, seed=7919 * seed + 1)
    vs = draw_samples(model, sub, cfg.eval_samples, cfg.vote_temperature, task.max_new_in, seed=7919 * seed + 2) \
        if votes else None
    return ModelReport(greedy, pass_at_k_curve(t1.correct, cfg.ks), vote_accuracy(vs) if votes else float("nan"),
                       float(correct.mean()), correct, t1, vs, ans)


@dataclass
class SeedResult:
    """Everything one seed measured."""

    seed: int
    base: ModelReport
    sft: ModelReport
    restart: ReSTRun
    last: ModelReport
    cont: ReSTRun | None = None
    cont_last: ModelReport | None = None
    routed: dict[str, float] = field(default_factory=dict)
    bins: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def test_by_iteration(self, run: str = "restart") -> list[float]:
        r = self.restart if run == "restart" else self.cont
        return [self.base.greedy["test"]] + r.series("test")

    def train_by_iteration(self, run: str = "restart") -> list[float]:
        r = self.restart if run == "restart" else self.cont
        return [self.base.greedy["train"]] + r.series("train")


def run_seed(cfg: SelfTrainingConfig, task: Task, base, seed: int, base_report: ModelReport | None = None) -> SeedResult:
    """One seed: SFT(human) and ReST^EM (restart; continue) from `base`, every model evaluated."""
    evaluate = evaluator(cfg, task)
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    base_report = base_report or report_model(cfg, task, base, seed)
    m_kw = dict(steps=cfg.m_steps, batch_size=cfg.batch_size, lr=cfg.m_lr)
    sft_model, _ = sft(base, task.human, seed=20_000 + seed, **m_kw)
    sft_report = report_model(cfg, task, sft_model, seed, votes=False)
    secs["sft"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    common = dict(n_samples=cfg.n_samples, cap=cfg.cap, temperature=cfg.temperature, max_new_tokens=task.max_new_in,
                  seed=seed, evaluate=evaluate, **m_kw)
    restart = rest_em(base, task.train, iterations=cfg.iterations, restart=True, **common)
    last = report_model(cfg, task, restart.models[-1], seed, greedy=restart.iterations[-1].metrics)
    secs["restart"] = time.perf_counter() - t0
    result = SeedResult(seed, base_report, sft_report, restart, last)
    if cfg.continue_variant:
        t0 = time.perf_counter()
        first = ReSTRun(False, restart.iterations[:1], restart.models[:1])  # iteration 1 is the same computation
        cont = rest_em(base, task.train, iterations=cfg.iterations, restart=False, start=first, **common)
        result.cont = cont
        result.cont_last = report_model(cfg, task, cont.models[-1], seed, greedy=cont.iterations[-1].metrics,
                                        votes=False)
        secs["continue"] = time.perf_counter() - t0
    # the uncertainty-routed vote for the last ReST^EM model: threshold chosen on validation
    t0 = time.perf_counter()
    model = restart.models[-1]
    val_samples = draw_samples(model, task.val, cfg.eval_samples, cfg.vote_temperature, task.max_new_in,
                               seed=7919 * seed + 3)
    val_greedy = greedy_answers(model, task.val, task.max_new_in)
    threshold = choose_threshold(val_samples, val_greedy)
    routed = routed_answers(last.vote_samples, last.greedy_answers_sub, threshold)
    sub = task.test[: cfg.n_passk]
    result.routed = {"threshold": threshold, "greedy": last.greedy_sub, "vote": last.vote_acc,
                     "routed": float(np.mean([a == sum(p) for p, a in zip(sub, routed)]))}
    rate = base_report.samples_t1.solve_rate
    result.bins = {name: accuracy_by_bin(rate, rep.greedy_correct)
                   for name, rep in (("base", base_report), ("SFT(human)", sft_report), ("ReST^EM", last))}
    secs["votes"] = time.perf_counter() - t0
    result.seconds = secs
    return result


def size_sweep(cfg: SelfTrainingConfig, task: Task, base, seed: int) -> dict[int, float]:
    """One restart iteration on the first P training problems for each P of `cfg.size_sweep` (Fig. 8 left):
    test greedy accuracy by P."""
    evaluate = evaluator(cfg, task)
    out = {}
    for p in cfg.size_sweep:
        r = rest_em(base, task.train[:p], iterations=1, n_samples=cfg.n_samples, cap=cfg.cap,
                    temperature=cfg.temperature, steps=cfg.m_steps, batch_size=cfg.batch_size, lr=cfg.m_lr,
                    max_new_tokens=task.max_new_in, seed=seed, evaluate=evaluate)
        out[int(p)] = r.iterations[0].metrics["test"]
    return out
