"""Preprocessing: mask resizing by the reference's index rule, small annotations, labels back at the
image's size, the non-square policy."""

from __future__ import annotations

import numpy as np
import pytest

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.data.preprocess import (
    make_square,
    model_image,
    nearest_indices,
    remove_small_annotations,
    resize_mask,
    to_model_input,
    to_original_size,
)


@pytest.mark.parametrize(
    "source,target,indices",
    [
        (4, 2, [0, 2]),  # down by 2: floor(i * 2), not the pixel centres [1, 3]
        (5, 3, [0, 1, 3]),  # down by 5/3: 0, 1.67, 3.33
        (2, 5, [0, 0, 0, 1, 1]),  # up by 5/2: 0, 0.4, 0.8, 1.2, 1.6
        (48, 64, [0, 0, 1, 2, 3, 3, 4, 5]),  # up by 4/3 (first 8): 0, 0.75, 1.5, 2.25, 3, 3.75, 4.5, 5.25
        (100, 64, [0, 1, 3, 4, 6, 7, 9, 10]),  # down by 1.5625 (first 8): 0, 1.56, 3.13, 4.69, 6.25, ...
        (3, 3, [0, 1, 2]),
    ],
)
def test_mask_resize_takes_the_references_source_indices(source, target, indices) -> None:
    assert nearest_indices(source, target)[: len(indices)].tolist() == indices
    mask = np.arange(source)[:, None] * 1000 + np.arange(source)[None, :]
    resized = resize_mask(mask, target)
    expected_rows = nearest_indices(source, target)
    assert resized.tolist() == (expected_rows[:, None] * 1000 + expected_rows[None, :]).tolist()


def test_mask_resize_rounds_in_double_precision_as_opencv() -> None:
    # 32 * 186 / 64 = 93 exactly, but OpenCV computes 32 * (1 / (64 / 186)) = 92.99999999999999 -> 92
    assert nearest_indices(186, 64)[32] == 92
    assert nearest_indices(186, 64)[31] == 90 and nearest_indices(186, 64)[33] == 95
    # non-square: rows and columns each by their own ratio
    mask = np.arange(4 * 6).reshape(4, 6)
    assert resize_mask(mask, 2).tolist() == [[0, 3], [12, 15]]


def test_small_annotations_become_ignore() -> None:
    mask = np.zeros((10, 10), np.int64)
    mask[0, :19] = 1  # 19 pixels: removed
    mask[1, :] = 2
    mask[2, :] = 2  # 20 pixels: kept
    mask[9, 9] = 255
    cleaned = remove_small_annotations(mask, 255)
    assert (cleaned[0, :19] == 255).all() and (cleaned[1:3] == 2).all() and cleaned[5, 5] == 0
    assert (mask[0, :19] == 1).all()  # input untouched


def test_labels_back_at_the_original_size_under_resize_and_center_crop_by_hand() -> None:
    square = np.arange(16).reshape(4, 4)
    resized, inside = to_original_size(square, 8, 6, "resize", -1)
    np.testing.assert_array_equal(resized, square[np.arange(8)[:, None] // 2, (np.arange(6) * 4 // 6)[None, :]])
    assert inside.all()
    cropped, inside = to_original_size(square, 4, 8, "center_crop", -1)
    np.testing.assert_array_equal(cropped[:, 2:6], square)
    assert (cropped[:, :2] == -1).all() and (cropped[:, 6:] == -1).all()
    np.testing.assert_array_equal(inside, cropped != -1)


def test_one_non_square_policy_for_images_and_masks() -> None:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert make_square(image, "resize", "x.png", choose="c") is image
    np.testing.assert_array_equal(make_square(image, "center_crop", "x.png", choose="c"), image[:, 1:5])
    np.testing.assert_array_equal(make_square(image[..., 0], "center_crop", "x.png", choose="c"), image[:, 1:5, 0])
    with pytest.raises(DdpmsegError, match=r"^x.png: image is 6x4, not square; choose the setting \(resize or center_crop\)$"):
        make_square(image, None, "x.png", choose="the setting")
    square = np.zeros((5, 5, 3), np.uint8)
    assert make_square(square, None, "y.png", choose="c") is square


def test_model_image_and_input() -> None:
    image = np.full((6, 12, 3), 255, dtype=np.uint8)
    image[:, :6] = 0
    cropped = model_image(image, 4, "center_crop", "x.png", choose="c")
    assert cropped.shape == (4, 4, 3)
    batch = to_model_input(np.stack([image, image[:, ::-1]]))
    assert batch.shape == (2, 3, 6, 12) and batch.dtype == np.float32
    assert batch.min() == -1.0 and batch.max() == 1.0
    np.testing.assert_array_equal(batch[0], to_model_input(image))
