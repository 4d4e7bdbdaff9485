"""A tiny decoder-only transformer with a switchable position encoding and an optional attention window.

Positions are *ids* handed in with the tokens (`positions`, shape (B, T)), not the token index, so a
caller can feed plain ids (0, 1, 2, ...), randomized ids (a sorted random subset of a long range,
Ruoss et al. arXiv 2305.16843) or coupled ids (tokens that must interact share an id, Cho et al.
arXiv 2405.20671). The encodings:

- ``learned``: a trained vector per position id, added to the token embedding (GPT-2 style);
  ids must be below ``max_positions``.
- ``sinusoidal``: the fixed sin/cos vector of Vaswani et al., added to the token embedding.
- ``rope``: rotary embedding of queries and keys (Su et al. arXiv 2104.09864), relative.
- ``alibi``: a per-head linear penalty on |id distance| (Press et al. arXiv 2108.12409).
- ``relbias``: a learned per-head bias for each id offset clipped to +-``rel_clip`` (T5-like).
- ``none``: no position information besides the causal mask (NoPE, Kazemnejad et al. arXiv 2305.19466).

Attention is always causal in the *sequence index*. With ``window=w`` a query may also only see keys
whose position id is within w of its own (a local window in id space; with coupled ids this hides
the distractor tokens). A query always sees itself, so no row of the mask is empty.

The model keeps a key/value cache for greedy decoding (`forward(..., cache=...)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .core import ShammieError
from .models import count_parameters

__all__ = [
    "POSITION_ENCODINGS",
    "TinyTransformer",
    "TransformerSpec",
    "LayerCache",
    "sinusoidal_table",
    "alibi_slopes",
    "count_parameters",
]

POSITION_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "relbias", "none")
_ABSOLUTE = ("learned", "sinusoidal")


def sinusoidal_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The sin/cos position vectors of Vaswani et al. for integer `positions` (any shape) -> (..., dim)."""
    if dim % 2:
        raise ShammieError(f"sinusoidal positions need an even d_model, got {dim}")
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angle = positions.to(torch.float32).unsqueeze(-1) * freq
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... (Press et al., sec. 3)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


@dataclass(frozen=True)
class TransformerSpec:
    """The shape of a TinyTransformer (what is needed to rebuild it)."""

    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 1
    d_ff: int = 256
    position: str = "learned"
    max_positions: int = 128
    window: int | None = None
    rel_clip: int = 8
    dropout: float = 0.0


@dataclass
class LayerCache:
    """Cached keys, values and key position ids of one layer (keys already rotated for RoPE)."""

    k: torch.Tensor  # (B, H, S, dh)
    v: torch.Tensor  # (B, H, S, dh)
    pos: torch.Tensor  # (B, S)


