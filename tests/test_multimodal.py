"""Unit tests of shammie.multimodal (notebook 09): data facts, task generators, padding, the model,
quantization, routing, distillation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shammie import multimodal as mm
from shammie.core import ShammieError
from shammie.lm import IGNORE_INDEX


@pytest.fixture(scope="module")
def pools():
    return mm.load_pools(10_000, seed=0)


@pytest.fixture(scope="module")
def small_pool():
    rng = np.random.default_rng(0)
    return mm.Pool(rng.normal(size=(200, 40)), np.arange(200) % 10, "small")


def test_mnist1d_facts(pools):
    assert pools.train.x.shape == (8000, 40) and len(pools.val) == 1000 and len(pools.test) == 1000
    counts = np.bincount(np.concatenate([pools.val.y, pools.test.y]), minlength=10)
    assert counts.tolist() == [208, 216, 178, 179, 210, 180, 214, 202, 216, 197]  # the research note's test counts


def test_vocabulary_and_template_lengths():
    assert mm.VOCAB_SIZE == 28 and len(mm.VOCAB) == 28
    assert mm.TEMPLATE_LENGTHS == {"P": 7, "Tadd": 5, "Tcmp": 4, "Xadd": 9, "XaddCoT": 11, "Xcmp": 12}
    assert max(mm.TEMPLATE_LENGTHS.values()) == mm.SEQ_LEN


def test_held_out_pairs():
    held = mm.held_out_pairs()
    assert held.sum() == 12
    assert np.array_equal(held, np.random.default_rng(99).random((10, 10)) < 0.2)


def test_answers_right_by_independent_check(small_pool):
    held = mm.held_out_pairs()
    rng = np.random.default_rng(1)
    batch = mm.make_batch({t: 30 for t in mm.TASKS}, small_pool, rng, held=held)
    assert mm.check_answers(batch, small_pool) == 0
    for pairs in ("held", "all"):
        b = mm.make_batch({"Xadd": 40, "XaddCoT": 40}, small_pool, rng, held=held, pairs=pairs)
        assert mm.check_answers(b, small_pool) == 0
    assert mm.check_answers(mm.perception_batch(small_pool, np.arange(25)), small_pool) == 0
    # comparisons never tie, text comparisons never equal operands
    xcmp = batch.select(batch.task == mm.TASKS.index("Xcmp"))
    assert (xcmp.d1 != xcmp.d2).all()
    tcmp = batch.select(batch.task == mm.TASKS.index("Tcmp"))
    assert (tcmp.a != tcmp.b).all()
    # digit-first: the THINK target is the digit, the stated digit is the true one (teacher forcing)
    cot = batch.select(batch.task == mm.TASKS.index("XaddCoT"))
    assert (cot.targets[:, mm.THINK_COL].numpy() == cot.d1).all()
    assert (cot.tokens[:, mm.DIGIT_COL].numpy() == cot.d1).all()
    assert ((cot.targets != IGNORE_INDEX).sum(1) == 2).all()


def test_held_out_pairs_never_in_training_batches(small_pool):
    held = mm.held_out_pairs()
    rng = np.random.default_rng(2)
    counts = mm.task_counts(dict(mm.DEFAULT_MIX), 128)
    for _ in range(30):
        b = mm.make_batch(counts, small_pool, rng, held=held)
        sums = np.isin(b.task, [mm.TASKS.index("Xadd"), mm.TASKS.index("XaddCoT")])
        assert not held[b.d1[sums], b.k[sums]].any()
    h = mm.make_batch({"Xadd": 200}, small_pool, rng, held=held, pairs="held")
    assert held[h.d1, h.k].all()


def test_task_counts_sum_exactly():
    counts = mm.task_counts(dict(mm.DEFAULT_MIX), 128)
    assert sum(counts.values()) == 128 and counts["P"] == 32


def test_padding_does_not_change_outputs(small_pool):
    torch.manual_seed(0)
    model = mm.build(16, 2, seed=3).eval()
    batch = mm.make_batch({t: 4 for t in mm.TASKS}, small_pool, np.random.default_rng(3), held=mm.held_out_pairs())
    with torch.no_grad():
        mixed = model(batch)[:, -1]
        embeds = model.patch(batch.patches) + model.patch_pos(batch.patch_idx)
        for r in range(len(batch)):
            keep = ~batch.pad[r]
            alone = model.decoder(batch.tokens[r:r + 1, keep], batch.positions[r:r + 1, keep],
                                  embeds=embeds[r:r + 1, keep], embeds_mask=batch.is_img[r:r + 1, keep])[0, -1]
            assert torch.allclose(alone, mixed[r], atol=1e-5), r


def test_patch_order_matters(small_pool):
    model = mm.build(16, 2, seed=4).eval()
    batch = mm.perception_batch(small_pool, np.arange(8))
    swapped = mm.perception_batch(small_pool, np.arange(8))
    cols = torch.nonzero(batch.is_img[0]).flatten()
    swapped.patches[:, cols] = batch.patches[:, cols.flip(0)]
    with torch.no_grad():
        assert (model(batch)[:, -1] - model(swapped)[:, -1]).abs().max() > 1e-4


def test_parameter_counts_and_mqa_shapes():
    for d in (24, 40, 64):
        m = mm.build(d, 2, seed=0)
        assert m.parameter_count() == mm.expected_parameters(d, 2)
        # multi-query attention: two query heads, one shared key/value head of width d/2
        assert m.decoder.blocks[0].qkv.weight.shape == (d + 2 * (d // 2), d)
    assert mm.expected_parameters(24, 2) == 15_292


def test_same_seed_same_model_and_training(small_pool):
    held = mm.held_out_pairs()
    runs = []
    for _ in range(2):
        t = mm.train_model(mm.build(8, 1, seed=5), small_pool, held, dict(mm.DEFAULT_MIX), steps=3, batch_size=16, seed=7)
        runs.append(torch.cat([p.detach().flatten() for p in t.model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_quantizer_grid_error_and_idempotence():
    torch.manual_seed(0)
    w = torch.randn(6, 10)
    q, scale = mm.quantize_tensor(w, 4, per_channel=True)
    for row, s in zip(q, scale.flatten()):
        assert len(torch.unique(row)) <= 15
        assert torch.allclose(torch.round(row / s), row / s, atol=1e-5)  # on the grid s * {-7..7}
    assert torch.allclose(q.abs().amax(1), w.abs().amax(1))  # each row's max |w| kept exactly
    assert (q - w).abs().le(scale / 2 + 1e-7).all()  # error at most half a step
    assert torch.equal(mm.quantize_tensor(q, 4, True)[0], q)  # idempotent
    # values already on the grid round-trip
    grid = torch.arange(-7, 8, dtype=torch.float32).reshape(1, -1) * 0.25
    assert torch.allclose(mm.quantize_tensor(grid, 4, True)[0], grid)
    t, st = mm.quantize_tensor(w, 4, per_channel=False)
    assert st.numel() == 1 and len(torch.unique(t)) <= 15
    assert torch.equal(mm.quantize_tensor(torch.zeros(3, 4), 4)[0], torch.zeros(3, 4))


def test_quantize_model_leaves_norms_biases_positions(small_pool):
    model = mm.build(16, 2, seed=6)
    q = mm.quantize_model(model, 4, per_channel=True)
    assert torch.equal(q.decoder.pos_embed.weight, model.decoder.pos_embed.weight)
    assert torch.equal(q.patch_pos.weight, model.patch_pos.weight)
    assert torch.equal(q.decoder.blocks[0].qkv.bias, model.decoder.blocks[0].qkv.bias)
    assert torch.equal(q.decoder.ln_f.weight, model.decoder.ln_f.weight)
    assert not torch.equal(q.decoder.embed.weight, model.decoder.embed.weight)
    assert not torch.equal(q.patch.weight, model.patch.weight)
    assert mm.memory_bytes(model, 4) < mm.memory_bytes(model, 8) < mm.memory_bytes(model)
    assert mm.memory_bytes(model, 4, per_channel=False) < mm.memory_bytes(model, 4)


def test_distillation_loss_minimal_when_student_equals_teacher(small_pool):
    teacher = mm.build(16, 1, seed=7)
    batch = mm.make_batch({t: 5 for t in mm.TASKS}, small_pool, np.random.default_rng(4), held=mm.held_out_pairs())
    loss = mm.kd_loss(teacher, alpha=1.0)
    same = mm.build(16, 1, seed=7)
    with torch.no_grad():
        base = float(loss(same, batch))
    with torch.no_grad():
        logits = teacher(batch)[batch.targets != IGNORE_INDEX]
        p = torch.softmax(logits, -1)
        entropy = float(-(p * torch.log_softmax(logits, -1)).sum(-1).mean())
    assert base == pytest.approx(entropy, abs=1e-5)  # cross-entropy to itself = its entropy = the minimum
    for s in range(3):
        other = mm.build(16, 1, seed=7)
        with torch.no_grad():
            for prm in other.parameters():
                prm.add_(0.05 * torch.randn(prm.shape, generator=torch.Generator().manual_seed(s)))
        with torch.no_grad():
            assert float(loss(other, batch)) > base


def _votes(direct, majority, consensus, truth):
    n = len(truth)
    return mm.Votes(np.asarray(direct), np.zeros(n, dtype=int), np.asarray(majority), np.asarray(consensus),
                    np.asarray(truth))


def test_routing_limits():
    v = _votes([1, 2, 3, 4], [1, 5, 3, 0], [0.5, 0.25, 0.75, 0.5], [1, 2, 3, 0])
    assert np.array_equal(mm.routed(v, 0.0), v.majority)  # threshold 0: always the vote
    assert np.array_equal(mm.routed(v, 1.0), v.direct)  # no unanimous vote: always direct
    assert np.array_equal(mm.routed(v, 0.5), [1, 2, 3, 0])
    thr, curve = mm.tune_threshold(v, mm.threshold_grid(4))
    assert curve.max() == 1.0 and thr == 0.5


def test_cot_votes_on_a_model(small_pool):
    model = mm.build(16, 1, seed=8)
    sets = mm.question_sets(small_pool, 20, 0, mm.held_out_pairs())
    assert np.array_equal(sets["Xadd"].d1, sets["XaddCoT"].d1) and np.array_equal(sets["Xadd"].k, sets["XaddCoT"].k)
    v = mm.cot_votes(model, sets["Xadd"], sets["XaddCoT"], k=4, seed=0)
    assert np.array_equal(mm.routed(v, 0.0), v.majority)
    assert set(np.unique(v.consensus)) <= {0.25, 0.5, 0.75, 1.0}
    # the greedy chain of thought states the likeliest digit, as the samples are drawn among the digits only;
    # this untrained model's likeliest token at THINK is often no digit at all
    stated, _ = mm.cot_predict(model, sets["XaddCoT"])
    assert (stated >= 10).any()
    assert (v.greedy_digit < 10).all() and np.array_equal(v.greedy_digit[stated < 10], stated[stated < 10])
    from shammie.multimodal.experiments import _logits

    digits = _logits(model, sets["XaddCoT"], mm.THINK_COL)[:, :10].argmax(-1).numpy()
    assert np.array_equal(v.greedy_digit, digits)
    _, answers = mm.cot_predict(model, sets["XaddCoT"], digits)
    assert np.array_equal(answers, v.cot_greedy)


def test_bad_input(small_pool):
    with pytest.raises(ShammieError, match="shape"):
        mm.Pool(np.zeros((5, 39)), np.zeros(5, dtype=int))
    with pytest.raises(ShammieError, match="unknown task"):
        mm.make_batch({"Xmul": 3}, small_pool, np.random.default_rng(0))
    with pytest.raises(ShammieError, match="unknown task"):
        mm.task_counts({"Xmul": 1.0}, 8)
    for bits in (1, 9, 4.0):
        with pytest.raises(ShammieError, match="bits"):
            mm.quantize_tensor(torch.ones(2, 2), bits)
    for thr in (-0.1, 1.5, float("nan")):
        with pytest.raises(ShammieError, match="threshold"):
            mm.routed(_votes([1], [1], [1.0], [1]), thr)
    with pytest.raises(Exception, match="unknown profile"):
        mm.MultimodalConfig.for_profile("huge")
    with pytest.raises(Exception, match="widths"):
        mm.MultimodalConfig.for_profile("quick", widths=(64, 40, 24))


def test_config_profiles():
    q = mm.MultimodalConfig.for_profile("quick")
    assert q.seeds >= 3 and q.specialist_steps == round(q.steps * 0.25)
    assert mm.MultimodalConfig.for_profile("smoke").seeds >= 1
    assert mm.MultimodalConfig.for_profile("full").deep_layers == 3
