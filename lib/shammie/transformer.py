"""The one decoder-only transformer of shammie: switchable positions, windows, GQA, local/global
layers, soft-caps, norms, GeGLU, tied embeddings, mixture-of-experts, KV cache, non-token inputs.

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

Options beside these defaults (each off by default, so a default model is exactly the original
pre-LayerNorm, ReLU, multi-head decoder), mostly after Gemma 2 (arXiv 2408.00118):

- ``n_kv_heads``: grouped-query attention; query head ``k*G + g`` reads KV head ``k`` (G = n_heads /
  n_kv_heads), the layout of ``repeat_interleave`` and of SDPA's ``enable_gqa``. 1 is MQA.
- ``layer_pattern`` (e.g. ``"LG"``, cycled over the layers) with ``sliding_window=W``: a local
  layer ``L`` lets query i see keys j with i - W < j <= i in *sequence index* (W keys including
  itself); a global layer ``G`` sees all earlier keys. Layer 0 takes the pattern's first letter.
- ``attn_softcap`` / ``final_softcap``: ``cap * tanh(x / cap)`` on the attention logits (before the
  mask, as in Gemma's code) and on the output logits.
- ``norm="rmsnorm"`` (Gemma's ``x / rms(x) * (1 + w)``, w initialised to 0) and ``post_norm`` (a
  second norm on each sublayer's output before the residual add).
- ``ffn="geglu"``: ``down(gelu_tanh(gate(x)) * up(x))``; ``d_ff`` is the hidden width of one branch.
- ``bias=False`` drops the biases of the linear layers; ``tie_embeddings`` reads the output logits
  off the token embedding; ``scale_embeddings`` multiplies token embeddings by sqrt(d_model).
- ``head_dim`` (default d_model / n_heads) and ``attn_scale`` (default head_dim^-1/2).
- ``n_experts=E`` with ``expert_top_k=k``: a sparse mixture-of-experts feed-forward; each token goes
  to its k best experts (router softmax, the k weights renormalised) whose hidden width is d_ff / k,
  so the active feed-forward parameters per token equal a dense layer of width d_ff (no biases).
  The Switch-style load-balancing loss of the last forward is ``model.aux_loss``.

`forward(..., embeds=, embeds_mask=)` puts caller-made vectors (e.g. signal patches projected to
d_model) in place of token embeddings, so one decoder reads interleaved modalities. The model keeps
a key/value cache for incremental decoding (`forward(..., cache=[])`); local layers keep only the
last W - 1 keys. The attention runs in `F.scaled_dot_product_attention` unless a cap is set or the
weights are asked for; a capped attention runs in `_CappedAttention` (grouped heads without repeating
K/V, a hand-written backward), and the weights, dropout or a learned bias take an explicit path
(matmul, cap, mask, softmax) that computes the same. On the CPU, RMSNorm, RoPE and the final soft-cap
have hand-written backward passes too (torch differentiates them op by op); masks that depend only on
the sequence indices are built once per shape and cached. `_FAST_PATHS = False` turns these off.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .core import ShammieError
from .models import count_parameters

__all__ = [
    "POSITION_ENCODINGS",
    "LAYER_KINDS",
    "NORMS",
    "FFNS",
    "TinyTransformer",
    "TransformerSpec",
    "LayerCache",
    "RMSNorm",
    "MoEFeedForward",
    "softcap",
    "sliding_window_mask",
    "layer_kinds",
    "sinusoidal_table",
    "alibi_slopes",
    "count_parameters",
]

POSITION_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "relbias", "none")
LAYER_KINDS = ("G", "L")  # global, local (sliding window)
NORMS = ("layernorm", "rmsnorm")
FFNS = ("relu", "geglu")
_ABSOLUTE = ("learned", "sinusoidal")
# the hand-differentiated CPU kernels below (RMSNorm, RoPE, final soft-cap, capped attention); False takes
# the plain autograd formulas they replace (the tests compare the two)
_FAST_PATHS = True
_SIGMOID_CAP_MAX = 64.0  # attention caps up to this take the sigmoid form in `_CappedAttention`
# options that change no parameter shape: `TinyTransformer.reconfigure` may change them after training
_RECONFIGURABLE = ("window", "layer_pattern", "sliding_window", "attn_softcap", "final_softcap")


def sinusoidal_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The sin/cos position vectors of Vaswani et al. for integer `positions` (any shape) -> (..., dim)."""
    if dim % 2:
        raise ShammieError(f"sinusoidal positions need an even d_model, got {dim}")
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angle = positions.to(torch.float32).unsqueeze(-1) * freq
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's head slopes for any number of heads (Press et al., arXiv 2108.12409, sec. 3 and their code).

    For a power of 2, n: the geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8). Otherwise, with p the
    closest power of 2 below n: the p slopes of p heads, then the first n - p slopes taken at every other
    place (the odd-numbered ones) from the 2p slopes of 2p heads, i.e. 2^(-4 (2k + 1) / p), k = 0 .. n-p-1.
    """
    try:
        n = operator.index(n_heads)  # int or numpy integer, not float or bool-as-count
    except TypeError:
        n = 0
    if isinstance(n_heads, bool) or n < 1:
        raise ShammieError(f"n_heads must be a positive integer, got {n_heads!r}")
    p = 1 << (n.bit_length() - 1)  # the largest power of 2 <= n
    slopes = [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)]
    slopes += [2.0 ** (-4.0 * (2 * k + 1) / p) for k in range(n - p)]
    return torch.tensor(slopes, dtype=torch.float32)


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma 2's soft-cap ``cap * tanh(x / cap)``: odd, increasing, slope 1 at 0, bounded by cap; None = identity."""
    if cap is None:
        return x
    if cap <= 0:
        raise ShammieError(f"a soft-cap must be positive (or None), got {cap}")
    return cap * torch.tanh(x / cap)


