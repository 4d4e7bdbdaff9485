"""Facts about shammie.lengthgen: every generator's answer and scratchpad re-executed by an independent
parser, tokenization, position schemes, batches (loss mask, packing), decoding, failure kinds, the
training loop and clear errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from shammie.config import ConfigError
from shammie.core import ShammieError
from shammie.lengthgen import (
    EOS,
    FORMATS,
    SCHEMES,
    SEP,
    TASKS,
    ExamplePool,
    LengthGenConfig,
    Tokenizer,
    Variant,
    addition_variants,
    batch_loss,
    build_model,
    classify,
    encode_example,
    evaluate_by_length,
    greedy_decode,
    make_example,
    parity_variants,
    position_ids,
    sample_examples,
    train_model,
)
from shammie.transformer import TinyTransformer


def combos():
    for task in TASKS:
        for fmt in FORMATS:
            if task == "copy" and fmt == "short":
                continue
            yield task, fmt


# ------------------------------------------------------------------------------------------
# An independent checker: parse the rendered tokens (not the generator's internals) and re-execute
# ------------------------------------------------------------------------------------------
def split_target(ex):
    """(steps region tokens, answer tokens) of a rendered target, from the tokens alone."""
    target = list(ex.target)
    assert target[-1] == EOS and EOS not in target[:-1]
    body = target[:-1]
    if ex.fmt == "none":
        assert SEP not in body
        return [], body
    cut = len(body) - 1 - body[::-1].index(SEP)
    return body[:cut], body[cut + 1 :]


def chunks(tokens, end=";"):
    out, cur = [], []
    for t in tokens:
        cur.append(t)
        if t == end:
            out.append(cur)
            cur = []
    assert not cur, f"trailing tokens {cur}"
    return out


def check_parity(ex):
    *bits, eq = ex.prompt
    assert eq == "=" and set(bits) <= {"0", "1"} and len(bits) == ex.length
    bits = [int(b) for b in bits]
    steps, answer = split_target(ex)
    assert answer == [str(sum(bits) % 2)]
    state = {"E": 0, "O": 1}
    if ex.fmt == "short":
        assert len(steps) == len(bits)
        s = 0
        for b, tok in zip(bits, steps):
            s = (s + b) % 2
            assert state[tok] == s
    elif ex.fmt == "full":
        s = 0
        parts = chunks(steps)
        assert len(parts) == len(bits)
        for j, part in enumerate(parts):
            close = part.index("]")
            assert part[0] == "[" and [int(t) for t in part[1:close]] == bits[j:]  # the remaining list
            first, old, new, end = part[close + 1 :]
            assert int(first) == bits[j] and state[old] == s  # reads the first element and the old state
            s = (s + int(first)) % 2
            assert state[new] == s and end == ";"


def check_variables(ex):
    *body, q, var, eq = ex.prompt
    assert (q, eq) == ("?", "=")
    stmts = chunks(body)
    assert len(stmts) == ex.length
    env, written = {}, []
    for k, (x, op, ref, end) in enumerate(stmts):
        assert end == ";" and op in (":", "!")
        if k == 0:
            assert ref in ("0", "1") and op == ":"
            v = int(ref)
        else:
            assert ref in env, "reads a variable that was assigned before"
            v = env[ref] ^ (op == "!")
        env[x] = v
        written.append((x, op, ref, v))
    assert var == written[-1][0]
    steps, answer = split_target(ex)
    assert answer == [str(env[var])]
    if ex.fmt == "short":
        assert [int(t) for t in steps] == [w[3] for w in written]
    elif ex.fmt == "full":
        env2 = {}
        for (x, op, ref, v), part in zip(written, chunks(steps), strict=True):
            px, pop, pref, pval, pv, end = part
            assert (px, pop, pref) == (x, op, ref)  # restates the statement
            read = int(ref) if ref in ("0", "1") and not env2 else env2[ref]
            assert int(pval) == read and int(pv) == read ^ (op == "!") == v
            env2[x] = v


def check_addition(ex):
    plus = ex.prompt.index("+")
    a_toks, b_toks = list(ex.prompt[:plus]), list(ex.prompt[plus + 1 : -1])
    assert ex.prompt[-1] == "="
    rev = ex.problem["reverse"]

    def value(toks):
        return int("".join(toks[::-1] if rev else toks))

    a, b = value(a_toks), value(b_toks)
    assert (a, b) == (ex.problem["a"], ex.problem["b"]) and len(a_toks) == len(b_toks)
    m = len(a_toks)
    steps, answer = split_target(ex)
    assert len(answer) == m + 1 and value(answer) == a + b
    lsb = lambda toks: [int(t) for t in (toks if rev else toks[::-1])]  # noqa: E731
    da, db = lsb(a_toks), lsb(b_toks)
    if ex.fmt == "short":
        carry = 0
        assert len(steps) == m
        for i, c in enumerate(steps):
            s = (da[i] if i < len(da) else 0) + (db[i] if i < len(db) else 0) + carry
            carry = s // 10
            assert int(c) == carry
    elif ex.fmt == "full":
        carry, digits = 0, []
        parts = chunks(steps)
        assert len(parts) == m
        for i, part in enumerate(parts):
            # Zhou et al.: what is left of each operand (in the prompt's order), the digits read, the carry
            # in, the column sum as tens (carry out) and ones (sum digit)
            close_a = part.index("]")
            close_b = close_a + 1 + part[close_a + 1 :].index("]")
            assert part[0] == "[" and part[close_a + 1] == "["
            left_a, left_b = lsb(part[1:close_a]), lsb(part[close_a + 2 : close_b])
            assert left_a == da[i:] and left_b == db[i:]  # re-copied, the next digit first when reversed
            x, y, cin, cout, s, end = (int(t) if t != ";" else t for t in part[close_b + 1 :])
            assert x == left_a[0] == da[i] and y == left_b[0] == db[i] and cin == carry
            assert s == (x + y + cin) % 10 and cout == (x + y + cin) // 10
            carry = cout
            digits.append(s)
        assert digits + [carry] == lsb(answer)


def check_copy(ex):
    *xs, eq = ex.prompt
    assert eq == "="
    steps, answer = split_target(ex)
    assert answer == xs
    if ex.fmt == "full":
        for j, part in enumerate(chunks(steps)):
            assert part[0] == "[" and part[1 : 1 + len(xs) - j] == xs[j:] and part[-2] == xs[j]


CHECK = {"parity": check_parity, "variables": check_variables, "addition": check_addition, "copy": check_copy}


@pytest.mark.parametrize("task,fmt", list(combos()))
def test_answers_and_scratchpads_reexecute(task, fmt):
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 7, 12]:
        for _ in range(15):
            ex = make_example(task, n, rng, fmt)
            CHECK[task](ex)
    if task == "addition":
        for rev in (True, False):
            for la, lb in [(1, 4), (5, 2), (3, 3)]:
                CHECK[task](make_example(task, la, rng, fmt, reverse=rev, second_length=lb))


@pytest.mark.parametrize("task,fmt", list(combos()))
def test_lengths_are_as_asked(task, fmt):
    rng = np.random.default_rng(1)
    for n in [1, 4, 9]:
        ex = make_example(task, n, rng, fmt)
        assert ex.length == n
        if task in ("parity", "copy"):
            assert ex.prompt.index("=") == n
        elif task == "variables":
            assert ex.prompt.count(";") == n
        else:
            assert ex.prompt.index("+") == n and len(ex.prompt) == 2 * n + 2
    for la, lb in [(2, 6), (5, 1), (1, 1)]:
        ex = make_example("addition", la, rng, fmt, second_length=lb)
        m = max(la, lb)
        assert ex.prompt.index("+") == m and len(ex.prompt) == 2 * m + 2 and ex.length == m  # zero-padded
        for value, k in ((ex.problem["a"], la), (ex.problem["b"], lb)):
            assert value < 10**k and (k == 1 or value >= 10 ** (k - 1))  # exactly k digits
    exs = sample_examples(task, 200, [3, 5], rng, fmt)
    assert {e.length for e in exs} == {3, 5}


def test_small_cases_by_hand():
    ex = make_example("parity", 4, 0, "short")
    bits = [int(b) for b in ex.prompt[:-1]]
    assert ex.answer == (str(sum(bits) % 2),)
    ex = make_example("addition", 2, 3, "none", reverse=True, second_length=2)
    a = int("".join(ex.prompt[:2])[::-1])
    b = int("".join(ex.prompt[3:5])[::-1])
    assert int("".join(ex.answer)[::-1]) == a + b


def test_tokenization_round_trips():
    tok = Tokenizer()
    rng = np.random.default_rng(2)
    for task, fmt in combos():
        for scheme in SCHEMES:
            ex = make_example(task, 5, rng, fmt)
            ids, align, p = encode_example(ex, tok, scheme, hint_offset=7)
            toks = tok.decode(ids)
            assert tok.encode(toks) == list(ids)
            plain = [t for t in toks if not tok.is_hint(t)]
            assert tuple(plain) == ex.tokens
            assert len(align) == len(ids)
            assert toks[p - 1] == "=" and "=" not in toks[p:] or task == "variables"


def test_hints_pair_the_items_that_interact():
    tok = Tokenizer(n_hints=16)
    ex = make_example("addition", 4, 5, "none", second_length=4)
    ids, _, p = encode_example(ex, tok, "hints", hint_offset=14)
    toks = tok.decode(ids)
    hint_before = {}
    for i in range(1, len(toks)):
        if tok.is_hint(toks[i - 1]):
            hint_before.setdefault(i >= p, []).append(toks[i - 1])
    a_hints, b_hints = hint_before[False][:4], hint_before[False][4:]
    assert a_hints == b_hints == ["h15", "h0", "h1", "h2"]  # cyclic: 14 + 1 .. 14 + 4 mod 16
    assert hint_before[True][:4] == a_hints  # answer digit i shares the hint of operand digit i


def test_unknown_tokens_and_ids_are_errors():
    tok = Tokenizer()
    with pytest.raises(ShammieError, match="not in the vocabulary"):
        tok.encode(["0", "zz"])
    with pytest.raises(ShammieError, match="outside the vocabulary"):
        tok.decode([len(tok)])


def test_position_schemes():
    ex = make_example("parity", 6, 0, "short")
    align = ex.align
    assert list(position_ids("plain", align)) == list(range(len(align)))
    rng = np.random.default_rng(0)
    r = position_ids("randomized", align, rng, max_positions=50, train=True)
    assert len(set(r)) == len(r) and list(r) == sorted(r) and r.max() < 50
    c = position_ids("coupled", align, rng, max_positions=50, train=True)
    start = c[6] - 0  # '=' has coupled index 0
    for j in range(6):  # bit j+1 and scratchpad step j+1 share an id
        assert c[j] == c[7 + j] == start + j + 1
    assert c.max() < 50
    assert position_ids("coupled", align, rng, 50, train=False)[6] == 0
    starts = {position_ids("coupled", align, rng, 50, train=True)[6] for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 50 - max(align) - 1
    with pytest.raises(ShammieError, match="max_positions"):
        position_ids("coupled", align, rng, max_positions=5)
    with pytest.raises(ShammieError, match="unknown position scheme"):
        position_ids("abacus", align)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_loss_mask_covers_exactly_the_targets(scheme):
    tok = Tokenizer()
    exs = sample_examples("addition", 12, range(1, 6), 3, "short")
    pool = ExamplePool(exs, tok, scheme, 0)
    b = pool.batch(range(12), np.random.default_rng(0), 64, train=True)
    for r, ex in enumerate(exs):
        got = [t for t in tok.decode(b.targets[r][b.loss_mask[r]]) if not tok.is_hint(t)]
        assert tuple(got) == ex.target
        n = len(pool.ids[r]) - 1
        assert not b.loss_mask[r, n:].any()  # padding never counts


@pytest.mark.parametrize("position", ["learned", "rope", "relbias", "none"])
def test_packing_gives_the_padded_loss(position):
    tok = Tokenizer()
    exs = sample_examples("parity", 20, range(1, 9), 4, "short")
    pool = ExamplePool(exs, tok, "coupled", 0)
    torch.manual_seed(0)
    m = TinyTransformer(len(tok), d_model=32, n_heads=4, n_layers=2, d_ff=32, position=position, max_positions=64)
    padded = pool.batch(range(20), None, 64, train=False, pack=False)
    packed = pool.batch(range(20), None, 64, train=False, pack=True)
    assert packed.tokens.shape[0] < padded.tokens.shape[0]
    assert packed.loss_mask.sum() == padded.loss_mask.sum()
    torch.testing.assert_close(batch_loss(m, packed), batch_loss(m, padded), atol=1e-5, rtol=1e-5)


def test_answer_needs_the_answer_marker():
    """Answer credit needs the marker: a model that writes the scratchpad and stops gets none, even when its
    last step equals the answer (variable assignment, parity)."""
    from shammie.lengthgen import answer_correct

    for task in ("variables", "parity"):
        ex = make_example(task, 4, 1, "short")
        assert ex.scratch[-1] == ex.answer[0] or task == "parity"
        assert answer_correct(ex, list(ex.target))
        assert not answer_correct(ex, list(ex.scratch) + [EOS])  # the steps, then stop: no marker
        assert not answer_correct(ex, list(ex.target)[:-1])  # no end token
        wrong = list(ex.scratch) + [SEP, "1" if ex.answer[0] == "0" else "0", EOS]
        assert not answer_correct(ex, wrong)
        sloppy = ["0" if t == "1" else t for t in ex.scratch] + [SEP, *ex.answer, EOS]
        assert answer_correct(ex, sloppy)  # answer accuracy forgives wrong steps
    direct = make_example("parity", 5, 0, "none")
    assert answer_correct(direct, [*direct.answer, EOS])
    assert not answer_correct(direct, ["0", *direct.answer, EOS])  # extra tokens before the answer


def test_classify_failure_kinds():
    ex = make_example("parity", 5, 0, "short")
    ref = list(ex.target)
    assert classify(ex, ref) == ("correct", None)
    wrong = ref.copy()
    wrong[2] = "E" if wrong[2] == "O" else "O"
    assert classify(ex, wrong) == ("wrong_step", 3)
    assert classify(ex, ref[:4] + [SEP] + ref[5:]) == ("wrong_length", None)  # answers a step early
    assert classify(ex, ref[:-1] + ["0"]) == ("wrong_length", None)  # does not stop
    bad = ref.copy()
    bad[-2] = "1" if bad[-2] == "0" else "0"
    assert classify(ex, bad) == ("wrong_answer", None)
    assert classify(ex, ["h3"] + ref) == ("correct", None)  # hint tokens are ignored
    direct = make_example("parity", 5, 0, "none")
    assert classify(direct, ["1" if direct.answer[0] == "0" else "0", EOS]) == ("wrong_answer", None)


def test_greedy_decode_with_and_without_cache_agree():
    tok = Tokenizer()
    torch.manual_seed(1)
    m = TinyTransformer(len(tok), d_model=32, n_heads=4, n_layers=2, d_ff=32, position="rope", window=3)
    exs = [make_example("parity", 6, i, "short") for i in range(4)]
    enc = [encode_example(e, tok, "coupled") for e in exs]
    ids = torch.tensor(np.stack([e[0] for e in enc]))
    pos = torch.tensor(np.stack([position_ids("coupled", e[1]) for e in enc]))
    p = enc[0][2]
    a = greedy_decode(m, ids[:, :p], pos, ids.shape[1] - p, use_cache=True)
    b = greedy_decode(m, ids[:, :p], pos, ids.shape[1] - p, use_cache=False)
    assert torch.equal(a, b)


def test_training_loop_overfits_a_handful_of_examples():
    tok = Tokenizer()
    exs = [make_example("parity", n, s, "short") for s, n in enumerate([3, 4, 5, 6, 4, 5])]
    pool = ExamplePool(exs, tok, "plain", 0)
    torch.manual_seed(0)
    m = TinyTransformer(len(tok), d_model=32, n_heads=4, n_layers=2, d_ff=64, position="learned", max_positions=32)
    before = batch_loss(m, pool.batch(range(6), None, 32, train=False)).item()
    hist = train_model(m, pool, steps=150, batch_size=6, lr=1e-2, seed=0, log_every=50)
    after = batch_loss(m, pool.batch(range(6), None, 32, train=False)).item()
    assert before > 1.0 and after < 0.02, (before, after)
    assert hist["step"] == [50, 100, 150] and hist["loss"][-1] < hist["loss"][0]
    for ex, (ids, _align, p) in zip(exs, (encode_example(e, tok, "plain") for e in exs)):
        out = greedy_decode(m, torch.tensor(ids[None, :p]), torch.arange(len(ids))[None], len(ids) - p)
        assert classify(ex, tok.decode(out[0])) == ("correct", None)


def test_training_is_deterministic_for_a_seed():
    tok = Tokenizer()
    exs = sample_examples("parity", 50, range(1, 5), 0, "short")
    runs = []
    for _ in range(2):
        pool = ExamplePool(exs, tok, "randomized", 0)
        torch.manual_seed(3)
        m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=16, position="learned", max_positions=64)
        runs.append(train_model(m, pool, steps=20, batch_size=8, seed=5, log_every=5)["loss"])
    assert runs[0] == runs[1]


def test_evaluate_by_length_counts_and_fixed_test_sets():
    tok = Tokenizer()
    cfg = LengthGenConfig.for_profile("smoke")
    v = Variant("t", "parity", "short", "coupled", "relbias", 2, 1)
    m = build_model(v, cfg, tok, 0)
    ev = evaluate_by_length(m, "parity", [3, 6], fmt="short", scheme="coupled", tokenizer=tok, n_samples=10)
    assert ev.lengths == [3, 6]
    for n in (3, 6):
        assert sum(ev.kinds[n].values()) == 10
        assert ev.exact[n] == ev.kinds[n]["correct"] / 10
        assert len(ev.step_errors[n]) == ev.kinds[n]["wrong_step"]
    ev2 = evaluate_by_length(m, "parity", [3, 6], fmt="short", scheme="coupled", tokenizer=tok, n_samples=10)
    assert ev2.to_dict() == ev.to_dict()


def test_training_goes_through_the_one_lm_loop():
    """train_model is the shared LM loop (shammie.lm.train_lm) fed with this theme's batches: the
    same seed gives the same history, and the schedule is lm.warmup_cosine (covered in test_lm)."""
    tok = Tokenizer()
    pool = ExamplePool(sample_examples("parity", 32, range(1, 5), 0, "short"), tok, "plain", 0)

    def run():
        torch.manual_seed(0)
        m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=32, position="rope", max_positions=64)
        return train_model(m, pool, steps=6, batch_size=4, seed=1, log_every=3)

    first = run()
    assert first == run() and first["step"] == [3, 6] and all(math.isfinite(v) for v in first["loss"])


def test_bad_input_is_explained():
    with pytest.raises(ShammieError, match="unknown task"):
        make_example("sorting", 3, 0)
    with pytest.raises(ShammieError, match="unknown scratchpad format"):
        make_example("parity", 3, 0, "long")
    with pytest.raises(ShammieError, match="copy has no intermediate state"):
        make_example("copy", 3, 0, "short")
    for n in (0, -2, 2.5, True):
        with pytest.raises(ShammieError, match="positive integer"):
            make_example("parity", n, 0)
    with pytest.raises(ShammieError, match="positive integer"):
        sample_examples("parity", 5, [3, 0], 0)
    with pytest.raises(ShammieError, match="unknown position encoding"):
        Variant("x", position="t5")
    with pytest.raises(ShammieError, match="unknown position scheme"):
        Variant("x", scheme="abacus")
    tok = Tokenizer()
    m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=16, position="learned", max_positions=30)
    with pytest.raises(ShammieError, match=r"test length 20 needs position id 42.*max_positions >= 43"):
        evaluate_by_length(m, "parity", [5, 20], fmt="short", scheme="plain", tokenizer=tok, n_samples=2)
    with pytest.raises(ShammieError, match="test length must be a positive integer"):
        evaluate_by_length(m, "parity", [0], tokenizer=tok)


def test_config_profiles_and_validation():
    quick = LengthGenConfig.for_profile("quick")
    assert 3 * quick.train_max <= max(quick.test_lengths) and quick.seeds >= 3 and quick.add_seeds >= 3
    full = LengthGenConfig.for_profile("full")
    assert max(full.test_lengths) >= 100 and max(full.add_test_lengths) >= 60 and full.seeds >= 3
    with pytest.raises(ConfigError, match="unknown profile"):
        LengthGenConfig.for_profile("huge")
    with pytest.raises(ConfigError, match="max_positions"):
        LengthGenConfig.for_profile("quick", max_positions=40)
    with pytest.raises(ConfigError, match="parity_encodings"):
        LengthGenConfig.for_profile("quick", parity_encodings=("learned", "t5"))
    for v in parity_variants(quick) + addition_variants(quick):
        assert dataclasses.replace(v).name == v.name
    names = [v.name for v in parity_variants(quick)]
    assert names[0] == "direct" and names[-2:] == ["coupled + window", "interleaved, relbias"]
    with pytest.raises(ConfigError, match="coupled_max_positions"):
        LengthGenConfig.for_profile("quick", coupled_max_positions=20)
    with pytest.raises(ConfigError, match="parity_schemes"):
        LengthGenConfig.for_profile("quick", parity_schemes=("coupled",))
    smoke = LengthGenConfig.for_profile("smoke")
    extra = [v.name for v in parity_variants(smoke)]
    assert {"scratchpad, randomized", "scratchpad, hints", "coupled + window 1"} <= set(extra)
    from shammie.lengthgen import trace_variants

    for task in ("parity", "addition"):
        short, full = trace_variants(smoke, task)
        assert (short.fmt, full.fmt) == ("short", "full") and dataclasses.replace(short, fmt="full", name="") == \
            dataclasses.replace(full, name="")  # equal steps, depth, encoding: only the trace differs
    with pytest.raises(ShammieError, match="trace arms"):
        trace_variants(smoke, "copy")


def test_coupled_arms_are_cho_et_al_as_published():
    """Coupling as Cho et al. published it: learned absolute embeddings of the coupled ids, with a random
    start in training; the start then changes what the model computes (with a relative bias it could not)."""
    from shammie.lengthgen import variables_variants

    cfg = LengthGenConfig.for_profile("quick")
    for v in parity_variants(cfg) + addition_variants(cfg) + variables_variants(cfg):
        if v.scheme == "coupled" and not (v.task == "addition" and v.window is not None):
            assert v.position == "learned" and v.max_positions == cfg.coupled_max_positions
    tok = Tokenizer(n_hints=0)
    ex = make_example("parity", 6, 0, "short")
    ids, align, _ = encode_example(ex, tok, "coupled")
    x = torch.tensor(ids[None])
    shifted = {}
    for position in ("learned", "relbias"):
        torch.manual_seed(0)
        m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=16, position=position, max_positions=32)
        a = m(x, torch.tensor(align[None]))
        b = m(x, torch.tensor(align[None] + 9))
        shifted[position] = float((a - b).abs().max().detach())
    assert shifted["relbias"] < 1e-5 < shifted["learned"]


def fake_runs():
    """Two seeds of a made-up variant, for the table and figure helpers."""
    from shammie.lengthgen import LengthEval

    runs = []
    for seed, acc in ((0, 1.0), (1, 0.5)):
        kinds = {3: {"correct": 10, "wrong_length": 0, "wrong_step": 0, "wrong_answer": 0},
                 6: {"correct": int(10 * acc), "wrong_length": 1, "wrong_step": 10 - int(10 * acc) - 1, "wrong_answer": 0}}
        ev = LengthEval([3, 6], {3: 1.0, 6: acc}, {3: 1.0, 6: acc}, kinds, {3: [], 6: [2]},
                        [{"length": 6, "kind": "wrong_step", "first_wrong_step": 2, "prompt": "p", "reference": "r",
                          "generated": "g"}])
        runs.append({"variant": Variant("v"), "seed": seed, "eval": ev, "history": {"step": [1, 2], "loss": [1.0, 0.5]}})
    return runs


def test_summaries_and_tables():
    from shammie.lengthgen import failure_counts, failure_examples, results_table, summarize_runs

    runs = fake_runs()
    s = summarize_runs(runs)
    assert s[3] == {"mean": 1.0, "min": 1.0, "max": 1.0, "n": 2} and s[6]["mean"] == 0.75 and s[6]["min"] == 0.5
    with pytest.raises(ShammieError, match="metric"):
        summarize_runs(runs, "bleu")
    table = results_table({"v": runs, "w": runs[:1]})
    assert table.loc["v", 6] == 0.75 and table.loc["w", 6] == 1.0
    counts = failure_counts({"v": runs}, min_length=4)
    assert counts.loc["v"].to_dict() == {"correct": 15, "wrong_length": 2, "wrong_step": 3, "wrong_answer": 0}
    assert failure_counts({"v": runs}).loc["v", "correct"] == 35
    ex = failure_examples({"v": runs}, per_kind=1)
    assert list(ex["kind"]) == ["wrong_step"]


def test_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shammie.data import reference_table
    from shammie.lengthgen import (
        plot_accuracy_by_length,
        plot_attention,
        plot_failure_kinds,
        plot_length_heatmap,
        plot_loss_curves,
        plot_relative_length,
    )

    res = {"v": fake_runs()}
    fig, axes = plt.subplots(1, 6)
    ref = reference_table("lengthgen_kazemnejad2023_parity")
    assert set(ref["position_encoding"]) == {"NoPE", "T5 relative bias", "absolute (sinusoidal)"}
    assert ref["accuracy"].between(0, 1).all() and (ref["test_length"] > ref["train_max"]).all()
    plot_relative_length(res, 4, reference=ref, ax=axes[5])
    assert len(axes[5].lines) == 1 + 3 + 2
    plot_accuracy_by_length(res, 4, ax=axes[0], chance=0.5, title="t")
    plot_length_heatmap(res, 4, ax=axes[1])
    plot_failure_kinds(res, 4, ax=axes[2])
    plot_loss_curves(res, ax=axes[3])
    tok = Tokenizer(n_hints=0)
    m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=2, d_ff=16, position="relbias", window=2)
    plot_attention(m, make_example("parity", 6, 0, "short"), tok, "coupled", ax=axes[4])
    assert axes[4].images and axes[1].images
    plt.close(fig)


def test_coupled_ids_fit_lengths_that_plain_ids_cannot():
    """Coupled ids grow with the number of bits, not of tokens: a learned table of 30 ids cannot hold a
    20-bit parity sequence with plain ids (44 tokens) but holds it with coupled ids (ids up to 22)."""
    tok = Tokenizer(n_hints=0)
    m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=16, position="learned", max_positions=30)
    ev = evaluate_by_length(m, "parity", [20], fmt="short", scheme="coupled", tokenizer=tok, n_samples=3,
                            max_positions=30)
    assert sum(ev.kinds[20].values()) == 3
    with pytest.raises(ShammieError, match="max_positions"):
        evaluate_by_length(m, "parity", [20], fmt="short", scheme="plain", tokenizer=tok, n_samples=3)


def test_lookup_attention_finds_a_planted_one_ahead_head():
    """A head whose only preference is the id offset +1 puts all its weight on the bit each step needs."""
    from shammie.lengthgen import lookup_attention

    tok = Tokenizer(n_hints=0)
    m = TinyTransformer(len(tok), d_model=16, n_heads=2, n_layers=1, d_ff=16, position="relbias", rel_clip=4)
    with torch.no_grad():
        m.blocks[0].qkv.weight[:32] = 0  # no content term in the scores: queries and keys are zero
        m.blocks[0].qkv.bias[:32] = 0
        m.rel_bias.zero_()
        m.rel_bias[4 + 1] = 50.0  # offset +1
    ex = make_example("parity", 12, 0, "short")
    got = lookup_attention(m, ex, tok, "coupled")
    assert got["needed"] > 0.99 and got["other_input"] < 0.01
    m.rel_bias.data.zero_()  # uniform attention: the needed bit is one of many keys
    flat = lookup_attention(m, ex, tok, "coupled")
    assert flat["needed"] < 0.2 < flat["other_input"]


def _press_reference_slopes(n: int) -> list[float]:
    """Press et al.'s rule as their reference code states it: a power of 2 gets the geometric sequence that
    starts at 2^(-2^-(log2(n) - 3)) with that ratio; otherwise the closest lower power of 2's slopes, then
    every other slope of twice that power, as many as are missing."""
    def power_of_2(m):
        start = 2 ** (-(2 ** -(math.log2(m) - 3)))
        return [start * start**i for i in range(m)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    p = 2 ** math.floor(math.log2(n))
    return power_of_2(p) + _press_reference_slopes(2 * p)[0::2][: n - p]


@pytest.mark.parametrize("n", list(range(1, 33)) + [48, 80])
def test_alibi_slopes_match_press_et_al_for_every_head_count(n):
    from shammie.lengthgen import alibi_slopes

    ours = alibi_slopes(n)
    assert ours.shape == (n,)
    torch.testing.assert_close(ours.double(), torch.tensor(_press_reference_slopes(n), dtype=torch.float64),
                               rtol=1e-6, atol=0)
    assert len(set(ours.tolist())) == n  # every head its own slope


def test_alibi_slopes_known_values_and_the_model_uses_them():
    from shammie.lengthgen import alibi_slopes
    from shammie.transformer import alibi_slopes as decoder_slopes

    assert alibi_slopes is decoder_slopes  # one implementation, in the decoder
    # 6 heads: the 4 slopes of 4 heads (1/4, 1/16, 1/64, 1/256), then 2^-1 and 2^-3 from the 8-head sequence
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]))
    with pytest.raises(ShammieError, match="positive integer"):
        alibi_slopes(0)
    cfg = LengthGenConfig.for_profile("smoke", d_model=48, n_heads=6)
    model = build_model(Variant("alibi", "parity", "short", "plain", "alibi"), cfg, Tokenizer(n_hints=0), 0)
    torch.testing.assert_close(model.slopes, alibi_slopes(6))
    # the power-of-2 formula 2^(-8 (h + 1) / n) is wrong for 6 heads: the decoder does not use it
    naive = torch.tensor([2.0 ** (-8.0 * (h + 1) / 6) for h in range(6)])
    assert not torch.allclose(model.slopes, naive)


def test_interleave_removes_the_input_distractors_from_the_data():
    """The interleaved instance: the prompt is the marker alone, each bit comes right before the state that
    reads it, the bits and the answer marker are given; the states re-execute parity; the loss leaves the given
    tokens out; decoding forces them; the evaluation instances are the plain ones rewritten."""
    from shammie.lengthgen import interleave

    for n in (1, 3, 7):
        plain = make_example("parity", n, n, "short")
        ex = interleave(plain)
        assert ex.prompt == ("=",) and ex.answer == plain.answer
        toks = ex.target
        bits = [int(t) for t in toks[0 : 2 * n : 2]]
        assert bits == plain.problem["bits"]
        state = 0
        for j, b in enumerate(bits):  # each state is the previous one xor the bit just before it
            state ^= b
            assert toks[2 * j + 1] == "EO"[state]
        assert toks[2 * n :] == (SEP, str(state), EOS)
        assert len(ex.given) == len(toks)
        assert [t for t, g in zip(toks, ex.given) if g] == [str(b) for b in bits] + [SEP]
    with pytest.raises(ShammieError, match="parity with a short scratchpad"):
        interleave(make_example("parity", 3, 0, "none"))
    with pytest.raises(ShammieError, match="already"):
        interleave(interleave(make_example("parity", 3, 0, "short")))
    with pytest.raises(ShammieError, match="interleaved"):
        Variant("x", "parity", "none", interleaved=True)

    tok = Tokenizer(n_hints=0)
    exs = [interleave(e) for e in sample_examples("parity", 10, range(1, 9), 2, "short")]
    pool = ExamplePool(exs, tok, "plain", 0)
    b = pool.batch(range(10), np.random.default_rng(0), 64, train=True, pack=False)
    for r, ex in enumerate(exs):  # the loss counts exactly the tokens the model writes
        got = tok.decode(b.targets[r][b.loss_mask[r]])
        assert tuple(got) == tuple(t for t, g in zip(ex.target, ex.given) if not g)
    with pytest.raises(ShammieError, match="not hints"):
        ExamplePool(exs, Tokenizer(), "hints", 0)

    # forced decoding: given slots hold the given tokens whatever the model prefers, with or without the cache
    torch.manual_seed(0)
    m = TinyTransformer(len(tok), d_model=32, n_heads=4, n_layers=1, d_ff=32, position="relbias", max_positions=64)
    ex = interleave(make_example("parity", 6, 5, "short"))
    ids, _, p = encode_example(ex, tok, "plain")
    ids = torch.tensor(ids)[None]
    pos = torch.arange(ids.shape[1])[None]
    out = [greedy_decode(m, ids[:, :p], pos, ids.shape[1] - p, use_cache=c, forced=ids[:, p:],
                         force_mask=list(ex.given)) for c in (True, False)]
    assert torch.equal(out[0], out[1])
    g = torch.tensor(ex.given)
    assert torch.equal(out[0][0, g], ids[0, p:][g])
    with pytest.raises(ShammieError, match="both forced and force_mask"):
        greedy_decode(m, ids[:, :p], pos, 3, forced=ids[:, p:])

    # evaluation: the same instances as the plain evaluation, interleaved; a model that writes the right
    # states everywhere scores 1 (checked through classify on the reference itself)
    ev = evaluate_by_length(m, "parity", [3, 5], tokenizer=tok, n_samples=4, scheme="plain", interleaved=True)
    assert set(ev.exact) == {3, 5} and all(sum(k.values()) == 4 for k in ev.kinds.values())
    assert classify(ex, list(ex.target)) == ("correct", None)


def test_parity_arms_include_the_data_level_removal():
    cfg = LengthGenConfig.for_profile("quick")
    arms = {v.name: v for v in parity_variants(cfg)}
    il = arms["interleaved, relbias"]
    assert il.interleaved and il.window is None and il.scheme == "plain" and il.position == "relbias"
    assert "interleaved, relbias" not in {v.name for v in parity_variants(dataclasses.replace(cfg, data_removal=False))}
