"""Stage tta: one test-time view of the test split, its masks in the view's frame, and where it is valid;
the view and seed decoded from the image set's name."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_dataset
from PIL import Image

from ddpmseg.config.imagesets import parse_tta_set, tta_set
from ddpmseg.data.datasets import load_split
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.stages.tta import make_tta_view
from ddpmseg.prediction.tta import apply_view

DATASET = {"testing_number": 2, "image_size": 32, "number_class": 3, "ignore_label": 255}


def test_a_tta_set_name_gives_back_its_view_and_seed_and_a_foreign_name_is_refused() -> None:
    for view in ([], ["ToGray", "CoarseDropout"], ["ColorJitter", "HorizontalFlip", "ChannelShuffle"]):
        settings = parse_tta_set(tta_set(view, 12))
        assert list(settings.view) == view and settings.seed == 12 and settings.name == tta_set(view, 12)
    for name in ("tta-s0-blur", "tta-x0-togray", "tta-s0"):
        with pytest.raises(DdpmsegError, match=f"{name}: not the name of a TTA view's image set"):
            parse_tta_set(name)


@pytest.mark.parametrize("view", [["HorizontalFlip"], ["ToGray", "CoarseDropout"]])
def test_view_images_masks_and_valid_pixels_follow_the_view(tmp_path, view) -> None:
    root = make_dataset(tmp_path / "d", train=1, test=2, number_class=3)
    split = {"images": str(root / "real" / "test")}
    settings = parse_tta_set(tta_set(view, 5))
    make_tta_view(images=tmp_path / "view", split=split, view=list(settings.view), seed=settings.seed, **DATASET)

    names, images, masks = load_split(split, 2, 0, 2, image_size=32, number_class=3, ignore_label=255)
    for index, (name, image, mask) in enumerate(zip(names, images, masks, strict=True)):
        expected_image, valid = apply_view(image, view, 5, index)
        frame_mask = mask[:, ::-1] if "HorizontalFlip" in view else mask
        assert np.array_equal(np.asarray(Image.open(tmp_path / "view" / "real" / "test" / f"{name}.png")), expected_image)
        assert np.array_equal(np.load(tmp_path / "view" / "valid" / f"{name}.npy"), valid)
        assert np.array_equal(np.load(tmp_path / "view" / "real" / "test" / f"{name}.npy"), np.where(valid, frame_mask, 255))
        assert valid.all() == ("CoarseDropout" not in view)
