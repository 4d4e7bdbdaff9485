"""Unit tests of shammie.self_training (ReST^EM on running-sum addition)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from shammie import self_training as st
from shammie.config import ConfigError
from shammie.core import ShammieError
from shammie.lm import IGNORE_INDEX, completion_loss, generate

PROBLEMS = [(7, 3, 9, 4), (1, 2, 3), (9, 9, 9, 9, 9, 9), (0, 0, 0)]


def tiny(seed: int = 0) -> torch.nn.Module:
    cfg = st.SelfTrainingConfig.for_profile("smoke")
    return st.build_model(cfg, seed)


# ------------------------------------------------------------------ task and checker
def test_encoding_round_trip_and_worked_solution():
    assert st.decode(st.prompt_tokens((7, 3, 9, 4))) == "^7+3+9+4="
    assert st.decode(st.solution_tokens((7, 3, 9, 4))) == "7,10,19,23$"
    assert st.encode(st.decode(range(st.VOCAB_SIZE))) == list(range(st.VOCAB_SIZE))
    with pytest.raises(ShammieError, match="not in the vocabulary"):
        st.encode("7a")
    assert st.max_completion_tokens(6) == len("9,18,27,36,45,54$")


def _independent_reward(problem, text: str) -> int:
    """Recompute the checker's verdict from the text alone (written apart from the library's parser)."""
    if "$" not in text:
        return 0
    final = text.split("$", 1)[0].split(",")[-1]
    return int(final.isdigit() and len(final) <= 6 and int(final) == sum(problem))


def test_checker_accepts_exactly_the_right_final_answers():
    rng = np.random.default_rng(0)
    alphabet = list("0123456789,$+")
    for p in st.random_problems(rng, 300, 1, 6):
        assert st.reward(p, st.solution_tokens(p)) == 1
        for _ in range(5):
            text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 8))))
            if rng.random() < 0.3:
                text = text.split("$")[0] + "," + str(sum(p)) + "$"
            assert st.reward(p, st.encode(text)) == _independent_reward(p, text), (p, text)


@pytest.mark.parametrize("text,ok", [
    ("7,10,19,23$", 1),      # the worked solution
    ("7,10,19,24$", 0),      # wrong final number
    ("7,10,19,23", 0),       # no end token
    ("", 0),                 # empty
    ("$", 0),                # end token only
    ("7,10,19,2+$", 0),      # non-digit tail
    ("7,10,19,$", 0),        # empty tail
    ("1,2,3,23$", 1),        # wrong scratchpad, right final number: accepted (the checker reads no rationale)
    ("23$", 1),              # no scratchpad at all
    ("23$99", 1),            # what follows the end token is ignored
])
def test_checker_cases(text, ok):
    assert st.reward((7, 3, 9, 4), st.encode(text)) == ok


def test_make_task_sets_are_disjoint_and_seeded():
    t = st.make_task(50, 100, 20, 40, 10, seed=3)
    assert t.sizes() == {"human": 50, "train": 100, "val": 20, "test": 40, "heldout": 10}
    sets = [set(getattr(t, k)) for k in ("human", "train", "val", "test", "heldout")]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 220
    assert all(3 <= len(p) <= 6 for p in t.train) and all(len(p) == 8 for p in t.heldout)
    assert st.make_task(50, 100, 20, 40, 10, seed=3).train == t.train
    with pytest.raises(ShammieError):
        st.make_task(0, 100, 20, 40, 10)


def test_pack_batch_scores_the_completion_only():
    pairs = [(st.prompt_tokens(p), st.solution_tokens(p)) for p in PROBLEMS]
    inputs, targets = st.pack_batch(pairs)
    for (prompt, comp), row in zip(pairs, targets):
        scored = row[row != IGNORE_INDEX].tolist()
        assert scored == comp
        assert (row[: len(prompt) - 1] == IGNORE_INDEX).all()
    # the loss is the mean cross-entropy over the completion tokens only
    model = tiny()
    logits = model(inputs)
    lp = torch.log_softmax(logits, -1)
    manual = [-lp[b, t, targets[b, t]] for b in range(len(pairs)) for t in range(targets.shape[1])
              if targets[b, t] != IGNORE_INDEX]
    assert torch.allclose(completion_loss(logits, targets), torch.stack(manual).mean(), atol=1e-6)
    # changing a prompt position's target (while ignored) changes nothing; scoring it would
    perturbed = targets.clone()
    perturbed[0, 0] = IGNORE_INDEX
    assert torch.equal(completion_loss(logits, perturbed), completion_loss(logits, targets))


# ------------------------------------------------------------------ filter (keep at most K)
def _samples(rewards: np.ndarray) -> st.Samples:
    probs = [(i,) for i in range(rewards.shape[0])]
    comps = [[[j, st.EOS] for j in range(rewards.shape[1])] for _ in probs]
    return st.Samples(probs, comps, rewards)


def test_keep_correct_keeps_only_accepted_samples_capped_and_seeded():
    rng = np.random.default_rng(1)
    rewards = (rng.random((40, 8)) < 0.5).astype(np.int64)
    rewards[0] = 0  # a problem with no correct sample adds nothing
    s = _samples(rewards)
    kept = st.keep_correct(s, cap=3, seed=5)
    per = {}
    for p, c in kept:
        assert rewards[p[0], c[0]] == 1  # every kept completion was accepted
        per.setdefault(p, []).append(c[0])
    assert (0,) not in per
    for i in range(40):
        assert len(per.get((i,), [])) == min(3, int(rewards[i].sum()))
        assert len(set(per.get((i,), []))) == len(per.get((i,), []))
    assert st.keep_correct(s, 3, seed=5) == kept
    others = [st.keep_correct(s, 3, seed=k) for k in range(6, 12)]
    assert any(o != kept for o in others)  # a different seed picks another subset
    # not the first K in generation order: over seeds, later samples get picked too
    picked = {c[0] for o in others for _, c in o}
    assert max(picked) >= 5


def test_keep_correct_subset_is_uniform():
    s = _samples(np.ones((1, 6), dtype=np.int64))
    counts = np.zeros(6)
    for seed in range(600):
        for _, c in st.keep_correct(s, 2, seed):
            counts[c[0]] += 1
    assert counts.sum() == 1200
    assert np.all(np.abs(counts / 200 - 1) < 0.25)  # each sample kept about 1/3 of the time


def test_a_model_that_always_answers_right_keeps_every_sample():
    probs = PROBLEMS
    comps = [[st.solution_tokens(p) for _ in range(4)] for p in probs]
    rewards = np.array([[st.reward(p, c) for c in cs] for p, cs in zip(probs, comps)])
    s = st.Samples(list(probs), comps, rewards)
    assert s.solved_fraction == 1.0 and s.accept_rate == 1.0
    assert len(st.keep_correct(s, cap=4, seed=0)) == 4 * len(probs)
    assert len(st.keep_correct(s, cap=10, seed=0)) == 4 * len(probs)


# ------------------------------------------------------------------ M-step starts from the base
def test_m_step_starts_from_the_base_and_never_mutates_it():
    base = tiny()
    before = st.clone_model(base)
    seen = []
    model, hist = st.m_step(base, st.human_pairs(PROBLEMS), steps=3, batch_size=4, lr=1e-2, seed=0,
                            on_start=lambda m: seen.append(st.same_weights(m, base)))
    assert seen == [True]
    assert model is not base and st.same_weights(base, before)
    assert not st.same_weights(model, base)
    assert len(hist["loss"]) >= 1


def test_rest_em_restart_fine_tunes_the_base_every_iteration(monkeypatch):
    import shammie.self_training.algorithms as mod

    base = tiny()
    snapshot = st.clone_model(base)
    starts = []
    real = mod.m_step

    def spy(model, pairs, **kw):
        starts.append(st.same_weights(model, snapshot))
        return real(model, pairs, **kw)

    monkeypatch.setattr(mod, "m_step", spy)
    always = lambda p, c: 1  # noqa: E731 - every sample accepted, so every iteration fine-tunes
    kw = dict(iterations=3, n_samples=2, cap=1, temperature=1.0, steps=2, batch_size=4, lr=1e-2, max_new_tokens=6,
              seed=0, checker=always)
    run = st.rest_em(base, PROBLEMS, restart=True, **kw)
    assert starts == [True, True, True] and st.same_weights(base, snapshot)
    assert [it.status for it in run.iterations] == ["ok"] * 3 and len(run.models) == 3
    starts.clear()
    cont = st.rest_em(base, PROBLEMS, restart=False, **kw)
    assert starts == [True, False, False]  # the variant continues from the last iterate
    # continuing from a shared first iteration reproduces the run computed in one go
    shared = st.rest_em(base, PROBLEMS, restart=False, start=st.ReSTRun(False, cont.iterations[:1], cont.models[:1]), **kw)
    assert st.same_weights(shared.models[-1], cont.models[-1])


def test_empty_kept_set_is_recorded_and_nothing_crashes():
    base = tiny()
    with pytest.raises(st.EmptyKeptSet, match="kept set is empty"):
        st.m_step(base, [], steps=1, batch_size=2, lr=1e-3, seed=0)
    never = lambda p, c: 0  # noqa: E731
    with pytest.warns(UserWarning, match="left unchanged"):
        run = st.rest_em(base, PROBLEMS, iterations=2, n_samples=2, cap=1, temperature=1.0, steps=2, batch_size=4,
                         lr=1e-2, max_new_tokens=6, seed=0, checker=never, evaluate=lambda m: {"x": 1.0})
    assert [it.status for it in run.iterations] == ["empty", "empty"]
    assert [it.kept for it in run.iterations] == [0, 0] and run.iterations[0].message
    assert run.models[-1] is base and run.series("x") == [1.0, 1.0]


@pytest.mark.parametrize("kw,match", [
    ({"cap": 0}, "K"), ({"n_samples": 0}, "N"), ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"), ({"iterations": 0}, "iterations"),
])
def test_bad_input_is_refused(kw, match):
    args = dict(iterations=1, n_samples=2, cap=1, temperature=1.0, steps=1, batch_size=2, lr=1e-3, max_new_tokens=4,
                seed=0)
    args.update(kw)
    with pytest.raises(ShammieError, match=match):
        st.rest_em(tiny(), PROBLEMS, **args)


def test_bad_config_is_refused():
    for bad in ({"cap": 0}, {"n_samples": 0}, {"temperature": 0.0}, {"iterations": 0}):
        with pytest.raises(ConfigError):
            st.SelfTrainingConfig.for_profile("quick", **bad)
    with pytest.raises(ConfigError, match="unknown"):
        st.SelfTrainingConfig.for_profile("quick", nsamples=3)
    for profile in ("smoke", "quick", "full"):
        cfg = st.SelfTrainingConfig.for_profile(profile)
        assert cfg.ks[0] == 1 and cfg.ks[-1] <= cfg.eval_samples


# ------------------------------------------------------------------ decoding and metrics
def test_cached_decoding_equals_full_recompute():
    model = tiny(1)
    prompts = [st.prompt_tokens(p) for p in PROBLEMS]
    a = generate(model, prompts, 10, eos_id=st.EOS, pad_id=st.PAD, keep_logits=True)
    b = generate(model, prompts, 10, eos_id=st.EOS, pad_id=st.PAD, keep_logits=True, use_cache=False)
    assert a.rows() == b.rows()
    assert max(float((x - y).abs().max()) for x, y in zip(a.logits, b.logits)) < 1e-5
    g1 = st.sample_completions(model, PROBLEMS, 3, temperature=1.0, max_new_tokens=8,
                               generator=torch.Generator().manual_seed(4))
    g2 = st.sample_completions(model, PROBLEMS, 3, temperature=1.0, max_new_tokens=8,
                               generator=torch.Generator().manual_seed(4))
    assert g1 == g2 and len(g1) == len(PROBLEMS) and all(len(x) == 3 for x in g1)


def _brute_pass_at_k(correct_row: list[int], k: int) -> float:
    subsets = list(itertools.combinations(range(len(correct_row)), k))
    return sum(any(correct_row[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_against_brute_force():
    rng = np.random.default_rng(2)
    correct = (rng.random((12, 6)) < 0.4).astype(int)
    curve = st.pass_at_k_curve(correct, [1, 2, 3, 6])
    for k in (1, 2, 3, 6):
        assert math.isclose(curve[k], np.mean([_brute_pass_at_k(list(r), k) for r in correct]), abs_tol=1e-12)
    assert math.isclose(curve[1], correct.mean())
    assert list(curve.values()) == sorted(curve.values())
    assert st.pass_at_k_curve(np.ones((3, 4)), [1, 4]) == {1: 1.0, 4: 1.0}
    assert st.pass_at_k_curve(np.zeros((3, 4)), [1, 4]) == {1: 0.0, 4: 0.0}


def test_majority_vote_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(200):
        answers = [None if rng.random() < 0.2 else int(rng.integers(0, 4)) for _ in range(7)]
        winner, share = st.vote(answers)
        counts = {a: answers.count(a) for a in answers if a is not None}
        if not counts:
            assert (winner, share) == (None, 0.0)
            continue
        assert counts[winner] == max(counts.values())
        assert share == counts[winner] / 7
        first_best = next(a for a in answers if a is not None and counts[a] == max(counts.values()))
        assert winner == first_best  # ties go to the first seen


def _set(answers, problems):
    correct = np.array([[a == sum(p) for a in row] for p, row in zip(problems, answers)], dtype=int)
    return st.SampleSet(list(problems), answers, correct)


def test_uncertainty_routed_vote_on_hand_made_sets():
    probs = [(1, 2), (3, 4), (5, 5)]  # sums 3, 7, 10
    answers = [[3, 3, 3, 9], [7, 1, 2, 5], [4, 4, 10, 10]]
    greedy = [9, 7, 10]
    s = _set(answers, probs)
    # shares: 0.75 (right), 0.25 (tie of singletons -> first, 7, right), 0.5 (tie 4/10 -> first, 4, wrong)
    assert st.routed_answers(s, greedy, threshold=-1.0) == [3, 7, 4]  # always vote
    assert st.routed_answers(s, greedy, threshold=1.0) == greedy  # never vote
    assert st.routed_answers(s, greedy, threshold=0.5) == [3, 7, 10]  # vote above 0.5 only
    assert st.routed_answers(s, greedy, threshold=0.25) == [3, 7, 4]
    best = st.choose_threshold(s, greedy)
    assert best == 0.5 and st.vote_accuracy(s) == pytest.approx(2 / 3)
    with pytest.raises(ShammieError):
        st.choose_threshold(s, greedy[:2])


def test_difficulty_bins():
    assert [st.difficulty_bin(r) for r in (0.0, 0.2, 0.25, 0.5, 0.74, 0.75, 1.0)] == \
        ["very hard", "very hard", "hard", "medium", "medium", "easy", "easy"]
    out = st.accuracy_by_bin(np.array([0.0, 0.1, 0.9, 1.0]), np.array([0, 1, 1, 1]))
    assert out["very hard"] == (0.5, 2) and out["easy"] == (1.0, 2)
    assert out["hard"][1] == 0 and math.isnan(out["hard"][0])
    with pytest.raises(ShammieError):
        st.difficulty_bin(1.5)


@pytest.mark.filterwarnings("ignore:ReST\\^EM iteration")  # the smoke-size model may solve nothing
def test_smoke_seed_runs_end_to_end():
    cfg = st.SelfTrainingConfig.for_profile("smoke")
    task = st.task_for(cfg)
    base, _ = st.train_base(cfg, task, 0)
    res = st.run_seed(cfg, task, base, 0)
    assert len(res.restart.iterations) == cfg.iterations == len(res.cont.iterations)
    assert res.cont.iterations[0] is res.restart.iterations[0]
    assert set(res.last.pass_k) == set(cfg.ks)
    assert 0 <= res.routed["routed"] <= 1 and set(res.bins) == {"base", "SFT(human)", "ReST^EM"}
