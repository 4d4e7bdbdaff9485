"""Benchmark runs kept and compared: `make bench` and `python -m shammie bench ...`.

A benchmark is a script `bench/bench_<theme>.py` that measures our code against a peer in the same
process and reports each issue target through `timing.target(name, value, goal)` (bench/timing.py),
which appends one JSON line to the file named by `$SHAMMIE_BENCH_RESULTS`. This module

- runs every bench script with that variable set to a temporary file of its own, showing the
  script's output as it goes (`run_benchmarks`);
- keeps the run as `reports/bench/<UTC time>.json`: every target with its value and goal, each
  script's exit status, seconds and output, the machine (CPU model, cores, SIMD, torch and numpy
  versions, the BLAS numpy uses, threads, load) and a machine-speed reference, the CPU and wall
  milliseconds per step of a fixed small workload, so that two runs can be told apart by the
  machine as well as by the code (`write_record`);
- prints one line per target at the end, met or MISSED with its number (`summary_lines`): a miss
  is never hidden, and a script that failed is listed with its exit status;
- compares two kept runs and shows the ratios that moved (`compare_lines`).

    python -m shammie bench run [--only calibration,decoder] [--out reports/bench]
    python -m shammie bench compare [A.json [B.json]] [--threshold 0.1] [--all]
    python -m shammie bench summary [RUN.json]

`compare` without files compares the two newest runs in reports/bench; with one file, that file
against the newest.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core import ShammieError, repo_root, reports_dir

__all__ = [
    "FORMAT",
    "RESULTS_ENV",
    "BenchError",
    "bench_scripts",
    "machine_info",
    "speed_reference",
    "read_targets",
    "run_benchmarks",
    "write_record",
    "load_record",
    "summary_lines",
    "compare_lines",
    "main",
]

FORMAT = "shammie-bench/1"
RESULTS_ENV = "SHAMMIE_BENCH_RESULTS"


class BenchError(ShammieError, ValueError):
    """A bench run or file that cannot be used as given; the message names the fix."""


# =============================================================================================
# The machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags() -> list[str]:
    """The vector extensions the kernel reports (what decides which of numpy's and torch's kernels run)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    m = re.search(r"^(?:flags|Features)\s*:(.*)$", text, flags=re.M)
    have = set(m.group(1).split()) if m else set()
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "asimd", "sve")
    return [f for f in wanted if f in have]


def _numpy_blas() -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out = {"name": blas.get("name"), "version": blas.get("version")}
        config = blas.get("openblas configuration")
        if config:
            out["configuration"] = config
    except Exception:  # numpy < 1.25 has no dicts mode  # noqa: BLE001
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            out.setdefault("name", pools[0].get("internal_api"))
            out["threads"] = pools[0].get("num_threads")
            out["architecture"] = pools[0].get("architecture")
    except Exception:  # threadpoolctl missing or failing: the build information is enough  # noqa: BLE001
        pass
    return out


