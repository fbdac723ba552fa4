"""Rule of ``tta.smk``: one test-time augmentation view of a dataset's test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.datasets import Split, load_split, split_folder
from ..base.files import atomic_directory
from ..prediction.tta import apply_view
from ..prediction.views import view_is_flipped


def make_tta_view(
    *,
    images: str | Path,
    split: Split | dict,
    view: Sequence[str],
    seed: int,
    testing_number: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Write one view of the test split into ``images``: view images, masks in the view's frame
    (ignore_label where the view removed content) and ``valid/<name>.npy`` (False where it did)."""
    names, originals, masks = load_split(
        split, testing_number, 0, testing_number, image_size=image_size, number_class=number_class, ignore_label=ignore_label
    )
    with atomic_directory(images) as tmp:
        folder = split_folder(tmp, "test")
        folder.mkdir(parents=True)
        (tmp / "valid").mkdir()
        for index, (name, image, mask) in enumerate(zip(names, originals, masks, strict=True)):
            view_image, valid = apply_view(image, list(view), seed, index, ignore_label)
            view_mask = mask[:, ::-1] if view_is_flipped(list(view)) else mask
            view_mask = np.where(valid, view_mask, ignore_label)
            Image.fromarray(view_image).save(folder / f"{name}.png")
            np.save(folder / f"{name}.npy", view_mask.astype(np.int32))
            np.save(tmp / "valid" / f"{name}.npy", valid)
