"""Listing images: hidden files left out; shards of a folder that an added image changes only one of."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.data.listing import image_files, image_shards


def test_shards_hold_every_image_once_sorted_and_about_the_asked_size() -> None:
    images = [Path(f"folder/img{index:04d}.png") for index in range(1000)]
    shards = image_shards(images, 100)
    assert len(shards) <= 16 and sum(len(s) for s in shards.values()) == 1000  # 10 needed: 16, a power of two
    assert sorted(p for s in shards.values() for p in s) == sorted(images)
    assert all(s == sorted(s) for s in shards.values())
    assert max(len(s) for s in shards.values()) < 2 * 1000 / 16  # spread, not piled into a few
    assert image_shards(images[:3], 100) == {next(iter(image_shards(images[:3], 100))): sorted(images[:3])}


def test_adding_an_image_changes_only_its_own_shard() -> None:
    images = [Path(f"img{index:04d}.png") for index in range(700)]
    before = image_shards(images, 100)  # 7 needed: 8 shards
    added = Path("a-new-one.jpg")
    after = image_shards([*images, added], 100)
    changed = [k for k in after if after[k] != before.get(k)]
    assert len(changed) == 1 and added in after[changed[0]]
    assert image_shards(images[:100], 100).keys() == {0}  # one shard: no split
    with pytest.raises(DdpmsegError, match="shard_size 0 must be at least 1"):
        image_shards(images, 0)


def test_hidden_files_are_not_images(tmp_path) -> None:
    for name in ("a.png", "._a.png", ".thumb.png", "b.JPG"):
        (tmp_path / name).write_bytes(b"x")
    assert image_files([tmp_path]) == [tmp_path / "a.png", tmp_path / "b.JPG"]
    (tmp_path / "a.png").unlink()
    (tmp_path / "b.JPG").unlink()
    with pytest.raises(DdpmsegError, match="holds no .png/.jpg/.jpeg images"):
        image_files([tmp_path])