def sliding_window_mask(t: int, window: int | None, device=None) -> torch.Tensor:
    """Boolean (t, t) mask, True where query i may see key j: i - window < j <= i (causal when window is None)."""
    if window is not None and window < 1:
        raise ShammieError(f"sliding_window must be >= 1, got {window}")
    i = torch.arange(t, device=device).unsqueeze(1)
    j = torch.arange(t, device=device).unsqueeze(0)
    allowed = j <= i
    return allowed if window is None else allowed & (j > i - window)


def layer_kinds(pattern: str, n_layers: int) -> tuple[str, ...]:
    """The kind ('G' global or 'L' local) of each layer: `pattern` cycled over `n_layers` layers."""
    if not pattern or any(c not in LAYER_KINDS for c in pattern):
        raise ShammieError(f"layer_pattern {pattern!r} must be a non-empty string of the layer kinds "
                           f"{'/'.join(LAYER_KINDS)} (G = global attention, L = local sliding window)")
    return tuple(pattern[i % len(pattern)] for i in range(n_layers))


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
    n_kv_heads: int | None = None
    head_dim: int | None = None
    layer_pattern: str = "G"
    sliding_window: int | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    norm: str = "layernorm"
    post_norm: bool = False
    ffn: str = "relu"
    bias: bool = True
    tie_embeddings: bool = False
    scale_embeddings: bool = False
    attn_scale: float | None = None
    n_experts: int = 0
    expert_top_k: int = 1

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads (n_heads unless grouped-query attention is asked for)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def dh(self) -> int:
        """The head dimension."""
        return self.head_dim if self.head_dim is not None else self.d_model // max(self.n_heads, 1)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kind of each layer ('G' global or 'L' local)."""
        return layer_kinds(self.layer_pattern, self.n_layers)

    def validate(self) -> None:
        """Raise a ShammieError that names the bad option."""
        s = self
        if s.position not in POSITION_ENCODINGS:
            raise ShammieError(f"unknown position encoding {s.position!r}: choose one of {', '.join(POSITION_ENCODINGS)}")
        if s.vocab_size < 2:
            raise ShammieError(f"vocab_size must be >= 2, got {s.vocab_size}")
        if s.head_dim is None and (s.d_model < 1 or s.n_heads < 1 or s.d_model % s.n_heads):
            raise ShammieError(f"d_model ({s.d_model}) must be a positive multiple of n_heads ({s.n_heads})")
        if s.head_dim is not None and (s.head_dim < 1 or s.n_heads < 1 or s.d_model < 1):
            raise ShammieError(f"d_model, n_heads and head_dim must be >= 1, got {s.d_model}, {s.n_heads}, {s.head_dim}")
        if s.n_kv_heads is not None and (s.n_kv_heads < 1 or s.n_heads % s.n_kv_heads):
            raise ShammieError(f"n_heads ({s.n_heads}) must be divisible by n_kv_heads ({s.n_kv_heads})")
        if s.n_layers < 1 or s.d_ff < 1:
            raise ShammieError(f"n_layers and d_ff must be >= 1, got {s.n_layers}, {s.d_ff}")
        if s.position == "rope" and s.dh % 2:
            raise ShammieError(f"rope needs an even head dimension; the head dimension is {s.dh}")
        if s.max_positions < 1:
            raise ShammieError(f"max_positions must be >= 1, got {s.max_positions}")
        if s.window is not None and s.window < 0:
            raise ShammieError(f"window must be None or >= 0, got {s.window}")
        if not 0.0 <= s.dropout < 1.0:
            raise ShammieError(f"dropout must be in [0, 1), got {s.dropout}")
        kinds = s.kinds
        if s.sliding_window is not None and s.sliding_window < 1:
            raise ShammieError(f"sliding_window must be >= 1 (keys a local layer sees, itself included), got {s.sliding_window}")
        if "L" in kinds and s.sliding_window is None:
            raise ShammieError(f"layer_pattern {s.layer_pattern!r} has local layers: give sliding_window")
        for name in ("attn_softcap", "final_softcap"):
            cap = getattr(s, name)
            if cap is not None and not cap > 0:
                raise ShammieError(f"{name} must be None or > 0, got {cap}")
        if s.attn_scale is not None and not s.attn_scale > 0:
            raise ShammieError(f"attn_scale must be None or > 0, got {s.attn_scale}")
        if s.norm not in NORMS:
            raise ShammieError(f"unknown norm {s.norm!r}: choose one of {', '.join(NORMS)}")
        if s.ffn not in FFNS:
            raise ShammieError(f"unknown ffn {s.ffn!r}: choose one of {', '.join(FFNS)}")
        if s.n_experts < 0 or (s.n_experts and not 1 <= s.expert_top_k <= s.n_experts):
            raise ShammieError(f"mixture of experts needs n_experts >= 1 and 1 <= expert_top_k <= n_experts, "
                               f"got {s.n_experts}, {s.expert_top_k}")
        if s.n_experts and s.d_ff % s.expert_top_k:
            raise ShammieError(f"d_ff ({s.d_ff}) must be divisible by expert_top_k ({s.expert_top_k}): "
                               "each expert's width is d_ff / expert_top_k")


