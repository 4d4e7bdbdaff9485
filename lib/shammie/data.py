"""Data: MNIST-1D generated offline and cached, CIFAR-10 through torchvision, and input corruptions.

MNIST-1D (Greydanus & Kobak, arXiv 2011.14439) is made by `mnist1d.data.make_dataset`, never by
`get_dataset` (which downloads). Generation takes seconds, so the arrays are cached under
`data/cache/` in a file named by a hash of the generator's arguments, written atomically with a
checksum beside it (`shammie.cache`): a damaged cache file is named, rebuilt, and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from .cache import cached_file
from .core import ShammieError, cache_dir, data_dir

__all__ = [
    "ArrayDataset",
    "DataUnavailableError",
    "mnist1d_args",
    "load_mnist1d",
    "train_val_split",
    "load_cifar10",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CORRUPTIONS",
    "corrupt",
    "MNIST1D_CLASSES",
    "reference_table",
]

MNIST1D_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class DataUnavailableError(ShammieError):
    """A data set is neither on disk nor downloadable; the message says how to provide it."""


@dataclass
class ArrayDataset:
    """A train/test split held as tensors: inputs float32 of shape (N, ...), labels int64 of shape (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"ArrayDataset({self.name!r}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
            f"{self.num_classes} classes)"
        )


def mnist1d_args(**overrides) -> dict:
    """MNIST-1D generator arguments: the package defaults (5000 samples, 80/20 split, seed 42) plus overrides."""
    from mnist1d.data import get_dataset_args

    args = dict(vars(get_dataset_args()))
    args.pop("url", None)  # where `get_dataset` would download from; generation never uses it
    unknown = [k for k in overrides if k not in args]
    if unknown:
        raise ShammieError(f"unknown MNIST-1D argument(s) {unknown}; known: {sorted(args)}")
    args.update(overrides)
    return args


