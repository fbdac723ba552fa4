"""Pixel features of a shard of images, computed batch by batch as extraction computes them: written into a
new feature store (training images, and test images when their stores are kept), or handed over in memory
(test images predicted without a store, new images labelled), rounded to float16 either way so that an
image gets the same features, and so the same labels, whichever path it takes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.files import atomic_directory
from ..base.progress import progress_bar
from ..data.preprocess import to_model_input
from ..diffusion.activations import extract_activations, shared_noise
from ..diffusion.flags import model_order
from .rgb import rgb_activations
from .store import StoreWriter


def activation_batches(
    model: torch.nn.Module, diffusion: Any, images: np.ndarray, *, steps: Sequence[int], blocks: Sequence[int],
    noise_seed: int, batch_size: int,
) -> Iterator[tuple[int, dict[tuple[int, int], torch.Tensor]]]:
    """(start, the DDPM's activations of ``images[start : start + batch_size]``) for each batch of (n, S, S, 3)
    uint8 images, with the noise of ``noise_seed``."""
    noise = shared_noise(noise_seed, images.shape[1])
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(to_model_input(images[start : start + batch_size]))
        yield start, extract_activations(model, diffusion, batch, steps=steps, blocks=blocks, noise=noise)


def feature_batches(
    images: np.ndarray, *, ddpm: tuple[torch.nn.Module, Any] | None, steps: Sequence[int], blocks: Sequence[int],
    noise_seed: int | None, batch_size: int,
) -> Iterator[tuple[int, dict[tuple[int, int], torch.Tensor]]]:
    """(start, activations) of batches of images: the DDPM's (``ddpm``: its model and diffusion), or the RGB
    control's (``ddpm`` None: every image in one batch, no model)."""
    if ddpm is None:
        yield 0, rgb_activations(images)
        return
    model, diffusion = ddpm
    yield from activation_batches(model, diffusion, images, steps=steps, blocks=blocks, noise_seed=noise_seed,
                                  batch_size=batch_size)


def channel_last_layers(activations: dict[tuple[int, int], torch.Tensor], index: int) -> list[torch.Tensor]:
    """Image ``index`` of a batch's activations as a store gives them back
    (:meth:`ddpmseg.features.store.FeatureStore.activations`): one channel-last (h, w, C) float16 tensor
    per layer, in feature order."""
    return [layer[index].permute(1, 2, 0).to(torch.float16).contiguous() for layer in activations.values()]


def extract_to_store(
    model: torch.nn.Module,
    diffusion: Any,
    images: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int,
    batch_size: int,
    out: str | Path,
    attrs: dict[str, Any],
    progress: bool = True,
) -> None:
    """Extract the activations of (n, S, S, 3) uint8 images in batches into a new store at ``out``.

    The store appears under ``out`` only when complete (written beside it, then renamed).
    """
    image_size = images.shape[1]
    attrs = {
        **attrs, "feature_source": "ddpm", "steps": [int(s) for s in steps], "blocks": model_order(blocks),
        "noise_seed": noise_seed,
    }
    with atomic_directory(out) as tmp:
        writer = StoreWriter(tmp, names, image_size, attrs)
        batches = activation_batches(model, diffusion, images, steps=steps, blocks=blocks, noise_seed=noise_seed,
                                     batch_size=batch_size)
        total = -(-len(images) // batch_size)
        for start, activations in progress_bar(batches, total=total, desc=f"extract {Path(out).name}", unit="batch",
                                               disable=not progress):
            writer.write(start, activations, images[start : start + batch_size], labels[start : start + batch_size])
        writer.close()
