"""Atomic writes: complete or absent, and no leftovers from killed writers."""

from __future__ import annotations

import pytest

from ddpmseg.files import atomic_directory, atomic_path, save_json


def test_failed_write_leaves_nothing(tmp_path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_directory_replaced_only_when_complete(tmp_path) -> None:
    target = tmp_path / "store.zarr"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("failed")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["store.zarr"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path) -> None:
    (tmp_path / ".store.zarr.x1y2.tmp").mkdir()  # as a SIGKILLed job leaves them
    (tmp_path / ".store.zarr.x1y2.tmp" / "chunk").write_text("partial")
    (tmp_path / ".out.json.abcd.tmp").write_text("partial")
    (tmp_path / ".other.json.abcd.tmp").write_text("someone else's")
    with atomic_directory(tmp_path / "store.zarr") as tmp:
        (tmp / "a").write_text("1")
    save_json(tmp_path / "out.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abcd.tmp", "out.json", "store.zarr"]
