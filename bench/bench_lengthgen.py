"""Training throughput of shammie's TinyTransformer against torch.nn.TransformerEncoder of the same size.

Both models: token embedding + learned absolute positions, pre-LayerNorm blocks with a ReLU FFN,
a causal mask, a final LayerNorm and a linear head; AdamW; one torch thread; the same batches.
Reports training tokens per second (forward, backward, optimizer step) and the ratio, measured in
one run and interleaved so that a busy machine slows both alike.

    python bench/bench_lengthgen.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from shammie import configure_threads
from shammie.transformer import TinyTransformer, count_parameters


class TorchEncoderLM(nn.Module):
    """The same decoder-only LM built from torch.nn.TransformerEncoder with a causal mask."""

    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, max_positions: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos_embed = nn.Embedding(max_positions, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="relu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.embed(tokens) + self.pos_embed(torch.arange(t, device=tokens.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        return self.head(self.ln_f(self.encoder(x, mask=mask, is_causal=True)))


def time_training(model: nn.Module, data: torch.Tensor, steps: int) -> float:
    """Seconds for `steps` AdamW steps of next-token training on `data` (steps, B, T+1)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    vocab = model.head.out_features
    t0 = time.perf_counter()
    for i in range(steps):
        x, y = data[i, :, :-1], data[i, :, 1:]
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    """Print tokens/s of both models for two sizes and the ratio ours / torch."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    configure_threads(1)
    vocab, batch, seq = 32, 64, 32
    rows = []
    for d_model, n_heads, n_layers, d_ff in [(64, 4, 1, 128), (64, 4, 2, 128)]:
        torch.manual_seed(0)
        ours = TinyTransformer(vocab, d_model, n_heads, n_layers, d_ff, position="learned", max_positions=seq)
        ref = TorchEncoderLM(vocab, d_model, n_heads, n_layers, d_ff, seq)
        data = torch.randint(0, vocab, (args.steps, batch, seq + 1))
        time_training(ours, data[:5], 5)  # warm-up
        time_training(ref, data[:5], 5)
        t_ours, t_ref = [], []
        for _ in range(args.repeats):  # interleaved, best of `repeats`
            t_ours.append(time_training(ours, data, args.steps))
            t_ref.append(time_training(ref, data, args.steps))
        tokens = args.steps * batch * seq
        rows.append((f"d={d_model} h={n_heads} L={n_layers} ff={d_ff}", count_parameters(ours), count_parameters(ref),
                     tokens / min(t_ours), tokens / min(t_ref)))
    print(f"training tokens/s, batch {batch} x {seq} tokens, 1 thread, best of {args.repeats} x {args.steps} steps")
    print(f"{'model':28s} {'params ours':>11s} {'params torch':>12s} {'ours tok/s':>11s} {'torch tok/s':>12s} {'ratio':>6s}")
    for name, p_ours, p_ref, s_ours, s_ref in rows:
        print(f"{name:28s} {p_ours:11d} {p_ref:12d} {s_ours:11.0f} {s_ref:12.0f} {s_ours / s_ref:6.2f}")
    print("ratio = ours / torch.nn.TransformerEncoder (> 1: ours is faster)")


if __name__ == "__main__":
    main()
