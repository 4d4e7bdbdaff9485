"""The ReST^EM E-step's sampler against its peer, one thread, measured in the same run:

the KV-cached batched sampler (`shammie.lm.generate` with `use_cache=True`, each step reads one new token per
row) against uncached decoding of the same rows (every step re-runs the whole sequence), on the quick
profile's model and decoding length. Samples per second and the ratio; the samples must be identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_of, target  # noqa: E402

from shammie import self_training as st  # noqa: E402
from shammie.core import configure_threads  # noqa: E402


def bench_sampler(problems: int = 250, n: int = 4) -> float:
    cfg = st.SelfTrainingConfig.for_profile("quick")
    task = st.task_for(cfg)
    model = st.build_model(cfg, 0)
    probs = task.train[:problems]
    rows = problems * n

    def sample(use_cache: bool):
        return st.sample_completions(model, probs, n, temperature=cfg.temperature, max_new_tokens=task.max_new_tokens,
                                     generator=torch.Generator().manual_seed(0), use_cache=use_cache)

    t_cached, a = best_of(lambda: sample(True), repeats=3)
    t_plain, b = best_of(lambda: sample(False), repeats=1)
    same = a == b
    print(f"E-step sampler, {rows} samples ({problems} problems x N={n}), up to {task.max_new_tokens} new tokens, "
          f"d_model={cfg.d_model}, {cfg.n_layers} layers")
    print(f"  KV-cached batched: {t_cached:.2f} s = {rows / t_cached:,.0f} samples/s")
    print(f"  uncached:          {t_plain:.2f} s = {rows / t_plain:,.0f} samples/s")
    print(f"  ratio {t_plain / t_cached:.1f}x; identical samples: {same}")
    if not same:
        raise SystemExit("the cached and uncached samplers disagree")
    return t_plain / t_cached


def main() -> None:
    configure_threads(1)
    ratio = bench_sampler()
    target("self_training_cached_sampler_speedup", ratio, 5.0)


if __name__ == "__main__":
    main()