@dataclass
class LayerCache:
    """Cached keys, values and key position ids of one layer (keys already rotated for RoPE).

    `offset` is the sequence index of the first cached key (local layers drop keys that left their
    window); `pad` (B, S) marks cached padding keys (None: no padding)."""

    k: torch.Tensor  # (B, H_kv, S, dh)
    v: torch.Tensor  # (B, H_kv, S, dh)
    pos: torch.Tensor  # (B, S)
    offset: int = 0
    pad: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """How many tokens the model has read (cached or dropped)."""
        return self.offset + self.k.shape[2]


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: ``x * rsqrt(mean(x^2) + eps) * (1 + weight)``, weight initialised to zeros."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _rms_norm(x, self.weight, self.eps)


class _RMSNormFunction(torch.autograd.Function):
    """RMSNorm in a few fused passes with its backward by hand (on the CPU torch 2.14 differentiates
    `F.rms_norm` op by op, about twice as slow)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        d = x.shape[-1]
        rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(d).add_(eps).rsqrt_()
        n = x * rstd  # the normalised input
        ctx.save_for_backward(n, rstd, weight)
        return n * (1.0 + weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        n, rstd, weight = ctx.saved_tensors
        d = n.shape[-1]
        scale = 1.0 + weight
        gxn = grad * n
        gw = gxn.reshape(-1, d).sum(0) if ctx.needs_input_grad[1] else None
        gx = None
        if ctx.needs_input_grad[0]:  # rstd * (g (1+w) - n * mean(g (1+w) n))
            dot = torch.matmul(gxn, scale).unsqueeze(-1).div_(d)
            gx = torch.addcmul(grad * scale, n, dot, value=-1).mul_(rstd)
        return gx, gw, None


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x * rsqrt(mean(x^2) + eps) * (1 + weight)``: the fused function when a CPU gradient is needed."""
    if _FAST_PATHS and x.device.type == "cpu" and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _RMSNormFunction.apply(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), 1.0 + weight, eps)


def _activate(h: torch.Tensor, ffn: str) -> torch.Tensor:
    if ffn == "geglu":
        gate, up = h.chunk(2, dim=-1)
        return F.gelu(gate, approximate="tanh") * up
    return F.relu(h)


class MoEFeedForward(nn.Module):
    """Sparse mixture of `n_experts` feed-forward experts, each token routed to its `top_k` best.

    Router: softmax over a bias-free linear score; the chosen experts' probabilities are renormalised
    to sum to 1 and weight their outputs. After each call `aux_loss` holds the Switch-Transformer
    load-balancing loss E * sum_e f_e * P_e (f_e: fraction of the token-to-expert assignments given
    to e, P_e: mean router probability of e; 1 when balanced) and `last_choice` the (N, k) choices.
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, top_k: int, ffn: str = "relu", bias: bool = True):
        super().__init__()
        self.n_experts, self.top_k, self.ffn = n_experts, top_k, ffn
        width = d_hidden * (2 if ffn == "geglu" else 1)
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.w1 = nn.Parameter(torch.randn(n_experts, d_model, width) * 0.02)
        self.w2 = nn.Parameter(torch.randn(n_experts, d_hidden, d_model) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(n_experts, width)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(n_experts, d_model)) if bias else None
        self.aux_loss: torch.Tensor | None = None
        self.last_choice: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(x), dim=-1)  # (N, E)
        top_p, choice = probs.topk(self.top_k, dim=-1)  # (N, k)
        weight = top_p / top_p.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(self.n_experts):
            rows, slot = (choice == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            h = x[rows] @ self.w1[e]
            if self.b1 is not None:
                h = h + self.b1[e]
            y = _activate(h, self.ffn) @ self.w2[e]
            if self.b2 is not None:
                y = y + self.b2[e]
            out = out.index_add(0, rows, y * weight[rows, slot].unsqueeze(-1))
        frac = F.one_hot(choice, self.n_experts).to(x.dtype).sum((0, 1)) / max(choice.numel(), 1)
        self.aux_loss = self.n_experts * (frac * probs.mean(0)).sum()
        self.last_choice = choice.detach()
        return out.reshape(shape)


class _RopeFunction(torch.autograd.Function):
    """Rotary embedding ``x cos + swap(x) sin`` (swap exchanges the two halves of the last axis, sin
    carries the signs) with its backward by hand: ``g cos + swap(g sin)``, three passes each way."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        ctx.save_for_backward(cos, sin)
        return torch.cat([x2, x1], dim=-1).mul_(sin).addcmul_(x, cos)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        g1, g2 = (grad * sin).chunk(2, dim=-1)
        return torch.cat([g2, g1], dim=-1).addcmul_(grad, cos), None, None


