"""Rule of ``augment.smk``: augmented copies of a dataset's training images (training-time augmentation)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.augment import augment_copies
from ..config.imagesets import AugmentationSettings
from ..data.datasets import Split, load_split, split_folder
from ..base.files import atomic_directory


def augment_training_set(
    *,
    images: str | Path,
    split: Split | dict,
    settings: Mapping[str, Any],
    training_number: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Write ``scale - 1`` augmented copies of every training image and mask into ``images`` (archive
    layout, ``real/train``); ``settings``: the fields of :class:`ddpmseg.config.imagesets.AugmentationSettings`."""
    augmentation = AugmentationSettings(**settings)
    names, originals, masks = load_split(
        split, training_number, 0, training_number,
        image_size=image_size, number_class=number_class, ignore_label=ignore_label,
    )
    copies_images, copies_masks = augment_copies(
        originals, masks, augmentation.copies, augmentation.seed, ignore_label, p=augmentation.p
    )
    copy_names = [f"{name}-aug{copy:02d}" for name in names for copy in range(augmentation.copies)]  # image-major
    with atomic_directory(images) as tmp:
        folder = split_folder(tmp, "train")
        folder.mkdir(parents=True)
        for name, image, mask in zip(copy_names, copies_images, copies_masks, strict=True):
            Image.fromarray(image).save(folder / f"{name}.png")
            np.save(folder / f"{name}.npy", mask)
