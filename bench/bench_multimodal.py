"""The multimodal family (notebook 09), each figure against a peer measured in the same run, one thread:

1. Memory of the quantized models against float32 (packed int4 / int8 weights plus one float32 scale per
   row): the ratio float32 / quantized for nano, pro and ultra.
2. A distillation step (student forward + backward + the teacher's forward) against a plain step of the
   same student: seconds per step and the ratio (the teacher's cost).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_of, target  # noqa: E402

from shammie import multimodal as mm  # noqa: E402
from shammie.core import configure_threads  # noqa: E402


def bench_memory() -> None:
    print(f"{'model':<8}{'fp32 KiB':>10}{'int8 KiB':>10}{'int4 KiB':>10}{'fp32/int4':>11}")
    ratios = []
    for name, d in zip(mm.FAMILY, (24, 40, 64)):
        m = mm.build(d, 2, 0)
        f, i8, i4 = mm.memory_bytes(m), mm.memory_bytes(m, 8), mm.memory_bytes(m, 4)
        ratios.append(f / i4)
        print(f"{name:<8}{f / 1024:>10.1f}{i8 / 1024:>10.1f}{i4 / 1024:>10.1f}{f / i4:>10.2f}x")
    target("int4_memory_saving_nano", ratios[0], 4.0)


def bench_kd_step(steps: int = 30) -> None:
    rng = np.random.default_rng(0)
    pool = mm.Pool(rng.normal(size=(500, 40)), np.arange(500) % 10)
    counts = mm.task_counts(dict(mm.DEFAULT_MIX), 64)
    batches = [mm.make_batch(counts, pool, rng, held=mm.held_out_pairs()) for _ in range(steps)]
    teacher = mm.build(64, 2, 1)

    def run(loss_fn):
        model = mm.build(24, 2, 0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        for b in batches:
            loss = loss_fn(model, b)
            opt.zero_grad()
            loss.backward()
            opt.step()

    t_plain, _ = best_of(lambda: run(mm.answer_loss))
    t_kd, _ = best_of(lambda: run(mm.kd_loss(teacher, 0.5)))
    print(f"nano step: plain {1000 * t_plain / steps:.1f} ms, distilled from ultra {1000 * t_kd / steps:.1f} ms "
          f"({t_kd / t_plain:.2f}x)")
    target("kd_step_cost", t_kd / t_plain, 2.0, higher_is_better=False)


if __name__ == "__main__":
    configure_threads(1)
    bench_memory()
    bench_kd_step()