class _SoftcapFunction(torch.autograd.Function):
    """``cap * tanh(x / cap)`` (the values of `softcap`) with the backward in one pass: ``g (1 - t^2)``."""

    @staticmethod
    def forward(ctx, x, cap: float):
        t = torch.div(x, cap).tanh_()
        ctx.save_for_backward(t)
        return t * cap

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, t), None


class _CappedAttention(torch.autograd.Function):
    """``softmax(bias + cap * tanh(scale * q.k / cap)) @ v`` with grouped-query heads, its backward by hand.

    q (B, H, T, dh); k, v (B, H_kv, S, dh); bias (B, 1 or H, T, S), no gradient. Query head ``k*G + g``
    reads KV head ``k`` without repeating K and V: the G query heads of a group are stacked along
    time, (B, H_kv, G*T, dh), so each product is one batched matmul per KV head. The backward uses
    the saved squashed logits and softmax output (what autograd would keep) in fused kernels.

    For caps up to `_SIGMOID_CAP_MAX` the logits are ``2 cap sigmoid(2 z / cap)``, which differ from
    ``cap tanh(z / cap)`` by the constant cap (softmax ignores it) and cost a sixth of torch's tanh
    on a CPU; the rounding of the sigmoid near 1/2 moves a logit by at most about ``2 cap 2^-24``
    (< 8e-6 at cap 64, float32 noise against the logits' own rounding). Larger caps take tanh."""

    @staticmethod
    def forward(ctx, q, k, v, bias, scale: float, cap: float):
        b, h, t, dh = q.shape
        kv, s = k.shape[1], k.shape[2]
        g = h // kv
        sig = cap <= _SIGMOID_CAP_MAX
        qs = torch.empty((b, h, t, dh), dtype=q.dtype, device=q.device)
        torch.mul(q, scale * (2.0 if sig else 1.0) / cap, out=qs)  # the scalars folded into q
        qs = qs.view(b, kv, g * t, dh)
        z = torch.matmul(qs, k.transpose(-1, -2))  # (B, H_kv, G*T, S)
        sq = z.sigmoid_() if sig else z.tanh_()
        bias = bias.view(b, kv, g, t, s) if bias.shape[1] == h and h > 1 else bias.unsqueeze(2)
        logits = torch.add(bias, sq.view(b, kv, g, t, s), alpha=2.0 * cap if sig else cap)
        w = torch.softmax(logits, dim=-1).view(b, kv, g * t, s)
        ctx.save_for_backward(qs, k, v, sq, w)
        ctx.scale, ctx.cap, ctx.sig, ctx.q_shape = scale, cap, sig, q.shape
        return torch.matmul(w, v).view(b, h, t, dh)

    @staticmethod
    def backward(ctx, grad):
        qs, k, v, sq, w = ctx.saved_tensors
        grad = grad.reshape(qs.shape)
        gv = torch.matmul(w.transpose(-1, -2), grad)  # sums over the G query heads of each KV head
        gs = torch._softmax_backward_data(torch.matmul(grad, v.transpose(-1, -2)), w, -1, w.dtype)
        if ctx.sig:  # logits = 2 cap sigmoid(z'), z' = 2 scale q.k / cap: d/dz' = 2 cap sigmoid'
            gz = torch.ops.aten.sigmoid_backward(gs, sq)
            fq, fk = 4.0 * ctx.scale, 2.0 * ctx.cap
        else:  # logits = cap tanh(z'), z' = scale q.k / cap
            gz = torch.ops.aten.tanh_backward(gs, sq)
            fq, fk = ctx.scale, ctx.cap
        gq = torch.matmul(gz, k).mul_(fq).view(ctx.q_shape)
        gk = torch.matmul(gz.transpose(-1, -2), qs).mul_(fk)
        return gq, gk, gv, None, None, None