def _cache_key(kind: str, args: dict) -> str:
    blob = json.dumps({"kind": kind, **args}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_npz(arrays: dict[str, np.ndarray], tmp: str) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    missing = [k for k in ("x", "y", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ValueError(f"arrays {missing} missing")
    return arrays


def load_mnist1d(num_samples: int = 5000, seed: int = 42, cache: bool = True, **overrides) -> ArrayDataset:
    """MNIST-1D with `num_samples` examples (80% train, 20% test by default), generated offline.

    The default arguments give the published 4000/1000 split. `make_dataset` reseeds Python's and
    NumPy's global RNGs; this function restores both, so seed torch and NumPy wherever you like.
    """
    if not isinstance(num_samples, int) or num_samples < 10:
        raise ShammieError(f"num_samples must be an int >= 10, got {num_samples!r}")
    args = mnist1d_args(num_samples=num_samples, seed=seed, **overrides)
    path = cache_dir() / f"mnist1d-{_cache_key('mnist1d', args)}.npz"

    def generate() -> dict[str, np.ndarray]:
        from types import SimpleNamespace

        from mnist1d.data import make_dataset

        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            d = make_dataset(SimpleNamespace(**args))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test", "t")}

    if cache:
        arrays = cached_file(path, _load_npz, generate, _save_npz, what="MNIST-1D cache file")
    else:
        arrays = generate()
    return ArrayDataset(
        x_train=torch.as_tensor(arrays["x"], dtype=torch.float32),
        y_train=torch.as_tensor(arrays["y"], dtype=torch.int64),
        x_test=torch.as_tensor(arrays["x_test"], dtype=torch.float32),
        y_test=torch.as_tensor(arrays["y_test"], dtype=torch.int64),
        num_classes=10,
        name=f"MNIST-1D (n={num_samples}, seed={seed})",
    )


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split (x, y) into train and validation parts, stratified by class; returns x_tr, y_tr, x_val, y_val."""
    if not 0 < val_fraction < 1:
        raise ShammieError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(x) != len(y):
        raise ShammieError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    rng = np.random.default_rng(seed)
    labels = y.cpu().numpy()
    val_idx = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val_idx.append(idx[: int(round(len(idx) * val_fraction))])
    val = np.sort(np.concatenate(val_idx))
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    tr = np.flatnonzero(mask)
    return x[tr], y[tr], x[val], y[val]


def load_cifar10(
    root: str | Path | None = None,
    train: bool = True,
    download: bool = False,
    augment: bool = False,
    normalize: bool = True,
):
    """torchvision's CIFAR-10 from `root` (default `data/`), with the standard normalisation.

    With `download=True` torchvision fetches it when missing; when it is missing and cannot be
    fetched, a DataUnavailableError says where to put the files.
    """
    import torchvision
    from torchvision import transforms as T

    root = Path(root) if root is not None else data_dir()
    steps = []
    if augment:
        steps += [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    steps.append(T.ToTensor())
    if normalize:
        steps.append(T.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    transform = T.Compose(steps)
    folder = root / "cifar-10-batches-py"
    try:
        return torchvision.datasets.CIFAR10(str(root), train=train, transform=transform, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataUnavailableError(_cifar_help(folder, download, err)) from err
    except OSError as err:  # no network
        raise DataUnavailableError(_cifar_help(folder, download, err)) from err


def _cifar_help(folder: Path, download: bool, err: Exception) -> str:
    how = (
        "the download failed (no network?)" if download else "it is not on disk and download=False"
    )
    return (
        f"CIFAR-10 is not available: {how} ({err}).\n"
        f"Fix: on a machine with network, run\n"
        f"    python -c \"import torchvision; torchvision.datasets.CIFAR10('{folder.parent}', download=True)\"\n"
        f"or copy the extracted 'cifar-10-batches-py' folder (from cifar-10-python.tar.gz, "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) to {folder}.\n"
        f"The smoke and quick profiles need no CIFAR-10: they use MNIST-1D."
    )


# ---------------------------------------------------------------------------------------------
# Corruptions for distribution shift. Each takes inputs whose last axis is the signal (time for
# MNIST-1D, width for images), a severity 1..5, and a numpy Generator; returns a corrupted copy.

def _noise(x, s, rng):
    return x + [0.1, 0.2, 0.4, 0.6, 0.8][s - 1] * rng.standard_normal(x.shape)


def _correlated_noise(x, s, rng):
    n = gaussian_filter1d(rng.standard_normal(x.shape), 2.0, axis=-1)
    n /= n.std() + 1e-12
    return x + [0.1, 0.2, 0.4, 0.6, 0.8][s - 1] * n


def _shift(x, s, rng):
    k = [2, 4, 8, 12, 16][s - 1]
    signs = rng.choice([-1, 1], size=x.shape[0])
    return np.stack([np.roll(xi, int(sg) * k, axis=-1) for xi, sg in zip(x, signs)])


def _scale(x, s, rng):
    return x * [0.8, 0.6, 0.5, 0.4, 0.3][s - 1]


def _blur(x, s, rng):
    return gaussian_filter1d(x, [0.5, 1.0, 1.5, 2.0, 2.5][s - 1], axis=-1)


def _mask(x, s, rng):
    keep = rng.random(x.shape) >= [0.05, 0.1, 0.2, 0.3, 0.4][s - 1]
    return x * keep


CORRUPTIONS = {
    "gaussian_noise": _noise,
    "correlated_noise": _correlated_noise,
    "shift": _shift,
    "scale": _scale,
    "blur": _blur,
    "mask": _mask,
}


def corrupt(x: torch.Tensor, kind: str, severity: int, seed: int = 0) -> torch.Tensor:
    """A corrupted copy of `x` with corruption `kind` at `severity` 1 (mild) to 5 (harsh); seeded."""
    if kind not in CORRUPTIONS:
        raise ShammieError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ShammieError(f"severity must be 1..5, got {severity!r}")
    rng = np.random.default_rng([seed, severity, list(CORRUPTIONS).index(kind)])
    arr = x.detach().cpu().numpy().astype(np.float64)
    out = CORRUPTIONS[kind](arr, severity, rng)
    return torch.as_tensor(np.ascontiguousarray(out), dtype=x.dtype)


def reference_table(name: str):
    """A table of a paper's published numbers, `data/reference/<name>.csv`, as a pandas DataFrame."""
    import pandas as pd

    path = data_dir() / "reference" / f"{name}.csv"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.csv"))
        raise ShammieError(f"no reference table {name!r} in {path.parent}; known: {', '.join(known) or 'none'}")
    return pd.read_csv(path)
