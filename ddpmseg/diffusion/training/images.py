"""The unlabelled images a DDPM trains on, and the order and flips in which it sees them.

Every image is read once before training starts (so an unreadable or non-square one is a one-line error
naming it, not a crash hours in), made square by the ``non_square`` policy, resized bilinearly to the
model's ``image_size`` (as the feature pipeline does, docs/method.md §1) and kept in memory as uint8
(N x image_size² x 3 bytes: 10,000 images at 256 px take 2 GB).

The order is a fresh permutation per epoch and each sample is flipped horizontally with probability
1/2 (guided-diffusion's ``random_flip``); both are functions of (seed, step) only, so that a resumed or a
distributed run sees exactly the batches of an uninterrupted single-process run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...data.datasets import NON_SQUARE_POLICIES, center_square, read_image, resize_image
from ...base.errors import DdpmsegError

# Tags that keep the random streams of one seed apart (see random_stream).
EPOCH_ORDER, STEP_DRAWS, SAMPLE_NOISE, TORCH_SEED = 0, 1, 2, 3


def random_stream(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by (seed, keys) alone."""
    return np.random.default_rng([seed, *keys])


def check_non_square_policy(non_square: str | None) -> None:
    if non_square is not None and non_square not in NON_SQUARE_POLICIES:
        raise DdpmsegError(
            f"non_square: {non_square!r} is not one of {', '.join(NON_SQUARE_POLICIES)} (or none, an error)"
        )


def square_image(rgb: np.ndarray, non_square: str | None, path: Path) -> np.ndarray:
    """``resize`` keeps the whole image (stretched later), ``center_crop`` its central square; without a
    policy a non-square image is an error."""
    height, width = rgb.shape[:2]
    if height == width or non_square == "resize":
        return rgb
    if non_square == "center_crop":
        return center_square(rgb)
    raise DdpmsegError(
        f"{path}: image is {width}x{height}, not square; choose the DDPM's non_square policy "
        f"({' or '.join(NON_SQUARE_POLICIES)})"
    )


def load_training_images(paths: Sequence[Path], image_size: int, non_square: str | None) -> np.ndarray:
    """(N, image_size, image_size, 3) uint8 of every image, in the given order."""
    check_non_square_policy(non_square)
    if not paths:
        raise DdpmsegError("DDPM training: no images to train on")
    images = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        images[index] = resize_image(square_image(read_image(path), non_square, Path(path)), image_size)
    return images


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    return random_stream(seed, EPOCH_ORDER, epoch).permutation(count)


def batch_indices(seed: int, step: int, batch_size: int, count: int) -> np.ndarray:
    """Which images form global batch ``step``: positions step*B .. step*B+B-1 of the concatenated
    per-epoch permutations (a batch may straddle two epochs)."""
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, count)
    orders = {int(epoch): epoch_order(seed, int(epoch), count) for epoch in np.unique(epochs)}
    return np.array([orders[int(epoch)][offset] for epoch, offset in zip(epochs, offsets)], dtype=np.int64)


def to_batch(images: np.ndarray, flips: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 and (B,) bool to a (B, 3, H, W) float32 tensor in [-1, 1], flipped where asked."""
    flipped = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    scaled = flipped.astype(np.float32) / 255.0 * 2.0 - 1.0  # as data.to_model_input
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))