_GELU_C = 2.0 * math.sqrt(2.0 / math.pi)  # gelu_tanh(a) = 0.5 a (1 + tanh(y)) = a sigmoid(2y), y = sqrt(2/pi) (a + K a^3)
_GELU_K = 0.044715
_GELU_SAT = 12.0  # |a| above which the gelu's slope is 0 or 1 to float precision


class _GeGLUFunction(torch.autograd.Function):
    """``gelu_tanh(gate) * up`` with gelu_tanh(a) written as ``a * sigmoid(C (a + K a^3))`` (C = 2 sqrt(2/pi)),
    the same function as torch's tanh approximation; a CPU computes a sigmoid several times faster than a
    tanh. The backward by hand, in place where it can: d gelu/da = s + a s (1 - s) C (1 + 3 K a^2)."""

    @staticmethod
    def forward(ctx, gate, up):
        s = gate * gate
        torch.addcmul(gate, s, gate, value=_GELU_K, out=s)
        s.mul_(_GELU_C).sigmoid_()
        ctx.save_for_backward(gate, up, s)
        return torch.mul(gate, s).mul_(up)

    @staticmethod
    def backward(ctx, grad):
        gate, up, s = ctx.saved_tensors
        g_up = torch.mul(gate, s).mul_(grad)  # grad * gelu(gate)
        a = gate.clamp(-_GELU_SAT, _GELU_SAT)  # beyond, s (1 - s) < 1e-30: the clamp only keeps inf * 0 out
        d = a * a
        d.mul_(3.0 * _GELU_K * _GELU_C).add_(_GELU_C).mul_(a).mul_(s)  # a s C (1 + 3K a^2)
        torch.addcmul(d, d, s, value=-1.0, out=d).add_(s)  # ... * (1 - s) + s
        return d.mul_(grad).mul_(up), g_up


def _geglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``gelu_tanh(gate) * up``: the fused function when a CPU gradient is needed."""
    if (_FAST_PATHS and gate.device.type == "cpu" and torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)
            and gate.shape == up.shape):
        return _GeGLUFunction.apply(gate, up)
    return F.gelu(gate, approximate="tanh") * up


class _Block(nn.Module):
    """One block: x + [post-norm] Attn(norm(x)), then x + [post-norm] FFN(norm(x)).

    Default: pre-LayerNorm with a ReLU FFN (cheaper than GELU on a CPU) and biased linear layers."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        d, h, kv, dh = spec.d_model, spec.n_heads, spec.kv_heads, spec.dh

        def norm() -> nn.Module:
            return nn.LayerNorm(d) if spec.norm == "layernorm" else RMSNorm(d)

        self.n_heads = h
        self.ln1 = norm()
        self.qkv = nn.Linear(d, (h + 2 * kv) * dh, bias=spec.bias)
        self.proj = nn.Linear(h * dh, d, bias=spec.bias)
        self.ln2 = norm()
        if spec.n_experts:
            self.moe = MoEFeedForward(d, spec.d_ff // spec.expert_top_k, spec.n_experts, spec.expert_top_k,
                                      spec.ffn, spec.bias)
        else:
            self.moe = None
            self.ff1 = nn.Linear(d, spec.d_ff * (2 if spec.ffn == "geglu" else 1), bias=spec.bias)
            self.ff2 = nn.Linear(spec.d_ff, d, bias=spec.bias)
        self.post_ln1 = norm() if spec.post_norm else None
        self.post_ln2 = norm() if spec.post_norm else None
        self.dropout = spec.dropout
        self.ffn = spec.ffn

    def feed_forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.moe is not None:
            return self.moe(y)
        if self.ffn == "relu":
            return self.ff2(F.relu(self.ff1(y)))
        # GeGLU: the gate and up halves of ff1 as two products, so each comes out contiguous (faster)
        w_gate, w_up = self.ff1.weight.chunk(2, dim=0)
        b_gate, b_up = self.ff1.bias.chunk(2) if self.ff1.bias is not None else (None, None)
        return self.ff2(_geglu(F.linear(y, w_gate, b_gate), F.linear(y, w_up, b_up)))


class _TiedHead(nn.Module):
    """Output logits read off the token embedding: ``h @ E^T`` (no parameters of its own)."""

    def __init__(self, embed: nn.Embedding):
        super().__init__()
        self._embed = (embed,)  # a tuple: not registered twice as a submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self._embed[0].weight.t()


