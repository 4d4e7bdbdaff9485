"""Tests of shammie.long_context: needle haystacks, receptive fields, recall scoring, power-law fits, MoE parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shammie import long_context as lc
from shammie.config import ConfigError
from shammie.core import ShammieError
from shammie.lm import IGNORE_INDEX
from shammie.transformer import TinyTransformer

V = lc.NeedleVocab()


# ---------------------------------------------------------------------------------------------- haystacks
@pytest.mark.parametrize("length", [4, 9, 32, 101])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_single_needle_at_its_depth(length, depth):
    p = lc.make_probes(V, length, depth, 1, 16, rng=1)
    start = round(depth * (length - lc.NEEDLE_TOKENS))
    assert (p.starts[:, 0] == start).all()
    seq = p.prompt
    assert (seq[:, start] == V.NEEDLE).all()
    assert (seq[:, start + 1] == p.keys[:, 0] + V.key0).all()
    assert (seq[:, start + 2:start + 4] == V.digits(p.values[:, 0])).all()
    assert (seq[:, length] == V.QUERY).all() and (seq[:, length + 1] == seq[:, start + 1]).all()  # query key = needle key
    assert (p.answer == V.digits(p.values[:, 0])).all()
    assert ((seq[:, :length] == V.NEEDLE).sum(1) == 1).all()  # the filler holds no other needle marker
    if depth == 0.0:
        assert start == 0
    if depth == 1.0:
        assert start + lc.NEEDLE_TOKENS == length  # the needle ends just before the query


def test_multi_needle_keys_distinct_and_target_is_queried():
    p = lc.make_probes(V, 96, None, 8, 64, rng=3)
    assert all(len(set(row.tolist())) == 8 for row in p.keys)
    gaps = p.starts[:, 1:] - p.starts[:, :-1]
    assert (gaps >= lc.NEEDLE_TOKENS).all() and (p.starts[:, -1] + lc.NEEDLE_TOKENS <= 96).all()
    rows = torch.arange(64)
    qkey = p.prompt[:, -1] - V.key0
    assert (qkey == p.keys[rows, p.target]).all()
    assert (p.answer == V.digits(p.values[rows, p.target])).all()
    for b in range(64):  # every needle is written where `starts` says
        for j in range(8):
            s = int(p.starts[b, j])
            assert p.prompt[b, s] == V.NEEDLE and p.prompt[b, s + 1] == p.keys[b, j] + V.key0


def test_same_seed_same_batch_and_schedule_is_stateless():
    a, b = lc.make_probes(V, 40, None, 2, 8, rng=5), lc.make_probes(V, 40, None, 2, 8, rng=5)
    assert torch.equal(a.prompt, b.prompt) and torch.equal(a.answer, b.answer)
    cfg = lc.LongContextConfig.for_profile("smoke")
    nb = lc.needle_schedule(cfg, V, seed=1)
    x1, _ = nb(3)
    nb(1)
    x2, _ = nb(3)
    assert torch.equal(x1, x2)


def test_training_batch_scores_the_two_answer_digits_only():
    p = lc.make_probes(V, 20, 0.5, 1, 4, rng=0)
    inputs, targets = lc.training_batch(p)
    assert inputs.shape == targets.shape == (4, 20 + 3)
    scored = targets != IGNORE_INDEX
    assert (scored.sum(1) == 2).all() and scored[:, -2:].all()
    assert torch.equal(targets[:, -2:], p.answer)
    assert torch.equal(inputs[:, -1], p.answer[:, 0])  # the second digit is teacher-forced


def test_text_filler_and_mrcr():
    text = torch.arange(50) % 7
    vocab = lc.NeedleVocab(n_filler=7)
    p = lc.make_probes(vocab, 30, 0.5, 1, 4, rng=0, text=text)
    assert (p.prompt[:, :30][p.prompt[:, :30] >= vocab.filler0] < vocab.filler0 + 7).all()
    m = lc.make_mrcr_probes(V, 48, 64, rng=2)
    assert (m.keys[:, 0] == m.keys[:, 1]).all() and (m.values[:, 0] != m.values[:, 1]).all()
    assert ((m.prompt[:, -2] == V.FIRST) == (m.target == 0)).all()
    assert (m.answer == V.digits(m.values.gather(1, m.target.unsqueeze(1)).squeeze(1))).all()
    assert (m.starts[:, 0] < m.starts[:, 1]).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ShammieError, match="depth"):
        lc.make_probes(V, 32, 1.5)
    with pytest.raises(ShammieError, match="depth"):
        lc.make_probes(V, 32, -0.1)
    with pytest.raises(ShammieError, match="distinct keys"):
        lc.make_probes(lc.NeedleVocab(n_keys=4), 64, None, 5)
    with pytest.raises(ShammieError, match="cannot hold"):
        lc.make_probes(V, 10, None, 3)
    with pytest.raises(ShammieError, match="cannot hold"):
        lc.make_probes(V, 3, 0.5)
    with pytest.raises(ConfigError):
        lc.LongContextConfig.for_profile("quick", grid_depths=(0.0, 1.2))
    with pytest.raises(ConfigError):
        lc.LongContextConfig.for_profile("huge")


def test_chance_level_is_one_percent():
    assert abs(lc.chance_recall(200_000, seed=0) - 0.01) < 0.001


# ---------------------------------------------------------------------------------------------- receptive field
def _ll_model(window=4, layers=2, vocab=V.size):
    torch.manual_seed(0)
    return TinyTransformer(vocab, d_model=16, n_heads=2, n_layers=layers, d_ff=32, position="rope",
                           layer_pattern="L", sliding_window=window).eval()


def test_local_stack_reads_exactly_its_receptive_field():
    model, rf = _ll_model(window=4, layers=2), lc.receptive_field(2, 4)
    assert rf == 6
    g = torch.Generator().manual_seed(0)
    x = torch.randint(V.filler0, V.size, (1, 24), generator=g)
    t = x.shape[1] - 1
    with torch.no_grad():
        base = model(x)[:, -1]
        far = x.clone()
        far[:, : t - rf] = torch.randint(V.filler0, V.size, (1, t - rf), generator=g)
        assert torch.equal(model(far)[:, -1], base)  # nothing older than t - L(W-1) matters
        edge = x.clone()
        edge[:, t - rf] = V.NEEDLE if x[0, t - rf] != V.NEEDLE else V.QUERY
        assert not torch.allclose(model(edge)[:, -1], base)  # the token at t - L(W-1) does


def test_reachable_cells_match_the_model():
    model, window, layers = _ll_model(window=4, layers=2), 4, 2
    lengths, depths = (8, 16, 32), (0.0, 0.5, 1.0)
    grid = lc.reachable_grid(lengths, depths, layers, window)
    for length in lengths:
        for d in depths:
            p = lc.make_probes(V, length, d, 1, 1, rng=0)
            start = int(p.starts[0, 0])
            assert lc.reachable(length, d, layers, window) == grid.loc[d, length]
            assert grid.loc[d, length] == (lc.answer_distance(length, start) <= lc.receptive_field(layers, window))
            q = p.prompt.clone()
            q[0, start + 2] = V.DIGIT0 + (int(q[0, start + 2]) - V.DIGIT0 + 1) % 10  # change the first digit
            with torch.no_grad():
                same = torch.equal(model(p.prompt)[:, -1], model(q)[:, -1])
            assert same == (not grid.loc[d, length])  # unreachable <=> the first digit cannot matter
    assert grid.loc[1.0, 32] and not grid.loc[0.0, 32]


def test_window_edit_restores_the_model():
    model = _ll_model()
    spec = model.spec
    with lc.window_edit(model, None):
        assert model.spec.kinds == ("G", "G")
    with lc.window_edit(model, 2):
        assert model.spec.sliding_window == 2
    assert model.spec == spec


# ---------------------------------------------------------------------------------------------- scoring
def test_forced_cached_and_uncached_scoring_agree():
    cfg = lc.LongContextConfig.for_profile("smoke")
    model = lc.build_needle_model(cfg, V, "LG", seed=0)
    p = lc.make_probes(V, 24, None, 1, 32, rng=0)
    from shammie.lm import generate

    greedy = generate(model, p.prompt, 2).tokens
    q = lc.Probes(p.prompt, greedy, p.starts, p.keys, p.values, p.target)  # the model's own answers
    for method in ("forced", "cached", "uncached"):
        assert lc.answer_hits(model, q, method).all(), method
    q2 = lc.Probes(p.prompt, (greedy + 1) % V.size, p.starts, p.keys, p.values, p.target)
    for method in ("forced", "cached", "uncached"):
        assert not lc.answer_hits(model, q2, method).any(), method
    hits = [lc.answer_hits(model, p, m) for m in ("forced", "cached", "uncached")]
    assert torch.equal(hits[0], hits[1]) and torch.equal(hits[1], hits[2])
    with pytest.raises(ShammieError):
        lc.answer_hits(model, p, "beam")


def test_recall_grid_layout_and_key_ablation_shapes():
    cfg = lc.LongContextConfig.for_profile("smoke")
    model = lc.build_needle_model(cfg, V, "GG", seed=0)
    grid = lc.recall_grid(model, V, (8, 16), (0.0, 1.0), 4)
    assert list(grid.columns) == [8, 16] and list(grid.index) == [0.0, 1.0]
    assert ((grid >= 0) & (grid <= 1)).all().all()
    assert set(lc.multi_needle_recall(model, V, 16, (1, 2), 4)) == {1, 2}
    assert set(lc.key_ablation(model, V, (8, 16), 4)) == {"recall", "ablated"}


# ---------------------------------------------------------------------------------------------- NLL and MoE
def test_power_law_recovers_planted_parameters():
    rng = np.random.default_rng(0)
    x = np.arange(1, 257)
    y = 0.97 * x ** -0.49 + 1.70 + rng.normal(0, 0.002, x.size)
    fit = lc.power_law(y, cumulative=False)
    assert abs(fit["a"] - 0.97) < 0.03 and abs(fit["b"] + 0.49) < 0.03 and abs(fit["c"] - 1.70) < 0.01
    assert fit["r2"] > 0.99
    assert np.allclose(lc.cumulative_nll([3.0, 1.0, 2.0]), [3.0, 2.0, 2.0])
    assert lc.nll_drop(np.r_[np.full(16, 2.0), np.full(16, 1.5)]) == pytest.approx(0.5)
    with pytest.raises(ShammieError):
        lc.r_squared([1.0, 1.0], [1.0, 1.0])


def test_dense_and_moe_have_equal_active_parameters():
    for profile in ("smoke", "quick", "full"):
        cfg = lc.LongContextConfig.for_profile(profile)
        dense, moe = lc.build_lm(cfg, 97, False, 0), lc.build_lm(cfg, 97, True, 0)
        assert lc.active_parameter_gap(dense, moe) == 0
        assert lc.router_parameters(moe) == cfg.lm_layers * cfg.lm_d * cfg.n_experts
        assert moe.parameter_counts()["total"] > dense.parameter_counts()["total"]


def test_balancing_loss_is_one_for_uniform_routing_and_e_when_collapsed():
    cfg = lc.LongContextConfig.for_profile("smoke")
    moe = lc.build_lm(cfg, 50, True, 0)
    x = torch.randint(0, 50, (4, 12))
    with torch.no_grad():
        for b in moe.blocks:
            b.moe.router.weight.zero_()
        moe(x)
        assert float(moe.aux_loss) == pytest.approx(cfg.lm_layers * 1.0, abs=1e-6)  # 1 per layer
        h = moe.blocks[0].moe
        big = torch.zeros_like(h.router.weight)
        big[0] = 1e4  # every token to expert 0 with probability ~1
        h.router.weight.copy_(big)
        h(torch.ones(7, cfg.lm_d))
        assert float(h.aux_loss) == pytest.approx(cfg.n_experts, rel=1e-4)


def test_full_profile_paths_run_at_toy_size():
    """The full profile's extras (MRCR-lite training, window sweep, text filler, several training needles)."""
    cfg = lc.LongContextConfig.for_profile("smoke", train_needles=3, filler="text")
    text = torch.arange(300) % 11
    vocab = lc.NeedleVocab(n_filler=11)
    m = lc.train_needle_model(cfg, vocab, "LG", seed=0, text=text, steps=2, task="mrcr")
    out = lc.mrcr_recall(m.model, vocab, (16, 32), 4, text=text)
    assert set(out) == {16, 32} and all(0 <= v <= 1 for v in out.values())
    sweep = lc.window_sweep(m.model, vocab, (2, 4), (16,), (0.0, 1.0), 4)
    assert set(sweep) == {2, 4, "global"}
    assert m.model.spec.sliding_window == cfg.window  # restored after the sweep
    x, _ = lc.needle_schedule(cfg, vocab, seed=0, text=text)(1)
    assert x.max() < vocab.size
    with pytest.raises(ShammieError):
        lc.train_needle_model(cfg, vocab, "LG", seed=0, steps=1, task="translate")
