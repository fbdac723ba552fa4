"""The RGB control's pixel features: each pixel's own 3 values, scaled to [-1, 1] as the DDPM's input.

Not part of the paper. A variant with ``features: rgb`` trains and predicts with the same MLP ensemble,
augmentation and TTA as the method, on these 3 features instead of the DDPM's decoder activations, so
the gap between the two rows of the tables is what the diffusion features add (docs/method.md §8).

The features are written as a feature store (:mod:`ddpmseg.features.store`) with one full-resolution layer of 3
channels, so that training, TTA and prediction read them through the same code as the DDPM's. The layer
is keyed (step 0, block -1): the model input x0 itself, before any block and without noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.preprocess import to_model_input
from ..base.errors import DdpmsegError
from ..base.files import atomic_directory
from .store import StoreWriter

RGB_SOURCE = "rgb"
RGB_LAYER = (0, -1)  # (step, block) of the one layer: x0, before the UNet's first block


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise DdpmsegError(f"RGB features need (n, S, S, 3) uint8 images, not {images.dtype} of shape {images.shape}")


def rgb_activations(images: np.ndarray) -> dict[tuple[int, int], torch.Tensor]:
    """``{RGB_LAYER: (n, 3, S, S) float32}``: (n, S, S, 3) uint8 images in [-1, 1], channels first
    (the layout :class:`ddpmseg.features.store.StoreWriter` takes, as the DDPM's activations)."""
    _check_images(images)
    return {RGB_LAYER: torch.from_numpy(to_model_input(images))}


def rgb_store_attrs() -> dict[str, Any]:
    """The attributes that mark a store as the RGB control's (no steps, blocks, noise or checkpoint)."""
    return {
        "feature_source": RGB_SOURCE,
        "steps": [],
        "blocks": [],
        "noise_seed": None,
        "checkpoint_sha256": None,
        "model_flags": None,
    }


def write_rgb_store(
    images: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    out: str | Path,
    attrs: dict[str, Any],
) -> None:
    """Write the RGB features of (n, S, S, 3) uint8 images into a new store at ``out``, beside their
    images and labels; it appears only when complete (written beside it, then renamed)."""
    activations = rgb_activations(images)
    with atomic_directory(out) as tmp:
        writer = StoreWriter(tmp, names, images.shape[1], {**attrs, **rgb_store_attrs()})
        writer.write(0, activations, images, labels)
        writer.close()
