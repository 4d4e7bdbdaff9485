"""The model: the shared decoder reading signal patches through its non-token input hook.

`MultimodalLM` wraps `shammie.transformer.TinyTransformer` (pre-LayerNorm, ReLU MLP of width 4d,
multi-query attention: 2 query heads share one key/value head, learned absolute positions) and adds the
"visual encoder" of the toy: a linear map of each 8-sample patch to d_model plus a learned vector per
patch index (0..4). The patch vectors replace the token embeddings at the image positions
(`forward(..., embeds=, embeds_mask=)`), so text and signals share one sequence and one decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import ShammieError
from ..lm import IGNORE_INDEX, completion_loss, distillation_loss
from ..transformer import TinyTransformer
from .tasks import N_PATCHES, PATCH, SEQ_LEN, VOCAB_SIZE, Batch

__all__ = ["MultimodalLM", "build", "expected_parameters", "answer_loss", "kd_loss", "answer_logits"]


class MultimodalLM(nn.Module):
    """Decoder-only transformer over interleaved tokens and signal patches; forward(batch) -> logits (B, T, V)."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int = 2, n_kv_heads: int = 1, ff_mult: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ShammieError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.decoder = TinyTransformer(VOCAB_SIZE, d_model, n_heads, n_layers, ff_mult * d_model, "learned",
                                       max_positions=SEQ_LEN, n_kv_heads=n_kv_heads)
        self.patch = nn.Linear(PATCH, d_model)
        self.patch_pos = nn.Embedding(N_PATCHES, d_model)
        nn.init.normal_(self.patch_pos.weight, std=0.02)
        self.aux_loss = None  # no mixture of experts (read by lm.train_lm)

    @property
    def spec(self):
        return self.decoder.spec

    def forward(self, batch: Batch, return_hidden: bool = False) -> torch.Tensor:
        patches = batch.patches
        if patches.shape[-1] != PATCH or patches.shape[:2] != batch.tokens.shape:
            raise ShammieError(f"patches {tuple(patches.shape)} must have shape (batch, time, {PATCH})")
        embeds = self.patch(patches) + self.patch_pos(batch.patch_idx)
        return self.decoder(batch.tokens, batch.positions, key_padding_mask=batch.pad, embeds=embeds,
                            embeds_mask=batch.is_img, return_hidden=return_hidden)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build(d_model: int, n_layers: int, seed: int, n_heads: int = 2, n_kv_heads: int = 1) -> MultimodalLM:
    """A fresh model whose initial weights depend only on `seed`."""
    g = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return MultimodalLM(d_model, n_layers, n_heads, n_kv_heads)
    finally:
        torch.random.set_rng_state(g)


def expected_parameters(d_model: int, n_layers: int, n_heads: int = 2, n_kv_heads: int = 1) -> int:
    """The parameter count from the shapes (a check on the model): per layer 2 LayerNorms, the fused
    QKV projection d -> (h + 2 h_kv) d/h, the output projection, the MLP d -> 4d -> d (all biased); plus the
    token and position tables, the final norm, the head, the patch projection and patch vectors."""
    d, dh = d_model, d_model // n_heads
    qkv = d * (n_heads + 2 * n_kv_heads) * dh + (n_heads + 2 * n_kv_heads) * dh
    block = 4 * d + qkv + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return (n_layers * block + VOCAB_SIZE * d + SEQ_LEN * d + 2 * d + (d * VOCAB_SIZE + VOCAB_SIZE)
            + (PATCH * d + d) + N_PATCHES * d)


def answer_logits(model: MultimodalLM, batch: Batch, column: int = SEQ_LEN - 1) -> torch.Tensor:
    """Next-token logits (B, V) at one column (default: the last, where the final answer is predicted)."""
    return model(batch)[:, column]


def answer_loss(model: MultimodalLM, batch: Batch) -> torch.Tensor:
    """Cross-entropy on the answer positions only (lm.completion_loss with the other targets ignored)."""
    return completion_loss(model(batch), batch.targets)


def kd_loss(teacher: MultimodalLM, alpha: float = 0.5):
    """The loss of a distilled student: (1 - alpha) * CE(answers) + alpha * H(p_teacher, p_student) on the
    answer positions, at temperature 1 (lm.distillation_loss; its gradient is that of the KL). The research
    note's pilot saw temperature 2 over the full 28-token vocabulary hurt the binary answers.

    Building it puts `teacher` in eval mode and freezes its parameters (requires_grad False) for good:
    a teacher to be trained further must be unfrozen by its caller."""
    if not 0.0 <= alpha <= 1.0:
        raise ShammieError(f"alpha must be in [0, 1], got {alpha}")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model: MultimodalLM, batch: Batch) -> torch.Tensor:
        logits = model(batch)
        with torch.no_grad():
            t = teacher(batch)
        mask = batch.targets != IGNORE_INDEX
        ce = completion_loss(logits, batch.targets)
        return (1 - alpha) * ce + alpha * distillation_loss(logits[mask], t[mask])

    return loss_fn

