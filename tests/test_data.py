import pickle
import random

import numpy as np
import pytest
import torch

from shammie.core import ShammieError
from shammie.data import (
    CORRUPTIONS,
    DataUnavailableError,
    corrupt,
    load_cifar10,
    load_mnist1d,
    mnist1d_args,
    reference_table,
    train_val_split,
)


@pytest.fixture(scope="module")
def small():
    return load_mnist1d(num_samples=500, seed=7)


def test_mnist1d_shapes_types_and_split(small):
    assert small.x_train.shape == (400, 40) and small.x_test.shape == (100, 40)
    assert small.x_train.dtype == torch.float32 and small.y_train.dtype == torch.int64
    assert set(small.y_train.unique().tolist()) == set(range(10))


def test_mnist1d_default_is_the_published_split():
    args = mnist1d_args()
    assert args["num_samples"] == 5000 and args["train_split"] == 0.8 and "url" not in args


def test_mnist1d_is_deterministic_and_cache_equals_fresh(small, tmp_path, monkeypatch):
    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    fresh = load_mnist1d(num_samples=500, seed=7, cache=False)
    cached_first = load_mnist1d(num_samples=500, seed=7)  # writes the cache
    files = list((tmp_path / "cache").glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob(".*"))  # no temp files left
    cached = load_mnist1d(num_samples=500, seed=7)  # reads it
    for a in (fresh, cached_first, cached):
        torch.testing.assert_close(a.x_train, small.x_train)
        torch.testing.assert_close(a.y_test, small.y_test)
    other = load_mnist1d(num_samples=500, seed=8)
    assert not torch.equal(other.x_train, small.x_train)
    assert len(list((tmp_path / "cache").glob("mnist1d-*.npz"))) == 2  # keyed by the arguments


def test_mnist1d_leaves_global_rngs_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    load_mnist1d(num_samples=100, seed=3, cache=False)
    assert (random.random(), np.random.rand()) == expected


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "same-size-changed", "no-record"])
def test_mnist1d_damaged_cache_is_named_rebuilt_and_run_goes_on(tmp_path, monkeypatch, damage):
    from shammie.cache import CacheWarning, record_path, verify

    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    good = load_mnist1d(num_samples=100, seed=3)
    (path,) = (tmp_path / "cache").glob("mnist1d-*.npz")
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])  # was BadZipFile
    elif damage == "empty":
        path.write_bytes(b"")  # was EOFError
    elif damage == "garbage":
        path.write_bytes(b"not a zip")
    elif damage == "same-size-changed":
        path.write_bytes(blob[:-8] + bytes(8))
    else:
        record_path(path).unlink()
    with pytest.warns(CacheWarning, match=f"{path.name}.*damaged.*rebuilding"):
        again = load_mnist1d(num_samples=100, seed=3)
    torch.testing.assert_close(again.x_train, good.x_train)
    assert verify(path) is None  # rebuilt and recorded: the next read is clean
    assert load_mnist1d(num_samples=100, seed=3).x_train.shape == (80, 40)


def test_mnist1d_cache_files_are_readable_by_others(tmp_path, monkeypatch):
    import os
    import stat

    from shammie.cache import record_path

    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    old = os.umask(0o022)
    try:
        load_mnist1d(num_samples=100, seed=4)
    finally:
        os.umask(old)
    (path,) = (tmp_path / "cache").glob("mnist1d-*.npz")
    for p in (path, record_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_mnist1d_bad_arguments():
    with pytest.raises(ShammieError, match="num_samples"):
        load_mnist1d(num_samples=5)
    with pytest.raises(ShammieError, match="unknown MNIST-1D argument"):
        load_mnist1d(num_samples=100, noise=3)


def test_train_val_split_is_stratified_disjoint_and_seeded(small):
    x, y = small.x_train, small.y_train
    xt, yt, xv, yv = train_val_split(x, y, 0.25, seed=0)
    assert len(xt) + len(xv) == len(x)
    counts, val_counts = np.bincount(y.numpy(), minlength=10), np.bincount(yv.numpy(), minlength=10)
    assert np.all(np.abs(val_counts - 0.25 * counts) <= 0.5 + 1e-9)
    rows = {tuple(r.tolist()) for r in xt}
    assert not any(tuple(r.tolist()) in rows for r in xv)
    again = train_val_split(x, y, 0.25, seed=0)
    assert torch.equal(again[2], xv)
    with pytest.raises(ShammieError):
        train_val_split(x, y, 1.5)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruptions_are_seeded_shape_preserving_and_grow_with_severity(small, kind):
    x = small.x_test
    outs = [corrupt(x, kind, s, seed=0) for s in range(1, 6)]
    assert all(o.shape == x.shape and o.dtype == x.dtype for o in outs)
    assert torch.equal(outs[2], corrupt(x, kind, 3, seed=0))
    dist = [float((o - x).pow(2).mean()) for o in outs]
    assert dist[0] > 0 and dist[-1] > dist[0]


def test_corrupt_bad_input(small):
    with pytest.raises(ShammieError, match="unknown corruption"):
        corrupt(small.x_test, "fog", 1)
    with pytest.raises(ShammieError, match="severity"):
        corrupt(small.x_test, "shift", 6)


def test_reference_table():
    table = reference_table("mnist1d_baselines").set_index("model")
    assert table.loc["cnn", "test_accuracy"] == 0.94
    with pytest.raises(ShammieError, match="no reference table"):
        reference_table("nope")


# --- CIFAR-10: the real torchvision loader, on a tiny fake in the real on-disk format ---------------

def _write_fake_cifar(root, n_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        # the real files are Python 2 pickles of dicts with str keys (read back with encoding="latin1")
        batch = {"batch_label": f"{name} of 5", "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n_per_batch).tolist(), "filenames": ["x.png"] * n_per_batch}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    meta = {"label_names": "airplane automobile bird cat deer dog frog horse ship truck".split(),
            "num_cases_per_batch": n_per_batch, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return folder


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    import hashlib

    import torchvision

    folder = _write_fake_cifar(tmp_path)
    # torchvision verifies each file's MD5 against the real archive's: point it at the fake's MD5s,
    # so that the integrity check itself still runs
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5[n]] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5[n]] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    return tmp_path


def test_cifar10_loads_the_real_format(fake_cifar):
    train = load_cifar10(fake_cifar, train=True)
    test = load_cifar10(fake_cifar, train=False, normalize=False)
    assert len(train) == 20 and len(test) == 4
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0.0 <= x.min() and x.max() <= 1.0 and 0 <= y < 10
    xn, _ = train[0]
    assert xn.min() < 0  # normalised
    assert train.classes[0] == "airplane"
    xa, _ = load_cifar10(fake_cifar, train=True, augment=True)[0]
    assert xa.shape == (3, 32, 32)


def test_cifar10_corrupted_file_is_refused_with_help(fake_cifar):
    (fake_cifar / "cifar-10-batches-py" / "test_batch").write_bytes(b"truncated")
    with pytest.raises(DataUnavailableError, match="not available"):
        load_cifar10(fake_cifar, train=False)


def test_cifar10_missing_says_what_to_do(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"not on disk(.|\n)*download=True(.|\n)*cifar-10-batches-py"):
        load_cifar10(tmp_path / "empty", download=False)
