"""Post-training quantization (Gemini Nano is "4-bit quantized for deployment"; the scheme is unpublished).

Symmetric round-to-nearest: q = clamp(round(w / s), -Q, Q) with Q = 2^(bits-1) - 1 and s = max|w| / Q,
one scale per output row ("per channel") or one per tensor; the model keeps q * s (fake quantization,
so it runs unchanged). Every Linear weight and the token embedding are quantized; LayerNorms, biases and
the position tables (token positions and patch indices) stay float32, as in the research note's pilot.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core import ShammieError

__all__ = ["SCHEMES", "check_bits", "quantize_tensor", "quantized_weights", "quantize_model", "memory_bytes"]

#: scheme name -> (bits, per_channel)
SCHEMES = {"int8 per-channel": (8, True), "int4 per-channel": (4, True), "int4 per-tensor": (4, False)}


def check_bits(bits: int) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ShammieError(f"bits must be an int in 2..8, got {bits!r}")
    return bits


def quantize_tensor(w: torch.Tensor, bits: int, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantized weights, scales): symmetric round-to-nearest on the grid s * {-Q..Q}; per_channel
    uses one scale per row (dim 0). A row (or tensor) of zeros keeps scale 1 and stays zero."""
    check_bits(bits)
    if w.dim() < 1:
        raise ShammieError("quantize a tensor with at least one dimension")
    qmax = 2 ** (bits - 1) - 1
    w = w.detach()
    if per_channel:
        amax = w.abs().reshape(w.shape[0], -1).amax(1).reshape(-1, *([1] * (w.dim() - 1)))
    else:
        amax = w.abs().amax().reshape(*([1] * w.dim()))
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale, scale


def quantized_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters a scheme quantizes: every Linear weight and the token embedding table."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            out.append((f"{name}.weight", mod.weight))
    embed = getattr(getattr(model, "decoder", model), "embed", None)
    if isinstance(embed, nn.Embedding):
        prefix = "decoder.embed" if hasattr(model, "decoder") else "embed"
        out.append((f"{prefix}.weight", embed.weight))
    return out


def quantize_model(model: nn.Module, bits: int, per_channel: bool = True) -> nn.Module:
    """A quantized copy of `model` (the original is untouched)."""
    check_bits(bits)
    q = copy.deepcopy(model)
    with torch.no_grad():
        for _, p in quantized_weights(q):
            p.copy_(quantize_tensor(p, bits, per_channel)[0])
    return q


def memory_bytes(model: nn.Module, bits: int | None = None, per_channel: bool = True) -> int:
    """Bytes to store the model: float32 everywhere (bits None), or the quantized weights at `bits` each
    (packed) plus one float32 scale per row (per channel) or per tensor, the rest float32."""
    total = sum(p.numel() for p in model.parameters()) * 4
    if bits is None:
        return total
    check_bits(bits)
    for _, p in quantized_weights(model):
        total -= p.numel() * 4
        total += (p.numel() * bits + 7) // 8 + 4 * (p.shape[0] if per_channel else 1)
    return total
