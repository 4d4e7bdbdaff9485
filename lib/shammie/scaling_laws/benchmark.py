"""The paper's released benchmark: 92 learning curves in two CSVs (google-research/google-research,
folder revisiting_neural_scaling_laws/data), columns Domain,Task,Model,Seen Examples,Loss,Training.

Nothing is downloaded unless asked (`download=True`). A download is written atomically with its
SHA-256 beside it; every later read checks it, and a damaged file is named and fetched again (or, when
offline, reported with what to do). Tests use a tiny CSV in the same format.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd

from ..core import ShammieError, cache_dir

__all__ = ["BENCHMARK_FILES", "BENCHMARK_URL", "BenchmarkUnavailable", "load_benchmark", "read_benchmark_csv",
           "benchmark_curves", "RANDOM_GUESS"]

BENCHMARK_URL = ("https://raw.githubusercontent.com/google-research/google-research/master/"
                 "revisiting_neural_scaling_laws/data/{name}")
BENCHMARK_FILES = ("benchmark.lang.csv", "benchmark.vision.csv")
COLUMNS = ["Domain", "Task", "Model", "Seen Examples", "Loss", "Training"]
#: the random-guessing level the paper fixes eps_0 at, per domain (losses are error rates or rescaled to <= 1)
RANDOM_GUESS = {"IC": 1.0, "NMT": 1.0, "LM": 1.0, "BB": 1.001}


class BenchmarkUnavailable(ShammieError):
    """The benchmark CSVs are not in the cache and could not be downloaded."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_benchmark_csv(path: Path) -> pd.DataFrame:
    """One benchmark CSV as a tidy frame: duplicated rows dropped (the LM rows repeat 3-4 times), task
    and model kept as strings, sorted by curve and x; a clear error when a column is missing."""
    df = pd.read_csv(path, dtype={"Task": str, "Model": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ShammieError(f"{path}: not a benchmark CSV (missing columns {missing}; expected {COLUMNS})")
    df = df[COLUMNS].drop_duplicates()
    df["Training"] = df["Training"].astype(int)
    return df.sort_values(["Domain", "Task", "Model", "Seen Examples"]).reset_index(drop=True)


def _fetch(name: str, dest: Path) -> None:
    url = BENCHMARK_URL.format(name=name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=dest.parent)
    try:
        with urllib.request.urlopen(url, timeout=20) as resp, os.fdopen(fd, "wb") as out:
            out.write(resp.read())
        read_benchmark_csv(Path(tmp))  # refuse an error page saved as CSV
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dest.with_suffix(".csv.sha256").write_text(_sha256(dest) + "\n")


def load_benchmark(folder: Path | None = None, download: bool = False) -> pd.DataFrame:
    """Both benchmark CSVs as one frame, from `folder` (default data/cache/scaling_laws). With
    `download=True` a missing or damaged file is fetched; otherwise its absence is an error that says
    how to get it."""
    folder = Path(folder) if folder else cache_dir() / "scaling_laws"
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for name in BENCHMARK_FILES:
        path = folder / name
        digest = path.with_suffix(".csv.sha256")
        ok = path.exists() and (not digest.exists() or digest.read_text().strip() == _sha256(path))
        if not ok:
            why = "is damaged (its checksum differs)" if path.exists() else "is not in the cache"
            if not download:
                raise BenchmarkUnavailable(f"{path} {why}. Run with use_benchmark=True on a machine with network "
                                           f"to download it, or place the file from {BENCHMARK_URL.format(name=name)} there.")
            try:
                _fetch(name, path)
            except OSError as err:
                raise BenchmarkUnavailable(f"{path} {why} and the download failed ({err}); the benchmark needs "
                                           f"network once: {BENCHMARK_URL.format(name=name)}") from err
        frames.append(read_benchmark_csv(path))
    return pd.concat(frames, ignore_index=True)


def benchmark_curves(df: pd.DataFrame):
    """Yield (domain, task, model, x, y, fit_mask) per curve, x sorted, duplicated x averaged."""
    for (domain, task, model), g in df.groupby(["Domain", "Task", "Model"], sort=True):
        g = g.groupby("Seen Examples", as_index=False).agg(Loss=("Loss", "mean"), Training=("Training", "max"))
        yield domain, task, model, g["Seen Examples"].to_numpy(float), g["Loss"].to_numpy(float), g["Training"].to_numpy() == 1
