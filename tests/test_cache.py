"""Cache files: atomic writes, a checksum record beside each, damage named and rebuilt (issue 10, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shammie.cache import CacheWarning, cached_file, record_path, verify, write_atomic


def _text_cache(path: Path, calls: list[int], load=None):
    def build():
        calls.append(1)
        return "payload"

    return cached_file(path, load or (lambda p: p.read_text()), build, lambda obj, tmp: Path(tmp).write_text(obj),
                       what="test cache file")


def test_first_call_builds_then_loads(tmp_path):
    calls: list[int] = []
    path = tmp_path / "sub" / "x.txt"
    assert _text_cache(path, calls) == "payload" and calls == [1]
    record = json.loads(record_path(path).read_text())
    assert record["size"] == len("payload") and len(record["sha256"]) == 64 and verify(path) is None
    assert _text_cache(path, calls) == "payload" and calls == [1]
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.txt", "x.txt.sha256"]  # no temp files left


@pytest.mark.parametrize("damage,reason", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"pay"), "truncated"),
    (lambda p: p.write_bytes(b"PAYLOAD"), "checksum does not match"),
    (lambda p: record_path(p).unlink(), "no checksum record"),
    (lambda p: record_path(p).write_text("{"), "unreadable"),
])
def test_damage_is_named_and_rebuilt(tmp_path, damage, reason):
    calls: list[int] = []
    path = tmp_path / "x.txt"
    _text_cache(path, calls)
    damage(path)
    with pytest.warns(CacheWarning, match=rf"test cache file {path}.*damaged: .*{reason}.*rebuilding"):
        assert _text_cache(path, calls) == "payload"
    assert calls == [1, 1] and verify(path) is None


def test_a_loader_that_fails_means_damage(tmp_path):
    calls: list[int] = []
    path = tmp_path / "x.txt"
    _text_cache(path, calls)

    def bad(p):
        raise EOFError("Ran out of input")

    with pytest.warns(CacheWarning, match="could not be loaded .EOFError: Ran out of input"):
        assert _text_cache(path, calls, load=bad) == "payload"
    assert calls == [1, 1]


def test_an_unwritable_cache_warns_and_goes_on(tmp_path, monkeypatch):
    def refuse(path, write):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("shammie.cache.write_atomic", refuse)
    with pytest.warns(CacheWarning, match="could not write test cache file .*Permission denied"):
        assert _text_cache(tmp_path / "x.txt", []) == "payload"


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.txt"
    write_atomic(path, lambda tmp: Path(tmp).write_text("old"))

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "old" and verify(path) is None and len(list(tmp_path.iterdir())) == 2