class TinyTransformer(nn.Module):
    """Decoder-only transformer: embedding (+ absolute positions), blocks, final norm, linear head.

    `forward(tokens, positions)` returns next-token logits of shape (B, T, vocab_size). `positions`
    defaults to 0..T-1 (continuing after the cache). `key_padding_mask` (B, T), True at padding, hides
    those keys (with right padding the causal mask already does). The model is small enough to train
    in about a minute on one CPU thread at d_model=64, one or two layers. The options are described
    in the module's docstring; `TinyTransformer(**dataclasses.asdict(model.spec))` rebuilds a model.
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
        *,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        layer_pattern: str = "G",
        sliding_window: int | None = None,
        attn_softcap: float | None = None,
        final_softcap: float | None = None,
        norm: str = "layernorm",
        post_norm: bool = False,
        ffn: str = "relu",
        bias: bool = True,
        tie_embeddings: bool = False,
        scale_embeddings: bool = False,
        attn_scale: float | None = None,
        n_experts: int = 0,
        expert_top_k: int = 1,
    ):
        super().__init__()
        spec = TransformerSpec(vocab_size, d_model, n_heads, n_layers, d_ff, position, max_positions, window,
                               rel_clip, dropout, n_kv_heads, head_dim, layer_pattern, sliding_window,
                               attn_softcap, final_softcap, norm, post_norm, ffn, bias, tie_embeddings,
                               scale_embeddings, attn_scale, n_experts, expert_top_k)
        spec.validate()
        self.spec = spec
        self.head_dim = spec.dh
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
        self.blocks = nn.ModuleList(_Block(spec) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model) if norm == "layernorm" else RMSNorm(d_model)
        self.head = _TiedHead(self.embed) if tie_embeddings else nn.Linear(d_model, vocab_size, bias=bias)
        self.aux_loss: torch.Tensor | None = None
        self._mask_cache: dict[tuple, torch.Tensor] = {}  # (query/key index ranges, window) -> additive mask
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # ------------------------------------------------------------------------------------------
    @property
    def position(self) -> str:
        """The position encoding's name."""
        return self.spec.position

    def reconfigure(self, **changes) -> TinyTransformer:
        """Change options that hold no parameters (window, layer_pattern, sliding_window, attn_softcap,
        final_softcap) in place, e.g. to shrink the window or drop a cap at inference; returns self."""
        bad = sorted(set(changes) - set(_RECONFIGURABLE))
        if bad:
            raise ShammieError(f"cannot reconfigure {', '.join(bad)} after building: only {', '.join(_RECONFIGURABLE)}")
        spec = dataclasses.replace(self.spec, **changes)
        spec.validate()
        self.spec = spec
        return self

    def parameter_counts(self) -> dict[str, int]:
        """Parameters: total, embedding (token and position tables), head (untied output layer), blocks,
        and active (per token: the experts a token does not use left out)."""
        total = count_parameters(self)
        emb = self.embed.weight.numel() + (self.pos_embed.weight.numel() if self.pos_embed is not None else 0)
        head = 0 if self.spec.tie_embeddings else count_parameters(self.head)
        blocks = sum(count_parameters(b) for b in self.blocks)
        idle = 0
        for b in self.blocks:
            if b.moe is not None:
                per_expert = sum(p[0].numel() for p in (b.moe.w1, b.moe.w2, b.moe.b1, b.moe.b2) if p is not None)
                idle += (b.moe.n_experts - b.moe.top_k) * per_expert
        return {"total": total, "embedding": emb, "head": head, "blocks": blocks, "active": total - idle}

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
        if (_FAST_PATHS and torch.is_grad_enabled() and x.requires_grad and not (cos.requires_grad or sin.requires_grad)
                and torch.broadcast_shapes(x.shape, cos.shape, sin.shape) == x.shape):
            return _RopeFunction.apply(x, cos, sin)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([x2, x1], dim=-1) * sin

    def _bias(self, qpos: torch.Tensor, kpos: torch.Tensor, key_pad: torch.Tensor | None, qidx: torch.Tensor,
              kidx: torch.Tensor, segments: torch.Tensor | None = None, sliding: int | None = None) -> torch.Tensor:
        """Additive attention bias (B, H or 1, Tq, Tk): position bias, -inf where masked.

        `qidx`, `kidx`: the sequence indices of the queries and keys; `sliding`: a local layer's window."""
        plain = (self.spec.window is None and key_pad is None and segments is None
                 and self.spec.position not in ("alibi", "relbias"))
        if plain:  # the mask depends on the sequence indices only: one (1, 1, Tq, Tk) tensor, cached
            key = (int(qidx[0]), len(qidx), int(kidx[0]), len(kidx), sliding, str(qidx.device))
            masks = self.__dict__.setdefault("_mask_cache", {})  # (also for models pickled before it existed)
            cached = masks.get(key)
            if cached is None:
                qi, ki = qidx.unsqueeze(1), kidx.unsqueeze(0)
                allowed = (ki <= qi) if sliding is None else (ki <= qi) & (ki > qi - sliding)
                cached = torch.zeros(allowed.shape, device=qidx.device).masked_fill_(~allowed, float("-inf"))[None, None]
                if len(masks) >= 16:
                    masks.clear()
                masks[key] = cached
            return cached
        rel = kpos.unsqueeze(1) - qpos.unsqueeze(2)  # (B, Tq, Tk): key id - query id
        qi, ki = qidx.unsqueeze(1), kidx.unsqueeze(0)
        allowed = (ki <= qi).unsqueeze(0)  # causal in sequence index
        if sliding is not None:
            allowed = allowed & (ki > qi - sliding).unsqueeze(0)
        if self.spec.window is not None:
            allowed = allowed & (rel.abs() <= self.spec.window)
        if key_pad is not None:
            allowed = allowed & ~key_pad.unsqueeze(1)
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

    def _qkv(self, blk: _Block, y: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, H, T, dh), keys and values (B, H_kv, T, dh), RoPE applied (to queries and keys in
        one call, in the (B, T, heads, dh) layout of the fused projection)."""
        b, t, _ = y.shape
        h, kv, dh = self.spec.n_heads, self.spec.kv_heads, self.head_dim
        x = blk.qkv(y).view(b, t, h + 2 * kv, dh)
        qk = x[:, :, : h + kv]
        if rope is not None:
            cos, sin = rope
            qk = self._rope(qk, cos.transpose(1, 2), sin.transpose(1, 2))
        return qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2), x[:, :, h + kv:].transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention output (B, H, T, dh) and, when asked for, the weights (B, H, T, S)."""
        spec = self.spec
        drop = spec.dropout if self.training else 0.0
        groups = spec.n_heads // spec.kv_heads
        if spec.attn_softcap is None and not need_weights:
            kw = {} if spec.attn_scale is None else {"scale": spec.attn_scale}
            if groups > 1:
                kw["enable_gqa"] = True
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, **kw), None
        if (spec.attn_softcap is not None and not need_weights and not drop and not bias.requires_grad
                and _FAST_PATHS):
            scale = spec.attn_scale if spec.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)
            return _CappedAttention.apply(q, k, v, bias, scale, spec.attn_softcap), None
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if spec.attn_softcap is not None:  # bias + cap * tanh(scale * q.k / cap), the scalars folded into q
            # (2 cap sigmoid(2z / cap) would be cheaper on a CPU, but it loses the logits to rounding at large caps)
            cap = spec.attn_softcap
            scale = spec.attn_scale if spec.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)
            s = torch.add(bias, torch.tanh((q * (scale / cap)) @ k.transpose(-1, -2)), alpha=cap)
        else:
            s = q @ k.transpose(-1, -2)
            s = (s / math.sqrt(self.head_dim) if spec.attn_scale is None else s * spec.attn_scale) + bias
        w = torch.softmax(s, dim=-1)
        out = (F.dropout(w, drop) if drop and not need_weights else w) @ v
        return out, w

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output logits from final hidden states (the head, then the final soft-cap if any)."""
        cap = self.spec.final_softcap
        raw = self.head(hidden)
        if _FAST_PATHS and cap is not None and torch.is_grad_enabled() and raw.requires_grad:
            return _SoftcapFunction.apply(raw, cap)
        return softcap(raw, cap)

    def embed_inputs(self, tokens: torch.Tensor, embeds: torch.Tensor | None = None,
                     embeds_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Input vectors (B, T, d_model) before positions: token embeddings (times sqrt(d_model) with
        `scale_embeddings`), replaced by `embeds` where `embeds_mask` is True (everywhere if None)."""
        if self.spec.scale_embeddings:  # the scale on the (small) table: the same products, fewer of them
            x = F.embedding(tokens, self.embed.weight * math.sqrt(self.spec.d_model))
        else:
            x = self.embed(tokens)
        if embeds is not None:
            if embeds.shape != x.shape:
                raise ShammieError(f"embeds {tuple(embeds.shape)} must have shape (batch, time, d_model) = {tuple(x.shape)}")
            if embeds_mask is None:
                return embeds.to(x.dtype)
            if embeds_mask.shape != tokens.shape:
                raise ShammieError(f"embeds_mask {tuple(embeds_mask.shape)} must have the shape of tokens {tuple(tokens.shape)}")
            x = torch.where(embeds_mask.unsqueeze(-1), embeds.to(x.dtype), x)
        elif embeds_mask is not None:
            raise ShammieError("embeds_mask given without embeds")
        return x

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
        return_attention: bool = False,
        return_hidden: bool = False,
        embeds: torch.Tensor | None = None,
        embeds_mask: torch.Tensor | None = None,
    ):
        """Next-token logits (B, T, vocab).

        With `return_hidden` the final (normed) hidden states (B, T, d_model) are returned instead
        of the logits (`model.logits(h)` gives the logits; `model.head(h)` too when there is no final
        soft-cap), so a loss can apply the head only where it is needed.

        `segments` (B, T) packs several sequences into one row: a token attends only to earlier
        tokens of its own segment (give each sequence of a row its own id, padding its own too).
        With `cache` (a list, empty at the first call) the new keys/values are appended to it and
        the tokens are taken to follow the cached ones; a `key_padding_mask` given with a cache
        covers the new tokens and is remembered for later calls (left-padded batched decoding).
        With `return_attention` the per-layer attention weights (B, H, T, T_keys) are returned too,
        as `(logits, [weights per layer])`. `embeds` (B, T, d_model) and `embeds_mask` (B, T) put
        caller-made input vectors in place of the token embeddings (see `embed_inputs`).
        """
        if tokens.dim() != 2:
            raise ShammieError(f"tokens must have shape (batch, time), got {tuple(tokens.shape)}")
        spec = self.spec
        b, t = tokens.shape
        past = cache[0].length if cache else 0
        if positions is None:
            positions = torch.arange(past, past + t, device=tokens.device).expand(b, t)
        if positions.shape != tokens.shape:
            raise ShammieError(f"positions {tuple(positions.shape)} must have the shape of tokens {tuple(tokens.shape)}")
        self.check_positions(positions)
        if int(tokens.min()) < 0 or int(tokens.max()) >= spec.vocab_size:
            raise ShammieError(f"token ids must lie in 0..{spec.vocab_size - 1}")
        x = self.embed_inputs(tokens, embeds, embeds_mask)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        elif spec.position == "sinusoidal":
            x = x + sinusoidal_table(positions, spec.d_model)
        if segments is not None and cache:
            raise ShammieError("segments cannot be combined with a cache; decode each sequence in its own row")
        if segments is not None and segments.shape != tokens.shape:
            raise ShammieError(f"segments {tuple(segments.shape)} must have the shape of tokens {tuple(tokens.shape)}")
        if key_padding_mask is not None and key_padding_mask.shape != tokens.shape:
            raise ShammieError(f"key_padding_mask {tuple(key_padding_mask.shape)} must have the shape of tokens "
                               f"{tuple(tokens.shape)}")
        if cache and len(cache) != spec.n_layers:
            raise ShammieError(f"the cache holds {len(cache)} layers; this model has {spec.n_layers}")
        kinds = spec.kinds
        qidx = torch.arange(past, past + t, device=tokens.device)
        # one key set and one bias per layer kind (every layer of a kind caches the same keys)
        keys: dict[str, tuple] = {}
        for kind in set(kinds):
            c = cache[kinds.index(kind)] if cache else None
            kpos = torch.cat([c.pos, positions], dim=1) if c is not None else positions
            pad = key_padding_mask
            if c is not None and (c.pad is not None or key_padding_mask is not None):
                old = c.pad if c.pad is not None else torch.zeros(c.pos.shape, dtype=torch.bool, device=tokens.device)
                new = key_padding_mask if key_padding_mask is not None else torch.zeros_like(tokens, dtype=torch.bool)
                pad = torch.cat([old, new], dim=1)
            start = c.offset if c is not None else 0
            kidx = torch.arange(start, past + t, device=tokens.device)
            sliding = spec.sliding_window if kind == "L" else None
            keys[kind] = (kpos, pad, start, self._bias(positions, kpos, pad, qidx, kidx, segments, sliding))
        rope = self._rope_tables(positions) if self.rope_freq is not None else None
        attn_maps = []
        new_cache = []
        aux = []
        for li, blk in enumerate(self.blocks):
            kind = kinds[li]
            kpos, pad, start, bias = keys[kind]
            q, k, v = self._qkv(blk, blk.ln1(x), rope)
            if cache:
                k = torch.cat([cache[li].k, k], dim=2)
                v = torch.cat([cache[li].v, v], dim=2)
            if cache is not None:
                entry = LayerCache(k, v, kpos, start, pad)
                if kind == "L":
                    drop = max(0, k.shape[2] - (spec.sliding_window - 1))  # the next query needs W - 1 keys
                    entry = LayerCache(k[:, :, drop:], v[:, :, drop:], kpos[:, drop:], start + drop,
                                       pad[:, drop:] if pad is not None else None)
                new_cache.append(entry)
            out, w = self._attend(q, k, v, bias, return_attention)
            if return_attention:
                attn_maps.append(w.detach())
            out = blk.proj(out.transpose(1, 2).reshape(b, t, spec.n_heads * self.head_dim))
            if blk.post_ln1 is not None:
                out = blk.post_ln1(out)
            if self.training and spec.dropout:
                out = F.dropout(out, spec.dropout)
            x = x + out
            y = blk.feed_forward(blk.ln2(x))
            if blk.moe is not None:
                aux.append(blk.moe.aux_loss)
            if blk.post_ln2 is not None:
                y = blk.post_ln2(y)
            if self.training and spec.dropout:
                y = F.dropout(y, spec.dropout)
            x = x + y
        if cache is not None:
            cache[:] = new_cache
        self.aux_loss = torch.stack(aux).sum() if aux else None
        hidden = self.ln_f(x)
        logits = hidden if return_hidden else self.logits(hidden)
        return (logits, attn_maps) if return_attention else logits
