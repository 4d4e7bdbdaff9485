"""Recall-grid evaluation throughput of notebook 08: probes per second with the KV-cached decoder, against
uncached greedy decoding (the whole sequence re-run for the second digit) and teacher-forced scoring (one
forward pass over prompt + first digit; the same hits, see `shammie.long_context.answer_hits`).

The three paths score the same probes of the quick profile's grid with the same local-global model (untrained:
the cost does not depend on the weights), interleaved so that a busy machine slows them alike; one torch thread.

    python bench/bench_long_context.py [--repeats 3] [--probes 64]
"""

from __future__ import annotations

import argparse

import torch
from timing import best_of, target

from shammie import configure_threads
from shammie import long_context as lc


def main() -> None:
    """Print probes/s per scoring path and context length, the ratios, and the issue's target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probes", type=int, default=64)
    args = ap.parse_args()
    configure_threads(1)
    cfg = lc.LongContextConfig.for_profile("quick")
    vocab = lc.NeedleVocab()
    model = lc.build_needle_model(cfg, vocab, "LG", seed=0).eval()
    batches = {n: [lc.make_probes(vocab, n, d, 1, args.probes, rng=[0, n, i]) for i, d in enumerate(cfg.grid_depths)]
               for n in cfg.grid_lengths}
    total = {m: 0.0 for m in ("forced", "cached", "uncached")}
    print(f"{'length':>7} {'forced':>12} {'cached':>12} {'uncached':>12}   cached/uncached  (probes/s)")
    with torch.no_grad():
        for n, probes in batches.items():
            row = {}
            for method in total:  # interleaved per length
                sec, _ = best_of(lambda m=method, ps=probes: [lc.answer_hits(model, p, m) for p in ps], args.repeats)
                total[method] += sec
                row[method] = len(probes) * args.probes / sec
            print(f"{n:>7} {row['forced']:>12.0f} {row['cached']:>12.0f} {row['uncached']:>12.0f}   "
                  f"{row['cached'] / row['uncached']:.2f}x")
    count = len(cfg.grid_lengths) * len(cfg.grid_depths) * args.probes
    rate = {m: count / s for m, s in total.items()}
    print(f"whole grid ({count} probes): forced {rate['forced']:.0f}/s, cached {rate['cached']:.0f}/s, "
          f"uncached {rate['uncached']:.0f}/s")
    # issue 20: the grid is evaluated with the cached decoder; it must beat re-running the sequence per token
    target("long_context_cached_vs_uncached_grid", rate["cached"] / rate["uncached"], 1.3)
    target("long_context_forced_vs_cached_grid", rate["forced"] / rate["cached"], 1.0)


if __name__ == "__main__":
    main()
