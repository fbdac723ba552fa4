"""Training images of a DDPM (ddpmseg.diffusion.training.images): the header check, reading one image by
the non-square policy, each step's batch read lazily (the images a full decode gives, with or without
workers, from any start step), a file that fails mid-training, flips."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.data.decode import read_image
from ddpmseg.data.preprocess import model_image
from ddpmseg.diffusion.training.distributed import Distributed
from ddpmseg.diffusion.training.draws import batch_indices
from ddpmseg.diffusion.training.images import (
    StepBatches,
    TrainingImages,
    check_training_images,
    image_batches,
    to_batch,
)


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_images_are_cropped_or_stretched_by_the_policy_and_resized(tmp_path):
    wide = np.zeros((4, 8, 3), dtype=np.uint8)
    wide[:, 2:6] = 200  # the central 4x4 square is bright, the sides dark
    path = save(tmp_path / "wide.png", wide)
    cropped = TrainingImages([path], 4, "center_crop")[0]
    assert cropped.shape == (4, 4, 3) and (cropped == 200).all()
    stretched = TrainingImages([path], 4, "resize")[0]
    assert stretched[:, 0].max() < 200  # the dark sides are kept
    with pytest.raises(DdpmsegError, match=r"wide\.png: image is 8x4, not square; choose the DDPM's non_square policy"):
        TrainingImages([path], 4, None)[0]


def test_the_header_check_refuses_before_training_what_reading_would(tmp_path, monkeypatch):
    square = save(tmp_path / "square.png", np.zeros((6, 6, 3), np.uint8))
    wide = save(tmp_path / "wide.png", np.zeros((4, 8, 3), np.uint8))
    check_training_images([square, wide], "center_crop")
    with pytest.raises(DdpmsegError, match=r"wide\.png: image is 8x4, not square; choose the DDPM's non_square policy"):
        check_training_images([square, wide], None)
    with pytest.raises(DdpmsegError, match="non_square: 'pad' is not one of resize, center_crop"):
        check_training_images([square], "pad")
    with pytest.raises(DdpmsegError, match="no images to train on"):
        check_training_images([], None)
    (tmp_path / "text.png").write_bytes(b"not a png")
    with pytest.raises(DdpmsegError, match=r"text\.png: unreadable image"):
        check_training_images([square, tmp_path / "text.png"], None)
    floats = save(tmp_path / "floats.tif", np.full((6, 6), 0.5, np.float32))  # values in [0, 1]: read
    check_training_images([floats], None)
    save(floats, np.full((6, 6), 300.0, np.float32))
    with pytest.raises(DdpmsegError, match=r"floats\.tif: floating-point image with values 300\.\.300"):
        check_training_images([floats], None)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the header check decoded an 8-bit image"))
    check_training_images([square, wide], "resize")


@pytest.fixture
def mixed_images(tmp_path) -> list:
    """Seven images of three sizes and shapes, to be read at 8 px (resized, cropped)."""
    rng = np.random.default_rng(3)
    shapes = [(8, 8), (12, 12), (10, 14), (8, 8), (16, 9), (12, 12), (8, 8)]
    return [save(tmp_path / f"image{i}.png", rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
            for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("workers", [0, 2])
def test_each_steps_batch_is_what_a_full_decode_gives_from_any_start_on_each_rank(mixed_images, workers):
    """Batch ``step`` of a rank is the images at its positions of global batch ``step``, exactly as if
    every image were decoded up front and indexed; a loader started at step 3 (a resume) reads the same."""
    decoded = np.stack([model_image(read_image(path), 8, "center_crop", path, choose="") for path in mixed_images])
    dataset = TrainingImages(mixed_images, 8, "center_crop")
    seed, batch_size, steps = 5, 4, 6  # 6 x 4 = 24 draws of 7 images: the batches straddle epochs
    for ddp in (Distributed(), Distributed(world_size=2, rank=0), Distributed(world_size=2, rank=1)):
        positions = ddp.positions(batch_size)
        for start in (0, 3):
            sampler = StepBatches(seed=seed, batch_size=batch_size, count=len(mixed_images), positions=positions,
                                  start=start, stop=steps)
            batches = list(image_batches(dataset, sampler, workers=workers))
            assert len(batches) == steps - start
            for step, batch in zip(range(start, steps), batches):
                expected = decoded[batch_indices(seed, step, batch_size, len(mixed_images))[positions]]
                assert batch.dtype == np.uint8 and np.array_equal(batch, expected), (ddp, start, step)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_file_that_fails_when_read_is_one_error_line_naming_it(mixed_images, workers):
    whole = mixed_images[2].read_bytes()
    mixed_images[2].write_bytes(whole[: len(whole) // 2])  # the header is intact: the check passes
    check_training_images(mixed_images, "resize")
    sampler = StepBatches(seed=0, batch_size=7, count=7, positions=np.arange(7), start=0, stop=2)
    with pytest.raises(DdpmsegError) as info:
        list(image_batches(TrainingImages(mixed_images, 8, "resize"), sampler, workers=workers))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{mixed_images[2]}: unreadable image (")


def test_batches_are_scaled_to_minus_one_one_and_flipped_where_asked():
    images = np.zeros((2, 2, 3, 3), dtype=np.uint8)
    images[:, :, 0] = 255  # left column white
    batch = to_batch(images, np.array([False, True]))
    assert batch.shape == (2, 3, 2, 3)
    assert batch[0, :, :, 0].eq(1).all() and batch[0, :, :, 2].eq(-1).all()
    assert batch[1, :, :, 2].eq(1).all() and batch[1, :, :, 0].eq(-1).all()
