"""Facts about the tiny transformer: masking (padding, packing, causality, window), the KV cache,
relative encodings, extrapolation, agreement with torch.nn.TransformerEncoderLayer, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shammie.core import ShammieError
from shammie.transformer import POSITION_ENCODINGS, TinyTransformer, alibi_slopes, sinusoidal_table

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
