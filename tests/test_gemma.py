"""Facts about shammie.gemma (notebook 07): configs, Gemma-2-like shapes of the shared decoder, KV-head
parameter counts, inference-time edits that never widen a window silently, distillation into a copy of
the teacher, the corpus split and its hash, batch schedules, raw logits against the caps."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import sys

import numpy as np
import pytest
import torch

from shammie import gemma
from shammie.config import ConfigError
from shammie.core import ShammieError
from shammie.lm import distillation_loss
from shammie.transformer import softcap


@pytest.fixture(scope="module")
def cfg():
    return gemma.GemmaConfig.for_profile("smoke")


@pytest.fixture(scope="module")
def corpus(cfg):
    return gemma.load_corpus(cfg)


def test_profiles_and_errors():
    quick = gemma.GemmaConfig.for_profile("quick")
    assert quick.seeds >= 3 and quick.mha_seeds >= 3
    assert gemma.GemmaConfig.for_profile("full").seeds >= 3
    with pytest.raises(ConfigError, match="unknown profile"):
        gemma.GemmaConfig.for_profile("huge")
    with pytest.raises(ConfigError, match="unknown setting"):
        gemma.GemmaConfig.for_profile("quick", widow=3)
    with pytest.raises(ConfigError, match="window"):
        gemma.GemmaConfig.for_profile("quick", window=64)  # as long as the context: not local
    with pytest.raises(ConfigError, match="multiple of 2"):
        gemma.GemmaConfig.for_profile("quick", student_d=36)


def test_gemma_shape(cfg):
    model = gemma.build(cfg, 50, "teacher")
    s = model.spec
    assert s.kinds[0] == "L" and s.kinds[1] == "G" and s.kinds == tuple("LG" * (cfg.teacher_layers // 2))
    assert s.kv_heads == cfg.kv_heads < s.n_heads
    assert (s.attn_softcap, s.final_softcap) == (cfg.attn_softcap, cfg.final_softcap)
    assert s.norm == "rmsnorm" and s.post_norm and s.ffn == "geglu" and s.tie_embeddings and s.scale_embeddings
    assert model.parameter_counts()["head"] == 0  # tied
    with pytest.raises(ShammieError, match="role"):
        gemma.gemma_kwargs(cfg, 50, "pupil")
    a, b = gemma.build(cfg, 50, seed=3), gemma.build(cfg, 50, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_kv_parameter_formula(cfg):
    rows = [gemma.kv_parameters(cfg, 50, kv) for kv in (1, 2, 4)]
    assert all(r["total"] == r["predicted"] for r in rows)
    assert rows[0]["total"] < rows[1]["total"] < rows[2]["total"]  # MQA < GQA < MHA


def test_inference_edit_never_widens_silently_and_restores(cfg, corpus):
    model = gemma.build(cfg, corpus.vocab_size, "teacher")
    x = gemma.val_windows(corpus, cfg)[:4, :-1]
    with torch.no_grad():
        before = model(x)
        with pytest.raises(ShammieError, match="larger than the trained window"):
            with gemma.inference_edit(model, window=2 * cfg.window):
                pass
        with pytest.raises(ShammieError, match="allow_larger"):
            with gemma.inference_edit(model, local_to_global=True):
                pass
        with gemma.inference_edit(model, window=cfg.window // 2):
            smaller = model(x)
            assert model.spec.sliding_window == cfg.window // 2
        with gemma.inference_edit(model, window=cfg.context, allow_larger=True):
            wide = model(x)
        with gemma.inference_edit(model, local_to_global=True, allow_larger=True):
            glob = model(x)
        with gemma.inference_edit(model, caps=(False, False)):
            assert model.spec.attn_softcap is None and model.spec.final_softcap is None
        after = model(x)
    assert torch.allclose(wide, glob, atol=1e-6)  # a window as long as the context is global attention
    assert not torch.allclose(smaller, before)
    assert torch.equal(before, after)
    assert model.spec.sliding_window == cfg.window and model.spec.layer_pattern == "LG"
    assert model.spec.final_softcap == cfg.final_softcap
    # the trained context itself cannot be exceeded: RoPE here, so the model's learned-position check does
    # not apply, but a window beyond the context is refused by the config and the sweep only uses <= context
    glob_model = gemma.build(cfg, corpus.vocab_size, layer_pattern="G")
    with pytest.raises(ShammieError, match="no local layers"):
        with gemma.inference_edit(glob_model, window=4):
            pass


def test_window_sweep_and_caps_restore(cfg, corpus):
    model = gemma.build(cfg, corpus.vocab_size, "student")
    val = gemma.val_windows(corpus, cfg)
    base = gemma.val_loss(model, val)
    with pytest.raises(ShammieError, match="larger than the trained window"):
        gemma.window_sweep(model, val, cfg.inference_windows)  # a larger window needs the explicit opt-in
    assert set(gemma.window_sweep(model, val, [cfg.window // 2, cfg.window])) == {cfg.window // 2, cfg.window}
    sweep = gemma.window_sweep(model, val, cfg.inference_windows, allow_larger=True)
    assert sweep[cfg.window] == pytest.approx(base, abs=1e-7)
    assert sweep[cfg.context] == pytest.approx(sweep["global"], abs=1e-6)
    caps = gemma.cap_removal(model, val)
    assert caps["both caps"] == pytest.approx(base, abs=1e-7)
    assert gemma.val_loss(model, val) == base


def test_distilling_into_the_teacher_stays_at_its_entropy(cfg, corpus):
    """KD with the student = the teacher: the loss is the teacher's entropy (its minimum) and the gradient
    vanishes, so training leaves the loss there."""
    teacher = gemma.build(cfg, corpus.vocab_size, "student", seed=1)
    student = copy.deepcopy(teacher)
    batch = gemma.batch_schedule(corpus, cfg, seed=0)(1)
    loss_fn = gemma.kd_loss(teacher)
    with torch.no_grad():
        logits = teacher(batch[:, :-1])
        p = torch.softmax(logits, -1)
        entropy = float(-(p * torch.log_softmax(logits, -1)).sum(-1).mean())
    student.train()
    loss = loss_fn(student, batch)
    assert float(loss.detach()) == pytest.approx(entropy, abs=1e-5)
    loss.backward()
    grad = max(float(q.grad.abs().max()) for q in student.parameters() if q.grad is not None)
    assert grad < 1e-5
    # Adam divides by the gradient's RMS, so float-noise gradients (~1e-9) still move the weights by ~lr per
    # step: at a small learning rate the loss stays at the entropy, and it never goes below it
    slow = dataclasses.replace(cfg, lr=1e-5)
    trained = gemma.train(student, corpus, slow, seed=0, steps=4, windows=gemma.val_windows(corpus, cfg),
                          loss_fn=loss_fn)
    with torch.no_grad():
        after = float(loss_fn(trained.model, batch))
    assert after == pytest.approx(entropy, abs=1e-4) and after >= entropy - 1e-6
    # a genuinely different student has a higher KD loss than the entropy (cross-entropy >= entropy)
    other = gemma.build(cfg, corpus.vocab_size, "student", seed=2)
    with torch.no_grad():
        assert float(distillation_loss(other(batch[:, :-1]), logits)) > entropy


def test_corpus_hash_and_split_by_position(cfg, corpus):
    assert corpus.sha256 == hashlib.sha256(corpus.text.encode()).hexdigest()
    assert corpus.python == sys.version.split()[0]
    ids = torch.tensor(corpus.encode(corpus.text))
    n_train = corpus.train.numel()
    assert torch.equal(torch.cat([corpus.train, corpus.val]), ids)  # consecutive, disjoint, nothing lost
    assert n_train == round(0.9 * len(corpus.text))
    val = gemma.val_windows(corpus, cfg)
    assert val.shape == (cfg.val_windows, cfg.context + 1)
    assert torch.equal(val, gemma.val_windows(corpus, cfg))  # fixed
    # every validation window is a substring of the validation part
    text_val = corpus.decode(corpus.val.tolist())
    assert all(corpus.decode(w.tolist()) in text_val for w in val[:4])


def test_batch_schedule_is_fixed_per_seed_and_step(cfg, corpus):
    a, b = gemma.batch_schedule(corpus, cfg, 0), gemma.batch_schedule(corpus, cfg, 0)
    first = a(3)
    b(1), b(2)
    assert torch.equal(first, b(3))  # independent of what was drawn before
    assert not torch.equal(first, gemma.batch_schedule(corpus, cfg, 1)(3))
    assert first.shape == (cfg.batch_size, cfg.context + 1)


def test_raw_logits_against_caps(cfg, corpus):
    model = gemma.build(cfg, corpus.vocab_size, "teacher")
    x = gemma.val_windows(corpus, cfg)[:2, :-1]
    raw = gemma.raw_logits(model, x)
    assert np.allclose(softcap(torch.from_numpy(raw["final"]), cfg.final_softcap).numpy(), raw["final_capped"],
                       atol=1e-6)
    t, local = x.shape[1], cfg.window
    allowed_local = sum(min(i + 1, local) for i in range(t))
    allowed_global = t * (t + 1) // 2
    per_pattern = {"L": allowed_local, "G": allowed_global}
    expected = 2 * cfg.n_heads * sum(per_pattern[k] for k in model.spec.kinds)
    assert raw["attention"].size == expected
    # with the attention cap set huge, the model's attention weights equal softmax of the raw logits
    with gemma.inference_edit(model, caps=(False, True)):
        _, maps = model(x, return_attention=True)
    assert maps[0].shape[1] == cfg.n_heads


def test_train_and_equal_time_gap(cfg, corpus):
    val = gemma.val_windows(corpus, cfg)
    ntp = gemma.train(gemma.build(cfg, corpus.vocab_size), corpus, cfg, 0, cfg.student_steps, val)
    assert ntp.history["eval_step"][-1] == cfg.student_steps and np.isfinite(ntp.val)
    assert ntp.val == pytest.approx(gemma.val_loss(ntp.model, val))  # final loss on all windows
    assert ntp.history["val"][-1] == pytest.approx(gemma.val_loss(ntp.model, val[: cfg.curve_windows]))
    kd = gemma.Trained(ntp.model, {"eval_step": [0, 10], "val": [3.0, 2.0]}, cpu_s=2.0, steps=10)
    slow = gemma.Trained(ntp.model, {"eval_step": [10], "val": [2.5]}, cpu_s=1.0, steps=10)
    # KD twice as slow per step: at NTP's time it was at step 5, loss 2.5 by interpolation
    assert gemma.equal_time_gap(slow, kd, 2.0) == pytest.approx(0.0)
    assert gemma.equal_time_gap(slow, kd, 1.0) == pytest.approx(0.5)


def test_cached_teacher_gives_the_same_loss(cfg, corpus):
    teacher = gemma.build(cfg, corpus.vocab_size, "teacher", seed=1)
    student = gemma.build(cfg, corpus.vocab_size, seed=2)
    batch = gemma.batch_schedule(corpus, cfg, seed=0)(2)
    cache: dict = {}
    with torch.no_grad():
        fresh = float(gemma.kd_loss(teacher)(student, batch))
        first = float(gemma.kd_loss(teacher, cache=cache)(student, batch))
        again = float(gemma.kd_loss(teacher, cache=cache)(student, batch))
        top = float(gemma.kd_loss(teacher, top_k=corpus.vocab_size)(student, batch))
    assert len(cache) == 1 and fresh == first == again
    assert top == pytest.approx(fresh, abs=1e-5)  # top-k over the whole vocabulary is the full distribution


def test_wide_and_deep_students_have_equal_parameters_and_train(cfg, corpus):
    V = corpus.vocab_size
    shapes = gemma.wide_deep_shapes(cfg, V)
    wide, deep = shapes["wide"], shapes["deep"]
    assert deep["n_layers"] == cfg.deep_layers > wide["n_layers"] == cfg.student_layers
    assert wide["d_model"] > deep["d_model"] and wide["d_model"] % (2 * cfg.n_heads) == 0
    for sh in (wide, deep):  # the counts are the built models' counts
        m = gemma.build(cfg, V, d_model=sh["d_model"], n_layers=sh["n_layers"], d_ff=sh["d_ff"])
        assert m.parameter_counts()["total"] == sh["params"]
    # the closest count d_ff can reach: one more or one less feed-forward unit is no closer
    one_unit = 3 * wide["d_model"] * wide["n_layers"]
    assert abs(wide["params"] - deep["params"]) <= one_unit / 2
    assert abs(shapes["gap"]) < 0.01
    tiny = dataclasses.replace(cfg, student_steps=2, curve_windows=4, val_windows=8)
    val = gemma.val_windows(corpus, tiny)
    pair = gemma.train_wide_deep(tiny, corpus, seed=0, batches=0, windows=val)
    assert set(pair) == {"wide", "deep"}
    assert pair["deep"].model.spec.n_layers == cfg.deep_layers and pair["wide"].model.spec.d_model == wide["d_model"]
    assert all(np.isfinite(t.val) and t.steps == 2 for t in pair.values())
    with pytest.raises(ConfigError, match="deep_layers"):
        gemma.GemmaConfig.for_profile("smoke", deep_layers=cfg.student_layers)
    with pytest.raises(ConfigError, match="mha_seeds >= 3"):
        gemma.GemmaConfig.for_profile("quick", wide_deep=True, mha_seeds=2)
    full = gemma.GemmaConfig.for_profile("full")
    assert full.wide_deep and not gemma.GemmaConfig.for_profile("quick").wide_deep