def _numpy_simd() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        except ImportError:
            return []
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _git_state(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def machine_info() -> dict[str, Any]:
    """The machine a bench run ran on: CPU, cores, SIMD, library versions, BLAS, threads and load."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "cpu_flags": _cpu_flags(),
        "numpy_simd": _numpy_simd(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": {
            "torch_default": torch.get_num_threads(),
            "bench_scripts": 1,  # every bench script calls configure_threads(1)
            **{k: os.environ[k] for k in ("SHAMMIE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS") if k in os.environ},
        },
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil is optional  # noqa: BLE001
        pass
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    return info


REFERENCE_WORKLOAD = ("one SGD step of an MLP 64-256-256-10 on a fixed batch of 256 (float32, 1 torch thread), "
                      "best of 5 rounds of 20 steps")


def speed_reference(rounds: int = 5, steps: int = 20) -> dict[str, Any]:
    """The machine-speed reference: CPU and wall milliseconds per step of a fixed small workload
    (`REFERENCE_WORKLOAD`), best of `rounds`; a slower machine, or one busy with other jobs, shows
    here, so that a ratio that moved can be set beside the machine it was measured on."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 64, generator=g)
        y = torch.randint(0, 10, (256,), generator=g)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                        torch.nn.ReLU(), torch.nn.Linear(256, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        for _ in range(5):
            step()
        cpu = wall = math.inf
        for _ in range(rounds):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                step()
            cpu = min(cpu, (time.process_time() - c0) / steps)
            wall = min(wall, (time.perf_counter() - w0) / steps)
    finally:
        torch.set_num_threads(threads)
    return {"workload": REFERENCE_WORKLOAD, "ms_per_step": round(wall * 1e3, 4), "cpu_ms_per_step": round(cpu * 1e3, 4)}


# =============================================================================================
# Running the bench scripts


def bench_scripts(bench_dir: str | Path | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """The bench scripts `bench_*.py` of `bench_dir` (default: <repo>/bench), sorted; `only` keeps those
    whose theme (the name after `bench_`) contains one of the patterns."""
    folder = Path(bench_dir) if bench_dir is not None else repo_root() / "bench"
    if not folder.is_dir():
        raise BenchError(f"no bench folder at {folder}: run from the checkout or pass --bench-dir")
    scripts = sorted(folder.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if any(p in s.stem.removeprefix("bench_") for p in only)]
        if not scripts:
            raise BenchError(f"no bench script in {folder} matches {', '.join(only)}")
    return scripts


def read_targets(path: str | Path) -> list[dict[str, Any]]:
    """The targets `timing.target` appended to a results file (JSON lines); a missing file is no targets."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BenchError(f"{path}, line {i}: not a JSON line ({err}); was the file written by timing.target?") \
                from err
        _check_target(row, f"{path}, line {i}")
        rows.append(row)
    return rows


def _check_target(row: Any, where: str) -> None:
    if not isinstance(row, dict) or not {"name", "value", "goal"} <= set(row):
        raise BenchError(f"{where}: a target needs name, value and goal, got {row!r}")


def _run_one(script: Path, python: str, results: Path, timeout: float | None, echo: bool) -> dict[str, Any]:
    env = {**os.environ, RESULTS_ENV: str(results), "PYTHONUNBUFFERED": "1"}
    lib = Path(__file__).resolve().parents[1]  # the checkout's lib/ first, as the Makefile does for shared venvs
    env["PYTHONPATH"] = os.pathsep.join([str(lib), *filter(None, [os.environ.get("PYTHONPATH")])])
    lines: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, str(script)], cwd=str(script.parent.parent), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    timed_out = False
    try:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out = True
                proc.kill()
                break
        code = proc.wait(timeout=None if timeout is None else max(1.0, timeout - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        code = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    row: dict[str, Any] = {"script": script.name, "returncode": code, "seconds": round(time.perf_counter() - t0, 2),
                           "targets": [{**t, "script": script.name} for t in read_targets(results)],
                           "output": "".join(lines)}
    if timed_out:
        row["timed_out"] = True
    return row


def run_benchmarks(scripts: Sequence[str | Path], *, python: str | None = None, timeout: float | None = None,
                   reference: bool = True, echo: bool = True) -> dict[str, Any]:
    """Run each bench script in its own process with `$SHAMMIE_BENCH_RESULTS` set to a temporary file,
    and return the run's record (see the module docstring); nothing is written."""
    python = python or sys.executable
    started = _dt.datetime.now(_dt.UTC)
    record: dict[str, Any] = {"format": FORMAT, "started": started.isoformat(timespec="seconds"),
                              "machine": machine_info(), "git": _git_state(repo_root())}
    before = speed_reference() if reference else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="shammie-bench-") as tmp:
        for script in map(Path, scripts):
            if echo:
                print(f"== bench/{script.name}", flush=True)
            rows.append(_run_one(script, python, Path(tmp) / f"{script.stem}.jsonl", timeout, echo))
    if reference:
        after = speed_reference()
        record["speed_reference"] = {**after, "ms_per_step": min(before["ms_per_step"], after["ms_per_step"]),
                                     "cpu_ms_per_step": min(before["cpu_ms_per_step"], after["cpu_ms_per_step"]),
                                     "before": before, "after": after}
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    record["scripts"] = rows
    record["targets"] = [t for r in rows for t in r["targets"]]
    record["seconds"] = round((_dt.datetime.now(_dt.UTC) - started).total_seconds(), 1)
    return record


def write_record(record: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    """Write a run's record as <out_dir>/<UTC start time>.json (default out_dir: reports/bench)."""
    out = Path(out_dir) if out_dir is not None else reports_dir() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.fromisoformat(record["started"]) if "started" in record else \
        _dt.datetime.now(_dt.UTC)
    stem = started.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = out / f"{stem}.json"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = out / f"{stem}-{n}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    """A kept bench run, checked: a JSON object of format shammie-bench/1 with a list of targets."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BenchError(f"no bench run at {path}") from err
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"{path} is not a bench run (JSON): {err}") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("targets"), list):
        raise BenchError(f"{path} is not a bench run of format {FORMAT} (written by `make bench`)")
    for i, t in enumerate(record["targets"]):
        _check_target(t, f"{path}, target {i}")
    return record


# =============================================================================================
# Reading runs


def _met(t: dict[str, Any]) -> bool:
    if "met" in t:
        return bool(t["met"])
    return t["value"] >= t["goal"] if t.get("higher_is_better", True) else t["value"] <= t["goal"]


def _fmt(value: float, unit: str) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value}{unit}"
    return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"


