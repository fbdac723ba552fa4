"""Training images of a DDPM (ddpmseg.diffusion.training.images): reading, the non-square policy, batch order, flips."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.training.images import load_training_images, to_batch


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_images_are_cropped_or_stretched_by_the_policy_and_resized(tmp_path):
    wide = np.zeros((4, 8, 3), dtype=np.uint8)
    wide[:, 2:6] = 200  # the central 4x4 square is bright, the sides dark
    path = save(tmp_path / "wide.png", wide)
    cropped = load_training_images([path], 4, "center_crop")
    assert cropped.shape == (1, 4, 4, 3) and (cropped == 200).all()
    stretched = load_training_images([path], 4, "resize")
    assert stretched[0, :, 0].max() < 200  # the dark sides are kept
    with pytest.raises(DdpmsegError, match=r"wide\.png: image is 8x4, not square"):
        load_training_images([path], 4, None)
    with pytest.raises(DdpmsegError, match="non_square: 'pad' is not one of resize, center_crop"):
        load_training_images([path], 4, "pad")
    with pytest.raises(DdpmsegError, match="no images to train on"):
        load_training_images([], 4, None)


def test_batches_are_scaled_to_minus_one_one_and_flipped_where_asked():
    images = np.zeros((2, 2, 3, 3), dtype=np.uint8)
    images[:, :, 0] = 255  # left column white
    batch = to_batch(images, np.array([False, True]))
    assert batch.shape == (2, 3, 2, 3)
    assert batch[0, :, :, 0].eq(1).all() and batch[0, :, :, 2].eq(-1).all()
    assert batch[1, :, :, 2].eq(1).all() and batch[1, :, :, 0].eq(-1).all()