class _Block(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + FFN(LN(x)) with a ReLU FFN (cheaper than GELU on a CPU)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.dropout = dropout


class TinyTransformer(nn.Module):
    """Decoder-only transformer: embedding (+ absolute positions), pre-LN blocks, final LN, linear head.

    `forward(tokens, positions)` returns next-token logits of shape (B, T, vocab_size). `positions`
    defaults to 0..T-1. `key_padding_mask` (B, T), True at padding, hides those keys (with right
    padding the causal mask already does). The model is small enough to train in about a minute on
    one CPU thread at d_model=64, one or two layers.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        d_ff: int = 256,
        position: str = "learned",
        max_positions: int = 128,
        window: int | None = None,
        rel_clip: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        if position not in POSITION_ENCODINGS:
            raise ShammieError(f"unknown position encoding {position!r}: choose one of {', '.join(POSITION_ENCODINGS)}")
        if vocab_size < 2:
            raise ShammieError(f"vocab_size must be >= 2, got {vocab_size}")
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ShammieError(f"d_model ({d_model}) must be a positive multiple of n_heads ({n_heads})")
        if n_layers < 1 or d_ff < 1:
            raise ShammieError(f"n_layers and d_ff must be >= 1, got {n_layers}, {d_ff}")
        if position == "rope" and (d_model // n_heads) % 2:
            raise ShammieError(f"rope needs an even head dimension; d_model/n_heads = {d_model // n_heads}")
        if max_positions < 1:
            raise ShammieError(f"max_positions must be >= 1, got {max_positions}")
        if window is not None and window < 0:
            raise ShammieError(f"window must be None or >= 0, got {window}")
        if not 0.0 <= dropout < 1.0:
            raise ShammieError(f"dropout must be in [0, 1), got {dropout}")
        self.spec = TransformerSpec(vocab_size, d_model, n_heads, n_layers, d_ff, position, max_positions,
                                    window, rel_clip, dropout)
        self.head_dim = d_model // n_heads
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_positions, d_model) if position == "learned" else None
        self.rel_bias = nn.Parameter(torch.zeros(2 * rel_clip + 1, n_heads)) if position == "relbias" else None
        if position == "alibi":
            self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)
        else:
            self.slopes = None
        if position == "rope":
            half = self.head_dim // 2
            inv = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float32) / half))
            self.register_buffer("rope_freq", inv, persistent=False)
        else:
            self.rope_freq = None
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # ------------------------------------------------------------------------------------------
    @property
    def position(self) -> str:
        """The position encoding's name."""
        return self.spec.position

    def check_positions(self, positions: torch.Tensor) -> None:
        """Raise a ShammieError when `positions` holds ids this model cannot encode."""
        if positions.numel() == 0:
            return
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0:
            raise ShammieError(f"position ids must be >= 0, got {lo}")
        if self.pos_embed is not None and hi >= self.spec.max_positions:
            raise ShammieError(
                f"position id {hi} is beyond what learned absolute positions support (ids 0..{self.spec.max_positions - 1}): "
                f"a sequence this long needs max_positions >= {hi + 1} when the model is built (and trained), "
                "or an encoding that extrapolates (rope, alibi, relbias, none, sinusoidal)")

    def _rope_tables(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (B, 1, T, dh) for rotating (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)."""
        angle = pos.to(torch.float32).unsqueeze(-1) * self.rope_freq  # (B, T, half)
        cos, sin = angle.cos(), angle.sin()
        return torch.cat([cos, cos], -1).unsqueeze(1), torch.cat([-sin, sin], -1).unsqueeze(1)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotary embedding of x (..., T, dh): pairs (x_i, x_{i+dh/2}) rotated by their position's angles."""
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([x2, x1], dim=-1) * sin

    def _bias(self, qpos: torch.Tensor, kpos: torch.Tensor, key_padding_mask: torch.Tensor | None,
              causal_offset: int, segments: torch.Tensor | None = None) -> torch.Tensor:
        """Additive attention bias (B, H or 1, Tq, Tk): position bias, -inf where masked."""
        tq, tk = qpos.shape[1], kpos.shape[1]
        rel = kpos.unsqueeze(1) - qpos.unsqueeze(2)  # (B, Tq, Tk): key id - query id
        qi = torch.arange(tq, device=qpos.device).unsqueeze(1) + causal_offset
        ki = torch.arange(tk, device=qpos.device).unsqueeze(0)
        allowed = (ki <= qi).unsqueeze(0)  # causal in sequence index
        if self.spec.window is not None:
            allowed = allowed & (rel.abs() <= self.spec.window)
        if key_padding_mask is not None:
            allowed = allowed & ~key_padding_mask.unsqueeze(1)
        if segments is not None:
            allowed = allowed & (segments.unsqueeze(1) == segments.unsqueeze(2))
        allowed = allowed | (ki == qi).unsqueeze(0)  # a query always sees itself
        neg = torch.zeros(allowed.shape, dtype=torch.float32, device=qpos.device)
        neg = neg.masked_fill(~allowed, float("-inf")).unsqueeze(1)  # (B, 1, Tq, Tk)
        if self.spec.position == "alibi":
            return neg - self.slopes.view(1, -1, 1, 1) * rel.abs().unsqueeze(1).to(torch.float32)
        if self.spec.position == "relbias":
            c = self.spec.rel_clip
            idx = rel.clamp(-c, c) + c
            return neg + self.rel_bias[idx].permute(0, 3, 1, 2)
        return neg

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
        return_attention: bool = False,
        return_hidden: bool = False,
    ):
        """Next-token logits (B, T, vocab).

        With `return_hidden` the final (layer-normed) hidden states (B, T, d_model) are returned
        instead of the logits (`model.head(h)` gives the logits), so a loss can apply the head only
        where it is needed.

        `segments` (B, T) packs several sequences into one row: a token attends only to earlier
        tokens of its own segment (give each sequence of a row its own id, padding its own too).
        With `cache` (a list, empty at the first call) the new keys/values are appended to it and
        the tokens are taken to follow the cached ones; with `return_attention` the per-layer
        attention weights (B, H, T, T_keys) are returned too, as `(logits, [weights per layer])`.
        """
        if tokens.dim() != 2:
            raise ShammieError(f"tokens must have shape (batch, time), got {tuple(tokens.shape)}")
        b, t = tokens.shape
        past = cache[0].k.shape[2] if cache else 0
        if positions is None:
            positions = torch.arange(past, past + t, device=tokens.device).expand(b, t)
        if positions.shape != tokens.shape:
            raise ShammieError(f"positions {tuple(positions.shape)} must have the shape of tokens {tuple(tokens.shape)}")
        self.check_positions(positions)
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.spec.vocab_size:
            raise ShammieError(f"token ids must lie in 0..{self.spec.vocab_size - 1}")
        x = self.embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        elif self.spec.position == "sinusoidal":
            x = x + sinusoidal_table(positions, self.spec.d_model)
        kpos = torch.cat([cache[0].pos, positions], dim=1) if cache else positions
        if (key_padding_mask is not None or segments is not None) and cache:
            raise ShammieError("key_padding_mask and segments cannot be combined with a cache; pad on the right instead")
        if segments is not None and segments.shape != tokens.shape:
            raise ShammieError(f"segments {tuple(segments.shape)} must have the shape of tokens {tuple(tokens.shape)}")
        bias = self._bias(positions, kpos, key_padding_mask, past, segments)
        rope = self._rope_tables(positions) if self.rope_freq is not None else None
        attn_maps = []
        new_cache = []
        h, dh = self.spec.n_heads, self.head_dim
        for li, blk in enumerate(self.blocks):
            y = blk.ln1(x)
            qkv = blk.qkv(y).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)
            if rope is not None:
                q, k = self._rope(qkv[:2], *rope).unbind(0)
                v = qkv[2]
            else:
                q, k, v = qkv.unbind(0)
            if cache:
                k = torch.cat([cache[li].k, k], dim=2)
                v = torch.cat([cache[li].v, v], dim=2)
            if cache is not None:
                new_cache.append(LayerCache(k, v, kpos))
            if return_attention:
                w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
                attn_maps.append(w.detach())
                out = w @ v
            else:
                drop = self.spec.dropout if self.training else 0.0
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)
            out = out.transpose(1, 2).reshape(b, t, h * dh)
            out = blk.proj(out)
            if self.training and self.spec.dropout:
                out = F.dropout(out, self.spec.dropout)
            x = x + out
            y = blk.ff2(F.relu(blk.ff1(blk.ln2(x))))
            if self.training and self.spec.dropout:
                y = F.dropout(y, self.spec.dropout)
            x = x + y
        if cache is not None:
            cache[:] = new_cache
        hidden = self.ln_f(x)
        logits = hidden if return_hidden else self.head(hidden)
        return (logits, attn_maps) if return_attention else logits