def summary_lines(record: dict[str, Any]) -> list[str]:
    """One line per target, met or MISSED with its number and goal, then one per failed script."""
    targets = record.get("targets", [])
    missed = [t for t in targets if not _met(t)]
    lines = [f"bench targets: {len(targets) - len(missed)} of {len(targets)} met"
             + (f", {len(missed)} MISSED" if missed else "")]
    width = max((len(t["name"]) for t in targets), default=10)
    for t in targets:
        unit = t.get("unit", "x")
        sign = ">=" if t.get("higher_is_better", True) else "<="
        lines.append(f"  {'met   ' if _met(t) else 'MISSED'}  {t['name']:<{width}}  {_fmt(t['value'], unit):>8}  "
                     f"(goal {sign} {t['goal']:g}{unit})" + (f"  [{t['script']}]" if t.get("script") else ""))
    for s in record.get("scripts", []):
        if s.get("returncode") != 0 or s.get("timed_out"):
            why = "timed out" if s.get("timed_out") else f"exit status {s.get('returncode')}"
            lines.append(f"  FAILED  {s['script']} ({why}, {len(s.get('targets', []))} target(s) reported): "
                         "see its output above")
        elif not s.get("targets"):
            lines.append(f"  (no targets)  {s['script']}")
    return lines


def _by_name(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in record.get("targets", [])}  # a name reported twice: the last report


