"""The embedded demo dataset."""

from __future__ import annotations

import numpy as np

from ddpmseg.data.datasets import list_samples, split_folder, summarize_split
from ddpmseg.data.demo import (
    CLASS_NAMES,
    IGNORE_LABEL,
    render_scene,
    scene_rng,
    write_demo_dataset,
)


def test_layout_is_the_archive_layout(tmp_path) -> None:
    root = tmp_path / "demo"
    write_demo_dataset(root, seed=0, image_size=32, train=3, test=2, unlabelled=4)
    assert [s.name for s in list_samples(split_folder(root, "train"))] == ["0000", "0001", "0002"]
    assert len(list_samples(split_folder(root, "test"))) == 2
    assert len(list((root / "unlabelled").glob("*.png"))) == 4
    summary = summarize_split(split_folder(root, "train"), 3, 32, len(CLASS_NAMES), IGNORE_LABEL)
    assert summary["ignored_pixels"] > 0
    assert summary["class_pixels"][0] > 0 and sum(summary["class_pixels"][1:]) > 0


def test_deterministic_for_a_seed_whatever_the_counts(tmp_path) -> None:
    write_demo_dataset(tmp_path / "a", seed=5, image_size=32, train=2, test=1, unlabelled=1)
    write_demo_dataset(tmp_path / "b", seed=5, image_size=32, train=4, test=1, unlabelled=1)
    for name in ["0000.png", "0000.npy", "0001.png", "0001.npy"]:
        assert (tmp_path / "a/real/train" / name).read_bytes() == (tmp_path / "b/real/train" / name).read_bytes()
    image_a, _ = render_scene(scene_rng(5, "train", 0), 32)
    image_c, _ = render_scene(scene_rng(6, "train", 0), 32)
    assert not np.array_equal(image_a, image_c)


def test_scenes_hold_every_class_over_a_few_images() -> None:
    labels = set()
    for index in range(20):
        image, mask = render_scene(scene_rng(0, "train", index), 64)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        labels |= set(np.unique(mask).tolist())
    assert labels == set(range(len(CLASS_NAMES))) | {IGNORE_LABEL}
