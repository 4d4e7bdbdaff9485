"""Cache files that detect damage: written atomically with a checksum beside them, rebuilt when damaged.

Every generated, re-creatable file under `data/cache/` (MNIST-1D arrays, checkpoints) goes through
`cached_file`: the file is written to a temporary name in the same folder and renamed into place,
and `<file>.sha256` beside it records its size and SHA-256. A read first checks the record, then
loads; a file that is truncated, empty, unreadable or fails its loader is reported by name (a
`CacheWarning`), deleted and rebuilt, and the run carries on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CacheWarning", "cached_file", "write_atomic", "verify", "record_path", "FILE_MODE"]

T = TypeVar("T")

#: permission bits of the files written here (before the umask): readable by everyone, like any file
FILE_MODE = 0o644


class CacheWarning(UserWarning):
    """A cache file was damaged (or had no checksum record) and is being rebuilt."""


def record_path(path: Path) -> Path:
    """The checksum record kept beside `path`: `<name>.sha256` (JSON with size and sha256)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _umasked(mode: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _replace_from_temp(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umasked(FILE_MODE))  # mkstemp makes 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` by calling `write(temp_name)`, rename it into place, then record its checksum.

    `write` receives a path string in the same folder and must create the file there completely.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_from_temp(path, write)
    size, sha = _digest(path)
    blob = json.dumps({"size": size, "sha256": sha}).encode()

    def write_record(tmp: str) -> None:
        Path(tmp).write_bytes(blob)

    _replace_from_temp(record_path(path), write_record)
    return path


def verify(path: str | Path) -> str | None:
    """None when `path` matches its checksum record, else why not (missing, empty, truncated, ...)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    rec = record_path(path)
    try:
        expected = json.loads(rec.read_text())
        want_size, want_sha = int(expected["size"]), str(expected["sha256"])
    except FileNotFoundError:
        return f"no checksum record {rec.name} beside it"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its checksum record {rec.name} is unreadable"
    try:
        size, sha = _digest(path)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0 and want_size != 0:
        return "empty (0 bytes)"
    if size != want_size:
        return f"truncated or changed: {size} bytes, {want_size} expected"
    if sha != want_sha:
        return "its checksum does not match"
    return None


def _discard(path: Path) -> None:
    for p in (path, record_path(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def cached_file(path: str | Path, load: Callable[[Path], T], build: Callable[[], Any],
                save: Callable[[Any, str], None], *, what: str = "cache file",
                after_build: Callable[[Any], T] | None = None) -> T:
    """Load `path` with `load(path)` when it is intact; otherwise `build()`, save it, and return it.

    A damaged file (checksum mismatch, empty, truncated, or `load` raising) is named in a
    CacheWarning, removed and rebuilt. `save(obj, temp_name)` writes what `build` returned;
    `after_build(obj)` turns it into what `load` would have returned (default: `obj` itself).
    """
    path = Path(path)
    if path.exists():
        problem = verify(path)
        if problem is None:
            try:
                return load(path)
            except Exception as err:  # noqa: BLE001 - any failure to load means the file is unusable
                problem = f"it could not be loaded ({type(err).__name__}: {err})"
        warnings.warn(f"shammie: {what} {path} is damaged: {problem}; rebuilding it", CacheWarning, stacklevel=2)
        _discard(path)
    obj = build()
    try:
        write_atomic(path, lambda tmp: save(obj, tmp))
    except OSError as err:  # a read-only cache folder must not stop the run
        warnings.warn(f"shammie: could not write {what} {path}: {err.strerror or err}", CacheWarning, stacklevel=2)
    return after_build(obj) if after_build else obj
