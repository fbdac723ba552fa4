"""Atomic writes: complete or absent, and no leftovers from killed writers."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import numpy as np
import pytest

from ddpmseg.data.archive import extract_archive
from ddpmseg.base.files import atomic_directory, atomic_path, save_json, save_npy, save_text


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


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    """Run the test under this umask, then put the old one back."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_atomic_files_get_the_umask_modes_of_new_files(tmp_path, umask) -> None:
    save_json(tmp_path / "table.json", {"a": 1})
    save_npy(tmp_path / "labels.npy", np.zeros(3))
    save_text(tmp_path / "sub" / "table.md", "| a |\n")
    for name in ("table.json", "labels.npy", "sub/table.md"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name
    assert mode(tmp_path / "sub") == 0o777 & ~umask


def test_atomic_directories_and_their_contents_get_the_umask_modes(tmp_path, umask) -> None:
    target = tmp_path / "store.zarr"
    with atomic_directory(target) as tmp:
        (tmp / "group" / "deeper").mkdir(parents=True, mode=0o700)
        (tmp / "group" / "deeper" / "chunk").write_bytes(b"x")
        (tmp / "zarr.json").write_text("{}")
        os.chmod(tmp / "zarr.json", 0o600)
        save_json(tmp / "group" / "attrs.json", {})  # itself an atomic write inside the folder
    assert mode(target) == 0o777 & ~umask
    for folder in ("group", "group/deeper"):
        assert mode(target / folder) == 0o777 & ~umask, folder
    for name in ("zarr.json", "group/deeper/chunk", "group/attrs.json"):
        assert mode(target / name) == 0o666 & ~umask, name


def test_extracted_archives_get_the_umask_modes(tmp_path, umask) -> None:
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("real/train/000.png")
        info.size, info.mode = 3, 0o600
        tar.addfile(info, io.BytesIO(b"png"))
    extract_archive(archive, tmp_path / "dataset")
    assert mode(tmp_path / "dataset") == 0o777 & ~umask
    assert mode(tmp_path / "dataset" / "real" / "train") == 0o777 & ~umask
    assert mode(tmp_path / "dataset" / "real" / "train" / "000.png") == 0o666 & ~umask
