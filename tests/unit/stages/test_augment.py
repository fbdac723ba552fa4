"""Stage augment: the augmented copies of the training images, as the name of their image set says."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from conftest import make_dataset
from PIL import Image

from ddpmseg.data.augment import augment_copies
from ddpmseg.config.imagesets import parse_augmentation_set
from ddpmseg.data.datasets import load_split
from ddpmseg.stages.augment import augment_training_set


def test_augmented_copies_are_written_image_major_in_the_archive_layout(tmp_path) -> None:
    root = make_dataset(tmp_path / "d", train=3, test=1, number_class=3)
    split = {"images": str(root / "real" / "train")}
    settings = parse_augmentation_set("aug-x3-p0.5-s4")
    dataset = {"training_number": 2, "image_size": 32, "number_class": 3, "ignore_label": 255}
    augment_training_set(images=tmp_path / "aug", split=split, settings=asdict(settings), **dataset)

    folder = tmp_path / "aug" / "real" / "train"
    names = ["000-aug00", "000-aug01", "001-aug00", "001-aug01"]
    assert sorted(p.stem for p in folder.glob("*.png")) == names
    _, originals, masks = load_split(split, 2, 0, 2, image_size=32, number_class=3, ignore_label=255)
    images, copy_masks = augment_copies(originals, masks, 2, 4, 255, p=0.5)
    for name, image, mask in zip(names, images, copy_masks, strict=True):
        assert np.array_equal(np.asarray(Image.open(folder / f"{name}.png")), image)
        assert np.array_equal(np.load(folder / f"{name}.npy"), mask)
