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

from ...data.decode import read_image
from ...data.preprocess import check_non_square_policy, model_image, to_model_input
from ...base.errors import DdpmsegError


def load_training_images(paths: Sequence[Path], image_size: int, non_square: str | None) -> np.ndarray:
    """(N, image_size, image_size, 3) uint8 of every image, in the given order."""
    check_non_square_policy(non_square)
    if not paths:
        raise DdpmsegError("DDPM training: no images to train on")
    images = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        images[index] = model_image(read_image(path), image_size, non_square, path, choose="the DDPM's non_square policy")
    return images


def to_batch(images: np.ndarray, flips: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 and (B,) bool to a (B, 3, H, W) float32 tensor in [-1, 1], flipped where asked."""
    flipped = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    return torch.from_numpy(to_model_input(flipped))
