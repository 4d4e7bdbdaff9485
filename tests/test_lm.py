"""Facts about the language-model toolkit: completion-only and distillation losses, sampling,
cached generation, pass@k, majority vote, per-position NLL and the power-law fit, the stdlib corpus,
and the one LM training loop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shammie.core import ShammieError
from shammie.lm import (
    IGNORE_INDEX,
    completion_loss,
    distillation_loss,
    fit_power_law,
    generate,
    majority_vote,
    mask_prompt,
    next_token_loss,
    pass_at_k,
    per_position_nll,
    random_windows,
    sample_next,
    sparse_distillation_loss,
    stdlib_corpus,
    teacher_top_k,
    train_lm,
    warmup_cosine,
)
from shammie.transformer import TinyTransformer

V = 12
GEMMA = dict(n_kv_heads=2, layer_pattern="LG", sliding_window=4, attn_softcap=5.0, final_softcap=4.0,
             norm="rmsnorm", post_norm=True, ffn="geglu", bias=False, tie_embeddings=True,
             scale_embeddings=True, position="rope")


def lm(seed: int = 0, **kw) -> TinyTransformer:
    torch.manual_seed(seed)
    m = TinyTransformer(V, d_model=24, n_heads=4, n_layers=2, d_ff=32, max_positions=64, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def rand(*shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
def test_completion_loss_scores_only_the_completion():
    logits, tokens = rand(2, 7, V), torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    targets = mask_prompt(tokens[:, 1:], [3, 5])
    assert (targets[0, :2] == IGNORE_INDEX).all() and (targets[0, 2:] != IGNORE_INDEX).all()
    assert (targets[1, :4] == IGNORE_INDEX).all() and (targets[1, 4:] != IGNORE_INDEX).all()
    keep = targets != IGNORE_INDEX
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(completion_loss(logits, targets), expected)
    changed = logits.clone()
    changed[0, :2] += 5.0  # predictions of prompt tokens do not count
    torch.testing.assert_close(completion_loss(changed, targets), expected)


def test_distillation_from_a_one_hot_teacher_is_cross_entropy():
    s, y = rand(3, 5, V), torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(2))
    onehot = F.one_hot(y, V).double()
    torch.testing.assert_close(distillation_loss(s, teacher_probs=onehot), F.cross_entropy(s.reshape(-1, V), y.reshape(-1)))


def test_distillation_minimum_is_the_teacher_and_gradient_is_p_student_minus_p_teacher():
    t = rand(4, V, seed=3)
    p = torch.softmax(t, -1)
    entropy = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(t, t), entropy)
    for seed in range(5):  # any other student is worse (Gibbs' inequality)
        assert distillation_loss(t + 0.1 * rand(4, V, seed=10 + seed), t) > entropy
    s = rand(4, V, seed=4).requires_grad_(True)
    distillation_loss(s, t).backward()
    torch.testing.assert_close(s.grad, (torch.softmax(s.detach(), -1) - p) / 4)


def test_top_k_distillation():
    s, t = rand(2, 6, V, seed=5), rand(2, 6, V, seed=6)
    torch.testing.assert_close(distillation_loss(s, t, top_k=V), distillation_loss(s, t))
    idx, probs = teacher_top_k(t, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 6, dtype=torch.float64))
    dense = torch.zeros(2, 6, V, dtype=torch.float64).scatter(-1, idx, probs)  # zero off the top 3
    torch.testing.assert_close(distillation_loss(s, t, top_k=3), distillation_loss(s, teacher_probs=dense))
    torch.testing.assert_close(sparse_distillation_loss(s, idx, probs), distillation_loss(s, t, top_k=3))
    mask = torch.tensor([[True] * 6, [False] * 6])
    torch.testing.assert_close(distillation_loss(s, t, mask=mask), distillation_loss(s[:1], t[:1]))
    with pytest.raises(ShammieError, match="top_k"):
        distillation_loss(s, t, top_k=V + 1)


# ---------------------------------------------------------------------------------------------
def test_sample_next_greedy_and_truncations():
    logits = rand(4, V, seed=7).float()
    greedy = logits.argmax(-1)
    assert torch.equal(sample_next(logits), greedy)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=g), greedy)
    assert torch.equal(sample_next(logits, 1.0, top_p=1e-6, generator=g), greedy)
    top3 = logits.topk(3, -1).indices
    for _ in range(50):
        s = sample_next(logits, 2.0, top_k=3, generator=g)
        assert (top3 == s.unsqueeze(-1)).any(-1).all()
    # top-p keeps the smallest set of most likely tokens whose mass reaches p
    probs = torch.softmax(logits[0], -1)
    order = probs.argsort(descending=True)
    need = int((probs[order].cumsum(0) < 0.7).sum()) + 1
    seen = {int(sample_next(logits[:1], 1.0, top_p=0.7, generator=g)) for _ in range(300)}
    assert seen <= set(order[:need].tolist()) and len(seen) == need


def test_sampling_frequencies_follow_the_tempered_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]])
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([sample_next(logits.expand(2000, 4), 2.0, generator=g) for _ in range(5)]).flatten()
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    expected = torch.softmax(logits[0].double() / 2.0, -1)
    assert (freq - expected).abs().max() < 0.015  # 10k draws: sd of a frequency <= 0.005


@pytest.mark.parametrize("kw", [{}, GEMMA, dict(n_experts=3, expert_top_k=2, position="alibi")],
                         ids=["default", "gemma", "moe"])
def test_cached_generation_equals_the_full_forward_token_by_token(kw):
    m = lm(**kw)
    prompt = torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(3))
    gen = generate(m, prompt, 12, keep_logits=True)
    seq = torch.cat([prompt, gen.tokens], 1)
    full = m(seq)
    for i, step in enumerate(gen.logits):
        torch.testing.assert_close(step, full[:, 4 + i], atol=1e-5, rtol=1e-5)
        assert torch.equal(gen.tokens[:, i], full[:, 4 + i].argmax(-1))
    nocache = generate(m, prompt, 12, use_cache=False, keep_logits=True)
    assert torch.equal(nocache.tokens, gen.tokens)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = generate(m, prompt, 8, temperature=1.0, top_k=5, generator=g1)
    b = generate(m, prompt, 8, temperature=1.0, top_k=5, generator=g2, use_cache=False)
    assert torch.equal(a.tokens, b.tokens)


@pytest.mark.parametrize("kw", [{}, GEMMA], ids=["default", "gemma"])
def test_prompts_of_different_lengths_decode_as_if_alone(kw):
    m = lm(**kw)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 1], [2]]
    batch = generate(m, prompts, 10, keep_logits=True)
    for i, p in enumerate(prompts):
        alone = generate(m, [p], 10, keep_logits=True)
        assert torch.equal(batch.tokens[i], alone.tokens[0])
        torch.testing.assert_close(torch.stack(batch.logits)[:, i], torch.stack(alone.logits)[:, 0],
                                   atol=1e-5, rtol=1e-5)


def test_generation_stops_at_the_end_token():
    m = lm()
    prompt = torch.randint(0, V, (4, 3), generator=torch.Generator().manual_seed(4))
    free = generate(m, prompt, 10)
    eos = int(free.tokens[0, 2])  # row 0 emits this token at step 3 (maybe earlier)
    out = generate(m, prompt, 10, eos_id=eos, pad_id=0)
    for row, n, ref in zip(out.tokens, out.lengths.tolist(), free.tokens):
        cut = (ref == eos).nonzero()
        expect = int(cut[0]) + 1 if len(cut) else 10
        assert n == expect and torch.equal(row[:n], ref[:n])
        assert (row[n:] == 0).all()
    assert out.lengths[0] <= 3 and out.rows()[0][-1] == eos
    with pytest.raises(ShammieError, match="outside the vocabulary"):
        generate(m, prompt, 3, eos_id=V)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_equals_brute_force_and_the_closed_form(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert abs(pass_at_k(n, c, k) - brute) < 1e-12
            assert abs(pass_at_k(n, c, k) - (1 - math.comb(n - c, k) / math.comb(n, k))) < 1e-12
    assert pass_at_k(n, 0, 1) == 0.0 and pass_at_k(n, n, 1) == 1.0
    with pytest.raises(ShammieError):
        pass_at_k(n, 0, n + 1)


def test_majority_vote():
    assert majority_vote(["3", "4", "3", None, None, None]) == "3"
    assert majority_vote([2, 1, 1, 2]) == 2  # a tie goes to the first seen
    assert majority_vote([None, None]) is None


def test_per_position_nll_averages_to_the_overall_nll():
    m = lm(**GEMMA)
    w = torch.randint(0, V, (9, 11), generator=torch.Generator().manual_seed(6))
    nll = per_position_nll(m, w, batch_size=4)
    assert nll.shape == (10,)
    with torch.no_grad():
        overall = F.cross_entropy(m(w[:, :-1]).reshape(-1, V), w[:, 1:].reshape(-1)).item()
    assert abs(nll.mean() - overall) < 1e-5


def test_power_law_fit_recovers_a_planted_law():
    x = np.arange(1, 200, dtype=float)
    fit = fit_power_law(x, 0.97 * x**-0.49 + 1.7)
    assert abs(fit["a"] - 0.97) < 1e-4 and abs(fit["b"] + 0.49) < 1e-4 and abs(fit["c"] - 1.7) < 1e-4
    with pytest.raises(ShammieError):
        fit_power_law([0, 1, 2, 3], [1, 2, 3, 4])


def test_stdlib_corpus_is_deterministic_and_split_by_position():
    a, b = stdlib_corpus(max_chars=20_000), stdlib_corpus(max_chars=20_000)
    assert a.sha256 == b.sha256 and a.python and a.files == sorted(a.files)
    assert len(a.train) + len(a.val) == len(a.text) == 20_000 and len(a.val) == 2000
    assert a.decode(torch.cat([a.train, a.val]).tolist()) == a.text
    assert a.encode(a.text[:50]) == a.train[:50].tolist()
    w = random_windows(a.train, 9, 5, torch.Generator().manual_seed(0))
    assert w.shape == (5, 9) and int(w.max()) < a.vocab_size


# ---------------------------------------------------------------------------------------------
def test_warmup_cosine():
    f = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert f[0] == 0.1 and f[9] == 1.0 and f[10] == 1.0 and all(x > y for x, y in zip(f[10:], f[11:]))
    assert warmup_cosine(0, 100, 0.05) == warmup_cosine(0, 100, 5) == 0.2


def test_next_token_loss_on_sequences_and_on_completion_pairs():
    m = lm()
    seq = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = F.cross_entropy(m(seq[:, :-1]).reshape(-1, V), seq[:, 1:].reshape(-1))
        torch.testing.assert_close(next_token_loss(m, seq), expected)
        targets = mask_prompt(seq[:, 1:], [4, 4, 4])
        torch.testing.assert_close(next_token_loss(m, (seq[:, :-1], targets)),
                                   completion_loss(m(seq[:, :-1]), targets))


def _periodic_batches(seed: int):
    g = torch.Generator().manual_seed(seed)
    pattern = torch.tensor([1, 2, 3, 4, 5, 6] * 6)

    def next_batch(step):
        start = torch.randint(0, 6, (8,), generator=g)
        return torch.stack([pattern[s : s + 17] for s in start.tolist()])

    return next_batch


def test_train_lm_learns_a_periodic_sequence_and_is_deterministic():
    runs = []
    for _ in range(2):
        m = lm(seed=3, **GEMMA)
        counter = itertools.count(1)
        hist = train_lm(m, _periodic_batches(0), steps=60, lr=1e-2, warmup=5, log_every=20,
                        evaluate=lambda model, n=counter: {"val": float(next(n))}, eval_every=30)
        runs.append((hist, [p.detach().clone() for p in m.parameters()]))
    hist = runs[0][0]
    assert hist["step"] == [20, 40, 60] and hist["eval_step"] == [30, 60] and hist["val"] == [1.0, 2.0]
    assert hist["loss"][-1] < 0.2 < hist["loss"][0]
    assert runs[0][0]["loss"] == runs[1][0]["loss"]
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1], runs[1][1]))
    assert not m.training


def test_train_lm_adds_the_balancing_loss_and_stops_on_nan():
    m = lm(n_experts=4, expert_top_k=2)
    seen = []

    def loss_fn(model, batch):
        loss = completion_loss(model(batch[:, :-1]), batch[:, 1:])
        seen.append(model.aux_loss.item())
        return loss

    train_lm(m, _periodic_batches(1), steps=3, loss_fn=loss_fn)
    assert len(seen) == 3 and all(a >= 2.0 - 1e-6 for a in seen)
    with pytest.raises(ShammieError, match="at step 1"):
        train_lm(m, _periodic_batches(1), steps=3, loss_fn=lambda model, b: torch.tensor(float("nan")))
