"""Facts about the tiny transformer: masking (padding, packing, causality, window), the KV cache,
relative encodings, extrapolation, agreement with torch.nn.TransformerEncoderLayer and SDPA, clear
errors; and the language-model options: GQA/MQA, local/global layers and their receptive field,
soft-caps, norms, GeGLU, tied embeddings, mixture of experts, parameter counts, non-token inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shammie.core import ShammieError
from shammie.transformer import (
    POSITION_ENCODINGS,
    RMSNorm,
    TinyTransformer,
    alibi_slopes,
    count_parameters,
    layer_kinds,
    sinusoidal_table,
    sliding_window_mask,
    softcap,
)

V = 20
RELATIVE = ("rope", "alibi", "relbias", "none")




def make(position: str, window=None, n_layers: int = 2, seed: int = 0, **kw) -> TinyTransformer:
    torch.manual_seed(seed)
    m = TinyTransformer(V, d_model=32, n_heads=4, n_layers=n_layers, d_ff=48, position=position, max_positions=64,
                        window=window, rel_clip=3, **kw)
    # move the zero-initialised relative bias and small weights off their trivial values
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def tokens(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(2, V, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
@pytest.mark.parametrize("window", [None, 2])
def test_right_padding_and_batching_do_not_change_outputs(position, window):
    m = make(position, window)
    x = tokens(1, 7)
    pos = torch.tensor([[0, 1, 2, 3, 1, 2, 3]])  # coupled-style ids (repeats) must work too
    alone = m(x, pos)
    other = tokens(1, 12, seed=5)
    batch = torch.zeros(2, 12, dtype=torch.long)
    bpos = torch.zeros(2, 12, dtype=torch.long)
    batch[0, :7], bpos[0, :7] = x[0], pos[0]
    batch[1], bpos[1] = other[0], torch.arange(12)
    together = m(batch, bpos)
    torch.testing.assert_close(together[0, :7], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1:], m(other, torch.arange(12)[None]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
def test_left_padding_with_key_padding_mask(position):
    m = make(position, window=3)
    x = tokens(1, 6)
    pos = torch.arange(6)[None]
    alone = m(x, pos)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), x], 1)
    ppos = torch.cat([torch.zeros(1, 4, dtype=torch.long), pos], 1)
    mask = torch.tensor([[True] * 4 + [False] * 6])
    out = m(padded, ppos, key_padding_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 4:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
def test_packed_segments_equal_separate_sequences(position):
    m = make(position)
    a, b = tokens(1, 5, seed=2), tokens(1, 8, seed=3)
    pa, pb = torch.arange(5)[None] + 3, torch.arange(8)[None]
    row = torch.cat([a, b], 1)
    pos = torch.cat([pa, pb], 1)
    seg = torch.tensor([[0] * 5 + [1] * 8])
    out = m(row, pos, segments=seg)
    torch.testing.assert_close(out[:, :5], m(a, pa), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 5:], m(b, pb), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
def test_causal_future_tokens_do_not_matter(position):
    m = make(position)
    x = tokens(2, 9)
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % V
    torch.testing.assert_close(m(x)[:, :6], m(y)[:, :6])
    assert not torch.allclose(m(x)[:, 6:], m(y)[:, 6:])


@pytest.mark.parametrize("position", ["relbias", "rope", "none"])
def test_window_hides_tokens_far_in_id_space(position):
    m = make(position, window=2, n_layers=1)
    x = tokens(1, 10)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 2, 3, 4, 5]])  # the last query has id 5
    base = m(x, pos)[0, -1]
    far = x.clone()
    far[0, 1] = (far[0, 1] + 1) % V  # id 1: |5 - 1| > 2, outside the window of the last query
    torch.testing.assert_close(m(far, pos)[0, -1], base)
    near = x.clone()
    near[0, 4] = (near[0, 4] + 1) % V  # id 4: inside
    assert not torch.allclose(m(near, pos)[0, -1], base)


@pytest.mark.parametrize("position", RELATIVE)
def test_relative_encodings_ignore_a_shift_of_all_ids(position):
    m = make(position, window=3)
    x = tokens(2, 9)
    pos = torch.arange(9).expand(2, 9)
    torch.testing.assert_close(m(x, pos), m(x, pos + 37), atol=1e-4, rtol=1e-4)


def test_absolute_encodings_depend_on_the_shift():
    for position in ("learned", "sinusoidal"):
        m = make(position)
        x = tokens(1, 9)
        pos = torch.arange(9)[None]
        assert not torch.allclose(m(x, pos), m(x, pos + 20))


@pytest.mark.parametrize("position", RELATIVE + ("sinusoidal",))
def test_extrapolating_encodings_accept_ids_never_seen(position):
    m = make(position)
    x = tokens(1, 150)
    out = m(x)  # ids 0..149, beyond max_positions=64
    assert out.shape == (1, 150, V) and torch.isfinite(out).all()


def test_learned_positions_beyond_the_table_are_explained():
    m = make("learned")
    with pytest.raises(ShammieError, match="max_positions >= 100"):
        m(tokens(1, 100))


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
@pytest.mark.parametrize("window", [None, 1])
def test_kv_cache_matches_full_forward(position, window):
    m = make(position, window)
    x = tokens(3, 11)
    pos = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6]).expand(3, 11)
    full = m(x, pos)
    cache: list = []
    parts = [m(x[:, :4], pos[:, :4], cache=cache)]
    for t in range(4, 11):
        parts.append(m(x[:, t : t + 1], pos[:, t : t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_attention_weights_are_distributions_over_allowed_keys():
    m = make("relbias", window=2)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
    _, maps = m(tokens(1, 8), pos, return_attention=True)
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
        i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        forbidden = (j > i) | ((i - j).abs() > 2)
        assert (w[..., forbidden] == 0).all()


def test_matches_torch_transformer_encoder_layer():
    """With no position encoding, one block equals nn.TransformerEncoderLayer (pre-LN, ReLU) with a causal mask."""
    torch.manual_seed(0)
    m = TinyTransformer(V, d_model=32, n_heads=4, n_layers=1, d_ff=48, position="none").eval()
    ref = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, activation="relu", batch_first=True, norm_first=True).eval()
    blk = m.blocks[0]
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(blk.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(blk.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(blk.proj.weight)
        ref.self_attn.out_proj.bias.copy_(blk.proj.bias)
        ref.linear1.load_state_dict(blk.ff1.state_dict())
        ref.linear2.load_state_dict(blk.ff2.state_dict())
        ref.norm1.load_state_dict(blk.ln1.state_dict())
        ref.norm2.load_state_dict(blk.ln2.state_dict())
    x = tokens(2, 10)
    causal = nn.Transformer.generate_square_subsequent_mask(10)
    with torch.no_grad():
        expected = m.head(m.ln_f(ref(m.embed(x), src_mask=causal, is_causal=True)))
        torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-5)


def test_helpers():
    t = sinusoidal_table(torch.tensor([0, 3]), 8)
    assert t.shape == (2, 8)
    torch.testing.assert_close(t[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    s = alibi_slopes(8)
    torch.testing.assert_close(s[0], torch.tensor(0.5))
    assert torch.all(s[1:] < s[:-1])


def test_bad_arguments_are_explained():
    with pytest.raises(ShammieError, match="unknown position encoding"):
        TinyTransformer(V, position="t5")
    with pytest.raises(ShammieError, match="multiple of n_heads"):
        TinyTransformer(V, d_model=30, n_heads=4)
    with pytest.raises(ShammieError, match="even head dimension"):
        TinyTransformer(V, d_model=12, n_heads=4, position="rope")
    with pytest.raises(ShammieError, match="window"):
        TinyTransformer(V, window=-1)
    m = make("rope")
    with pytest.raises(ShammieError, match="shape"):
        m(tokens(1, 5), torch.arange(4)[None])
    with pytest.raises(ShammieError, match="token ids"):
        m(torch.tensor([[0, V]]))
    with pytest.raises(ShammieError, match=">= 0"):
        m(tokens(1, 3), torch.tensor([[0, -1, 1]]))


# ---------------------------------------------------------------------------------------------
# The language-model options (issue 16): GQA, local/global layers, soft-caps, norms, GeGLU, tied
# embeddings, mixture of experts, KV cache for every layer kind, non-token inputs
# ---------------------------------------------------------------------------------------------
GEMMA = dict(n_kv_heads=2, layer_pattern="LG", sliding_window=3, attn_softcap=5.0, final_softcap=4.0,
             norm="rmsnorm", post_norm=True, ffn="geglu", bias=False, tie_embeddings=True,
             scale_embeddings=True)
CONFIGS = {
    "default": {},
    "gqa": dict(n_kv_heads=2),
    "mqa": dict(n_kv_heads=1, position="alibi"),
    "local": dict(layer_pattern="L", sliding_window=2),
    "local-global": dict(layer_pattern="LG", sliding_window=3, position="relbias"),
    "caps": dict(attn_softcap=2.0, final_softcap=3.0),
    "gemma": dict(GEMMA, position="rope"),
    "moe": dict(n_experts=4, expert_top_k=2, ffn="geglu", layer_pattern="GL", sliding_window=2),
    "head_dim": dict(head_dim=6, n_kv_heads=2, attn_scale=0.3, position="rope"),
}


def make_lm(n_layers: int = 2, seed: int = 0, position: str = "none", **kw) -> TinyTransformer:
    """A model with the given options and generic (perturbed) weights."""
    torch.manual_seed(seed)
    m = TinyTransformer(V, d_model=32, n_heads=4, n_layers=n_layers, d_ff=48, position=position,
                        max_positions=64, rel_clip=3, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def test_softcap_is_a_bounded_odd_increasing_identity_near_zero():
    x = torch.linspace(-1e4, 1e4, 20001, dtype=torch.float64)
    y = softcap(x, 30.0)
    assert (y.abs() <= 30.0).all() and (y.abs()[x.abs() < 100] < 30.0).all()
    torch.testing.assert_close(softcap(-x, 30.0), -y)
    assert (y[1:] >= y[:-1]).all()
    assert softcap(x, None) is x
    small = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64)
    err = (softcap(small, 30.0) - small).abs()
    assert (err <= small.abs() ** 3 / (3 * 30.0**2) + 1e-15).all()  # relative error <= x^2 / (3 c^2)
    z = torch.zeros((), dtype=torch.float64, requires_grad=True)
    softcap(z, 7.0).backward()
    assert z.grad.item() == 1.0
    with pytest.raises(ShammieError, match="positive"):
        softcap(x, 0.0)


def test_huge_caps_equal_no_caps():
    m = make_lm(**CONFIGS["gemma"])
    x = tokens(2, 12)
    capped = m(x)
    m.reconfigure(attn_softcap=1e9, final_softcap=1e9)
    huge = m(x)
    m.reconfigure(attn_softcap=None, final_softcap=None)
    torch.testing.assert_close(huge, m(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(capped, huge, atol=1e-3)
    assert capped.abs().max() < 4.0  # the final cap bounds the logits


def test_gqa_with_as_many_kv_heads_as_heads_is_mha():
    torch.manual_seed(0)
    a = TinyTransformer(V, d_model=32, n_heads=4, n_layers=2, position="rope", n_kv_heads=4)
    torch.manual_seed(0)
    b = TinyTransformer(V, d_model=32, n_heads=4, n_layers=2, position="rope")
    x = tokens(2, 9)
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)


def _mha_from_gqa(gqa: TinyTransformer) -> TinyTransformer:
    """An MHA model whose K/V projections repeat the GQA ones (query head k*G + g reads KV head k)."""
    spec = gqa.spec
    kw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    kw["n_kv_heads"] = None
    mha = TinyTransformer(**kw).eval()
    state = gqa.state_dict()
    h, kv, dh = spec.n_heads, spec.kv_heads, spec.dh
    for i, _blk in enumerate(gqa.blocks):
        key = f"blocks.{i}.qkv.weight"
        wq, wk, wv = state[key].split([h * dh, kv * dh, kv * dh])
        rep = [w.view(kv, dh, -1).repeat_interleave(h // kv, 0).reshape(h * dh, -1) for w in (wk, wv)]
        state[key] = torch.cat([wq, *rep])
        if spec.bias:
            bq, bk, bv = state[f"blocks.{i}.qkv.bias"].split([h * dh, kv * dh, kv * dh])
            rep = [w.view(kv, dh).repeat_interleave(h // kv, 0).reshape(-1) for w in (bk, bv)]
            state[f"blocks.{i}.qkv.bias"] = torch.cat([bq, *rep])
    mha.load_state_dict(state)
    return mha


@pytest.mark.parametrize("name", ["gqa", "mqa", "gemma", "head_dim"])
def test_gqa_equals_mha_with_repeated_kv_projections(name):
    gqa = make_lm(**CONFIGS[name])
    mha = _mha_from_gqa(gqa)
    x = tokens(2, 11)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-5, rtol=1e-5)
    assert count_parameters(gqa) < count_parameters(mha)


def test_mqa_equals_multi_query_attention_built_by_hand():
    m = make_lm(n_layers=1, n_kv_heads=1)
    blk, x = m.blocks[0], tokens(2, 7)
    e = m.embed(x)
    y = blk.ln1(e)
    w, b = blk.qkv.weight, blk.qkv.bias
    q = (y @ w[:32].T + b[:32]).view(2, 7, 4, 8)  # four query heads
    k = y @ w[32:40].T + b[32:40]  # one key head shared by all
    v = y @ w[40:48].T + b[40:48]
    s = torch.einsum("bthd,bsd->bhts", q, k) / 8**0.5
    s = s.masked_fill(~torch.ones(7, 7, dtype=torch.bool).tril(), float("-inf"))
    out = torch.einsum("bhts,bsd->bthd", s.softmax(-1), v).reshape(2, 7, 32)
    h = e + blk.proj(out)
    h = h + blk.ff2(torch.relu(blk.ff1(blk.ln2(h))))
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.head(m.ln_f(h)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_block_agrees_with_torch_sdpa_enable_gqa(kv):
    """One block computed with torch's own SDPA (is_causal, enable_gqa) gives the model's output, and
    the explicit attention path (asked for by return_attention) gives the same logits."""
    m = make_lm(n_layers=1, n_kv_heads=kv, position="rope")
    blk, x = m.blocks[0], tokens(2, 9)
    with torch.no_grad():
        e = m.embed(x)
        q, k, v = m._qkv(blk, blk.ln1(e), m._rope_tables(torch.arange(9).expand(2, 9)))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv < 4)
        h = e + blk.proj(out.transpose(1, 2).reshape(2, 9, 32))
        h = h + blk.ff2(torch.relu(blk.ff1(blk.ln2(h))))
        torch.testing.assert_close(m(x), m.head(m.ln_f(h)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x, return_attention=True)[0], m(x), atol=1e-5, rtol=1e-5)


def test_sliding_window_mask_rows():
    t = 12
    for w in (1, 3, 5, 12, 40):
        mask = sliding_window_mask(t, w)
        for i in range(t):
            allowed = mask[i].nonzero().flatten().tolist()
            assert len(allowed) == min(i + 1, w) and all(i - w < j <= i for j in allowed)
    assert torch.equal(sliding_window_mask(t, t), torch.ones(t, t, dtype=torch.bool).tril())
    assert torch.equal(sliding_window_mask(t, None), sliding_window_mask(t, 100))
    assert layer_kinds("LG", 5) == ("L", "G", "L", "G", "L")


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
def test_local_layer_with_window_at_least_the_length_is_global(position):
    m = make_lm(position=position, layer_pattern="L", sliding_window=12, n_kv_heads=2)
    x = tokens(2, 12)
    local = m(x)
    torch.testing.assert_close(local, m.reconfigure(layer_pattern="G")(x), atol=0, rtol=0)
    assert not torch.allclose(local, m.reconfigure(layer_pattern="L", sliding_window=4)(x))


def _input_gradient(m: TinyTransformer, x: torch.Tensor, t: int) -> torch.Tensor:
    """|d logits[t] / d input vector[s]| summed per position s (through the embeds hook)."""
    e = m.embed_inputs(x).detach().requires_grad_(True)
    m(x, embeds=e)[0, t].sum().backward()
    return e.grad[0].abs().sum(-1)


def test_stacked_local_layers_have_receptive_field_layers_times_window_minus_one():
    n, w, t = 3, 3, 15
    m = make_lm(n_layers=n, layer_pattern="L", sliding_window=w, position="rope")
    x = tokens(1, 16)
    g = _input_gradient(m, x, t)
    edge = t - n * (w - 1)
    assert (g[:edge] == 0).all() and g[edge] > 0 and (g[edge : t + 1] > 0).all()
    changed = x.clone()
    changed[0, : edge] = (changed[0, : edge] + 1) % V  # everything outside the field
    torch.testing.assert_close(m(changed)[0, t], m(x)[0, t], atol=0, rtol=0)
    m.reconfigure(layer_pattern="LLG")  # one global layer removes the limit
    assert (_input_gradient(m, x, t)[: t + 1] > 0).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_causal_for_every_layer_kind(name):
    m = make_lm(n_layers=3, **CONFIGS[name])
    x = tokens(2, 12)
    base = m(x)
    # bit-exact, but for the mixture of experts: a changed token can move to other experts, and each
    # expert multiplies the rows routed to it as one matrix, whose float rounding per row depends on how
    # many rows there are (7e-7 apart in one test run); a leak from the future would move it by ~1e-2
    atol = 1e-5 if CONFIGS[name].get("n_experts") else 0
    for t in (0, 5, 11):
        y = x.clone()
        y[:, t] = (y[:, t] + 1) % V
        out = m(y)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=atol, rtol=0)
        assert not torch.allclose(out[:, t], base[:, t])


@pytest.mark.parametrize("name", CONFIGS)
def test_kv_cache_matches_full_forward_for_every_layer_kind(name):
    m = make_lm(n_layers=3, **CONFIGS[name])
    x = tokens(3, 13)
    full = m(x)
    cache: list = []
    parts = [m(x[:, :5], cache=cache), m(x[:, 5:7], cache=cache)]
    for t in range(7, 13):
        parts.append(m(x[:, t : t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    for kind, c in zip(m.spec.kinds, cache):
        kept = 13 if kind == "G" else m.spec.sliding_window - 1  # a local layer keeps only its window
        assert c.k.shape[2] == kept and c.length == 13 and c.k.shape[1] == m.spec.kv_heads


def test_kv_cache_with_left_padding():
    m = make_lm(**CONFIGS["gemma"])
    x = tokens(1, 8)
    alone = m(x)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    pad = torch.tensor([[True] * 3 + [False] * 8])
    pos = torch.tensor([[0] * 3 + list(range(8))])
    cache: list = []
    first = m(padded[:, :7], pos[:, :7], key_padding_mask=pad[:, :7], cache=cache)
    rest = [m(padded[:, t : t + 1], pos[:, t : t + 1], cache=cache) for t in range(7, 11)]
    torch.testing.assert_close(torch.cat([first[:, 3:], *rest], 1), alone, atol=1e-5, rtol=1e-5)


def _hand_count(spec) -> int:
    d, h, kv, dh, f, v = spec.d_model, spec.n_heads, spec.kv_heads, spec.dh, spec.d_ff, spec.vocab_size
    b = 1 if spec.bias else 0
    norm = 2 * d if spec.norm == "layernorm" else d
    m = 2 if spec.ffn == "geglu" else 1
    attn = d * (h + 2 * kv) * dh + b * (h + 2 * kv) * dh + h * dh * d + b * d
    if spec.n_experts:
        e, k = spec.n_experts, spec.expert_top_k
        ffn = d * e + e * (d * f // k * m + b * f // k * m + f // k * d + b * d)
    else:
        ffn = d * f * m + b * f * m + f * d + b * d
    block = attn + ffn + norm * (4 if spec.post_norm else 2)
    total = v * d + spec.n_layers * block + norm + (0 if spec.tie_embeddings else v * d + b * v)
    total += spec.max_positions * d if spec.position == "learned" else 0
    return total + ((2 * spec.rel_clip + 1) * h if spec.position == "relbias" else 0)


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_counts_match_the_hand_formula(name):
    m = make_lm(n_layers=3, **CONFIGS[name])
    counts = m.parameter_counts()
    assert counts["total"] == count_parameters(m) == _hand_count(m.spec)
    assert counts["total"] == counts["embedding"] + counts["head"] + counts["blocks"] + sum(
        p.numel() for p in m.ln_f.parameters()) + (m.rel_bias.numel() if m.rel_bias is not None else 0)


def test_moe_active_parameters_equal_the_named_dense_layer():
    moe = make_lm(n_experts=8, expert_top_k=2, ffn="geglu", bias=False)
    dense = make_lm(ffn="geglu", bias=False)
    router = sum(b.moe.router.weight.numel() for b in moe.blocks)
    assert moe.parameter_counts()["active"] - router == dense.parameter_counts()["total"]


def test_moe_routes_each_token_to_exactly_k_experts():
    m = make_lm(n_experts=5, expert_top_k=2)
    m(tokens(3, 10))
    for b in m.blocks:
        choice = b.moe.last_choice
        assert choice.shape == (30, 2) and (choice[:, 0] != choice[:, 1]).all()
        assert ((choice >= 0) & (choice < 5)).all()
    assert m.aux_loss is not None and m.aux_loss.item() >= 2 * 1.0 - 1e-6  # >= 1 per layer (balanced = 1)


def test_moe_with_one_expert_is_the_dense_layer():
    for ffn in ("relu", "geglu"):
        moe, dense = make_lm(n_experts=1, ffn=ffn), make_lm(ffn=ffn, seed=1)
        state = {k: v for k, v in moe.state_dict().items() if ".moe." not in k}
        for i, b in enumerate(moe.blocks):
            state[f"blocks.{i}.ff1.weight"] = b.moe.w1[0].T
            state[f"blocks.{i}.ff1.bias"] = b.moe.b1[0]
            state[f"blocks.{i}.ff2.weight"] = b.moe.w2[0].T
            state[f"blocks.{i}.ff2.bias"] = b.moe.b2[0]
        dense.load_state_dict(state)
        x = tokens(2, 9)
        torch.testing.assert_close(moe(x), dense(x), atol=1e-5, rtol=1e-5)
        assert abs(moe.aux_loss.item() - 2.0) < 1e-6


def test_rmsnorm_and_pre_post_block_identities():
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(RMSNorm(16)(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    m = make_lm(n_layers=2, norm="rmsnorm", post_norm=True, ffn="geglu")
    with torch.no_grad():
        for b in m.blocks:  # sublayers that output zero: the residual stream passes unchanged
            b.proj.weight.zero_(), b.proj.bias.zero_(), b.ff2.weight.zero_(), b.ff2.bias.zero_()
        x = tokens(2, 6)
        torch.testing.assert_close(m(x), m.head(m.ln_f(m.embed(x))))


def test_tied_scaled_embeddings_and_the_embeds_hook():
    m = make_lm(**CONFIGS["gemma"])
    assert not any(n.startswith("head") for n, _ in m.named_parameters())
    x = tokens(2, 8)
    h = m(x, return_hidden=True)
    torch.testing.assert_close(m(x), 4.0 * torch.tanh(h @ m.embed.weight.T / 4.0), atol=1e-5, rtol=1e-5)
    e = m.embed(x) * 32**0.5
    torch.testing.assert_close(m.embed_inputs(x), e)
    torch.testing.assert_close(m(torch.zeros_like(x), embeds=e), m(x), atol=1e-5, rtol=1e-5)
    signal = torch.randn(2, 8, 32)
    where = torch.zeros(2, 8, dtype=torch.bool)
    where[:, 3:5] = True  # two non-token positions
    mixed = m(x, embeds=signal, embeds_mask=where)
    torch.testing.assert_close(mixed[:, :3], m(x)[:, :3], atol=0, rtol=0)
    assert not torch.allclose(mixed[:, 3:], m(x)[:, 3:])
    cache: list = []
    parts = [m(x[:, :4], embeds=signal[:, :4], embeds_mask=where[:, :4], cache=cache)]
    parts += [m(x[:, t : t + 1], embeds=signal[:, t : t + 1], embeds_mask=where[:, t : t + 1], cache=cache)
              for t in range(4, 8)]
    torch.testing.assert_close(torch.cat(parts, 1), mixed, atol=1e-5, rtol=1e-5)


def test_reconfigure_and_rebuild():
    m = make_lm(**CONFIGS["gemma"])
    rebuilt = TinyTransformer(**dataclasses.asdict(m.spec))
    rebuilt.load_state_dict(m.state_dict())
    x = tokens(1, 9)
    torch.testing.assert_close(rebuilt.eval()(x), m(x))
    with pytest.raises(ShammieError, match="cannot reconfigure d_model"):
        m.reconfigure(d_model=8)
    with pytest.raises(ShammieError, match="sliding_window"):
        m.reconfigure(sliding_window=0)


def test_bad_lm_options_are_explained():
    with pytest.raises(ShammieError, match="divisible by n_kv_heads"):
        TinyTransformer(V, n_heads=4, n_kv_heads=3)
    with pytest.raises(ShammieError, match="sliding_window must be >= 1"):
        TinyTransformer(V, layer_pattern="LG", sliding_window=0)
    with pytest.raises(ShammieError, match="give sliding_window"):
        TinyTransformer(V, layer_pattern="LG")
    with pytest.raises(ShammieError, match="layer kinds"):
        TinyTransformer(V, layer_pattern="LX", sliding_window=4)
    with pytest.raises(ShammieError, match="attn_softcap"):
        TinyTransformer(V, attn_softcap=0.0)
    with pytest.raises(ShammieError, match="final_softcap"):
        TinyTransformer(V, final_softcap=-1.0)
    with pytest.raises(ShammieError, match="unknown norm"):
        TinyTransformer(V, norm="batchnorm")
    with pytest.raises(ShammieError, match="unknown ffn"):
        TinyTransformer(V, ffn="swish")
    with pytest.raises(ShammieError, match="expert_top_k"):
        TinyTransformer(V, n_experts=2, expert_top_k=3)
    with pytest.raises(ShammieError, match="divisible by expert_top_k"):
        TinyTransformer(V, d_ff=10, n_experts=4, expert_top_k=3)
    m = make_lm(**CONFIGS["gemma"])
    cache: list = []
    m(tokens(1, 4), cache=cache)
    with pytest.raises(ShammieError, match="segments cannot be combined"):
        m(tokens(1, 4), segments=torch.zeros(1, 4, dtype=torch.long), cache=cache)
    with pytest.raises(ShammieError, match="embeds"):
        m(tokens(1, 4), embeds=torch.zeros(1, 4, 7))


# ---------------------------------------------------------------------------------------------
# The fast CPU paths (hand-written backward passes, grouped attention without repeated K/V, cached
# masks) against the plain autograd formulas they replace
# ---------------------------------------------------------------------------------------------
def _reference_capped_attention(q, k, v, bias, scale, cap):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    s = bias + cap * torch.tanh(scale * (q @ k.transpose(-1, -2)) / cap)
    return torch.softmax(s, dim=-1) @ v


@pytest.mark.parametrize("kv", [4, 2, 1])
@pytest.mark.parametrize("cap", [5.0, 50.0, 1e3])  # 5 and 50: the sigmoid form; 1e3: tanh
@pytest.mark.parametrize("per_head_bias", [False, True])
def test_capped_attention_function_equals_the_formula_with_its_gradients(kv, cap, per_head_bias):
    import shammie.transformer as tr

    g = torch.Generator().manual_seed(kv)
    b, h, t, dh = 2, 4, 6, 8
    x = (3 * torch.randn(b, t, h + 2 * kv, dh, generator=g, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros(b, h if per_head_bias else 1, t, t, dtype=torch.float64)
    bias = bias + (torch.randn(bias.shape, generator=g, dtype=torch.float64) if per_head_bias else 0)
    bias = bias.masked_fill(~sliding_window_mask(t, 3), float("-inf"))
    grad = torch.randn(b, h, t, dh, generator=g, dtype=torch.float64)
    results = []
    for fn in (tr._CappedAttention.apply, _reference_capped_attention):
        x.grad = None
        q, k, v = (p.transpose(1, 2) for p in x.split([h, kv, kv], dim=2))
        out = fn(q, k, v, bias, 0.35, cap)
        out.backward(grad)
        results.append((out.detach(), x.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-12, rtol=1e-10)


def test_rmsnorm_rope_softcap_functions_equal_their_formulas_with_gradients():
    import shammie.transformer as tr

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = (0.3 * torch.randn(8, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tr._RMSNormFunction.apply(a, b, 1e-6), (x, w))
    torch.testing.assert_close(tr._RMSNormFunction.apply(x, w, 1e-6), F.rms_norm(x, (8,), 1 + w, 1e-6))
    angle = torch.randn(3, 5, 1, 4, generator=g, dtype=torch.float64)  # (B, T, 1, dh/2): one angle per position
    cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([-angle.sin(), angle.sin()], -1)
    heads = torch.randn(3, 5, 2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: tr._RopeFunction.apply(a, cos, sin), (heads,))
    h1, h2 = heads.chunk(2, -1)
    torch.testing.assert_close(tr._RopeFunction.apply(heads, cos, sin), heads * cos + torch.cat([h2, h1], -1) * sin)
    y = (40 * torch.randn(4, 7, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: tr._SoftcapFunction.apply(a, 30.0), (y,))
    assert torch.equal(tr._SoftcapFunction.apply(y.float(), 30.0), softcap(y.float(), 30.0))  # same values
    gate = (3 * torch.randn(4, 9, generator=g, dtype=torch.float64)).requires_grad_()  # tails of the gelu too
    up = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tr._GeGLUFunction.apply, (gate, up))
    torch.testing.assert_close(tr._GeGLUFunction.apply(gate, up), F.gelu(gate, approximate="tanh") * up,
                               atol=1e-14, rtol=1e-12)
    big = torch.tensor([-1e30, -3e19, -30.0, -9.0, 0.0, 9.0, 30.0, 3e19, 1e30], requires_grad=True)  # saturated
    ones = torch.ones(9, requires_grad=True)  # ends, cubes that overflow: the limits, no inf or nan in the gradients
    out = tr._GeGLUFunction.apply(big, ones)
    ref = F.gelu(big.detach(), approximate="tanh")
    torch.testing.assert_close(out, ref)
    g_gate, g_up = torch.autograd.grad(out.sum(), (big, ones))
    torch.testing.assert_close(g_gate, torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(g_up, ref)


@pytest.mark.parametrize("config", ["gemma", "caps", "mqa", "local-global", "head_dim", "moe"])
def test_fast_paths_train_like_the_reference_paths(config, monkeypatch):
    """Logits, loss and every parameter gradient of a training step agree with the fast paths off
    (float64: agreement to rounding; float32 within float tolerance)."""
    import shammie.transformer as tr

    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        results = []
        for fast in (True, False):
            monkeypatch.setattr(tr, "_FAST_PATHS", fast)
            m = make_lm(**CONFIGS[config]).to(dtype).train()
            x = tokens(3, 11)
            logits = m(x)
            loss = F.cross_entropy(logits.reshape(-1, V).float(), x.roll(-1, 1).reshape(-1))
            loss.backward()
            results.append((logits.detach(), [p.grad.clone() for p in m.parameters()]))
        torch.testing.assert_close(results[0][0], results[1][0], atol=tol, rtol=tol)
        for a, b in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def test_cached_masks_are_the_sliding_window_masks_and_follow_the_cache():
    m = make_lm(**CONFIGS["gemma"])
    for t in (5, 9, 5):  # a second call with a length already seen uses the cached mask
        x = tokens(2, t)
        fresh = make_lm(**CONFIGS["gemma"])
        torch.testing.assert_close(m(x), fresh(x))
    masks = m.__dict__["_mask_cache"]
    for (q0, tq, k0, tk, sliding, _), bias in masks.items():
        assert (q0, k0, tq) == (0, 0, tk) and bias.shape == (1, 1, tq, tk)
        torch.testing.assert_close(bias[0, 0] == 0, sliding_window_mask(tq, sliding))
    # incremental decoding (keys offset from queries) agrees with the full forward
    x = tokens(2, 9)
    cache: list = []
    steps = [m(x[:, :4], cache=cache)] + [m(x[:, i : i + 1], cache=cache) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), m(x), atol=1e-5, rtol=1e-5)


def test_scaled_embeddings_are_the_scaled_table_rows():
    m = make_lm(**CONFIGS["gemma"])
    x = tokens(2, 7)
    assert torch.equal(m.embed_inputs(x), m.embed(x) * (32 ** 0.5))