def _change(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if a == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return b / a - 1.0


def compare_lines(a: dict[str, Any], b: dict[str, Any], *, threshold: float = 0.1, show_all: bool = False,
                  names: tuple[str, str] = ("A", "B")) -> list[str]:
    """The targets whose value moved by more than `threshold` (relative) from run `a` to run `b`, whose
    verdict changed (met <-> MISSED) or that only one run has; every target with `show_all`. The two
    machines and their speed references come first, since a ratio can move with the machine."""
    if threshold < 0:
        raise BenchError(f"threshold must be >= 0, got {threshold}")
    lines = []
    for label, rec in zip(names, (a, b)):
        m = rec.get("machine", {})
        ref = rec.get("speed_reference", {})
        ref_txt = f"reference {ref['cpu_ms_per_step']:.3g} CPU ms/step" if "cpu_ms_per_step" in ref else \
            "no speed reference"
        lines.append(f"{label}: {rec.get('started', '?')}  {m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} "
                     f"cores, torch {m.get('torch', '?')}, numpy {m.get('numpy', '?')}; {ref_txt}")
    ra, rb = a.get("speed_reference", {}), b.get("speed_reference", {})
    if ra.get("cpu_ms_per_step") and rb.get("cpu_ms_per_step"):
        speed = ra["cpu_ms_per_step"] / rb["cpu_ms_per_step"]
        lines.append(f"machine speed {names[1]}/{names[0]}: {speed:.2f}x (the reference workload; > 1: {names[1]} "
                     "ran faster)")
    ta, tb = _by_name(a), _by_name(b)
    order = list(ta) + [n for n in tb if n not in ta]
    rows = []
    for name in order:
        x, y = ta.get(name), tb.get(name)
        if x is None or y is None:
            t = x or y
            where = names[0] if x is not None else names[1]
            rows.append((name, _fmt(x["value"], x.get("unit", "x")) if x else "-",
                         _fmt(y["value"], y.get("unit", "x")) if y else "-", "", f"only in {where}",
                         "met" if _met(t) else "MISSED"))
            continue
        change = _change(x["value"], y["value"])
        flipped = _met(x) != _met(y)
        if not (show_all or flipped or abs(change) > threshold):
            continue
        better = (change > 0) == y.get("higher_is_better", True)
        word = "same" if change == 0 else ("better" if better else "worse")
        change_txt = "n/a" if math.isinf(change) else f"{change:+.0%}"
        verdict = f"{'met' if _met(x) else 'MISSED'} -> {'met' if _met(y) else 'MISSED'}" if flipped else \
            ("met" if _met(y) else "MISSED")
        rows.append((name, _fmt(x["value"], x.get("unit", "x")), _fmt(y["value"], y.get("unit", "x")), change_txt,
                     word, verdict))
    if not rows:
        lines.append(f"no target moved by more than {threshold:.0%} ({len(order)} compared; --all lists them)")
        return lines
    w = max(len(r[0]) for r in rows)
    lines.append(f"  {'target':<{w}}  {names[0]:>8}  {names[1]:>8}  {'change':>7}  {'':<14} verdict")
    for name, va, vb, ch, word, verdict in rows:
        lines.append(f"  {name:<{w}}  {va:>8}  {vb:>8}  {ch:>7}  {word:<14} {verdict}")
    return lines


def _kept_runs(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob("*.json") if p.is_file())


def _resolve_pair(files: Sequence[str], out_dir: Path) -> tuple[Path, Path]:
    if len(files) > 2:
        raise BenchError("compare takes at most two bench runs: A and B")
    if len(files) == 2:
        return Path(files[0]), Path(files[1])
    kept = _kept_runs(out_dir)
    if len(files) == 1:
        if not kept:
            raise BenchError(f"no bench run in {out_dir} to compare {files[0]} with: pass two files")
        return Path(files[0]), kept[-1]
    if len(kept) < 2:
        raise BenchError(f"compare needs two bench runs; {out_dir} has {len(kept)}: run `make bench` or pass files")
    return kept[-2], kept[-1]


# =============================================================================================
# Command line


def build_parser(prog: str = "python -m shammie bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the bench scripts and keep or compare their results.")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run every bench/bench_*.py, write reports/bench/<UTC time>.json, print targets")
    run.add_argument("--only", default=None, help="comma-separated parts of script names, e.g. calibration,decoder")
    run.add_argument("--out", default=None, help="folder for the run's JSON (default: reports/bench)")
    run.add_argument("--bench-dir", default=None, help="folder of the bench scripts (default: bench/ of the checkout)")
    run.add_argument("--timeout", type=float, default=None, help="seconds one script may run (default: no limit)")
    run.add_argument("--no-reference", action="store_true", help="skip the machine-speed reference workload")
    run.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (default: only printed)")
    cmp_ = sub.add_parser("compare", help="show the targets that moved between two bench runs")
    cmp_.add_argument("files", nargs="*", metavar="RUN.json",
                      help="A and B (default: the two newest in reports/bench; one file: it against the newest)")
    cmp_.add_argument("--threshold", type=float, default=0.1, help="relative change shown (default 0.1 = 10%%)")
    cmp_.add_argument("--all", action="store_true", help="list every target, moved or not")
    cmp_.add_argument("--out", default=None, help="folder of kept runs (default: reports/bench)")
    summ = sub.add_parser("summary", help="print the targets of a kept bench run, met or MISSED")
    summ.add_argument("file", nargs="?", default=None, metavar="RUN.json", help="default: the newest run")
    summ.add_argument("--out", default=None, help="folder of kept runs (default: reports/bench)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m shammie bench ...`: 0 when done (misses are printed, not failures, unless --strict),
    1 when a bench script failed, 2 on bad input."""
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out) if args.out else reports_dir() / "bench"
    try:
        if args.action == "run":
            only = [p.strip() for p in args.only.split(",") if p.strip()] if args.only else None
            record = run_benchmarks(bench_scripts(args.bench_dir, only), timeout=args.timeout,
                                    reference=not args.no_reference)
            path = write_record(record, out_dir)
            print()
            print("\n".join(summary_lines(record)))
            ref = record.get("speed_reference")
            if ref:
                print(f"machine: {record['machine']['cpu_model']}; reference {ref['cpu_ms_per_step']:.3g} CPU ms/step "
                      f"({ref['ms_per_step']:.3g} wall); load {record['machine'].get('load_average', '?')}")
            print(f"kept: {path}  (compare two runs: python -m shammie bench compare A B)")
            failed = any(s["returncode"] != 0 or s.get("timed_out") for s in record["scripts"])
            if failed:
                return 1
            return 1 if args.strict and any(not _met(t) for t in record["targets"]) else 0
        if args.action == "compare":
            a, b = _resolve_pair(args.files, out_dir)
            print(f"A = {a}\nB = {b}")
            print("\n".join(compare_lines(load_record(a), load_record(b), threshold=args.threshold,
                                          show_all=args.all)))
            return 0
        path = Path(args.file) if args.file else (_kept_runs(out_dir) or [None])[-1]
        if path is None:
            raise BenchError(f"no bench run in {out_dir}: run `make bench`")
        record = load_record(path)
        print(f"{path}: {record.get('started', '?')}, {record.get('machine', {}).get('cpu_model', '?')}")
        print("\n".join(summary_lines(record)))
        return 0
    except BenchError as err:
        print(f"shammie bench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
