"""The timer the benchmarks share: the best wall-clock time of a call over a few repeats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeats: int = 3, *, clock: Callable[[], float] = time.perf_counter
            ) -> tuple[float, Any]:
    """Call `fn` `repeats` times; return (the fastest call's seconds, the last call's result).

    `clock=time.process_time` times CPU seconds instead of wall seconds: with one torch thread that is
    the work done, which other jobs on a shared machine inflate far less than the wall time.
    """
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = clock()
        value = fn()
        best = min(best, clock() - t0)
    return best, value


def target(name: str, value: float, goal: float, *, higher_is_better: bool = True, unit: str = "x") -> bool:
    """Print one benchmark target as met or MISSED and keep it for the bench summary.

    `value` is the measured ratio (or other figure), `goal` the issue's target; with
    `higher_is_better` the target is met when value >= goal, else when value <= goal. When the
    environment names a results file (SHAMMIE_BENCH_RESULTS), the target is appended to it as one
    JSON line, so `make bench` can collect every bench script's targets into one report.
    """
    import json
    import os

    met = value >= goal if higher_is_better else value <= goal
    sign = ">=" if higher_is_better else "<="
    print(f"target {name}: {value:.2f}{unit} (goal {sign} {goal:g}{unit}) {'met' if met else 'MISSED'}")
    path = os.environ.get("SHAMMIE_BENCH_RESULTS")
    if path:
        row = {"name": name, "value": float(value), "goal": float(goal), "higher_is_better": higher_is_better,
               "unit": unit, "met": bool(met)}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return met
