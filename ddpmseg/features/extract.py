"""The DDPM's pixel features of a shard of images, extracted batch by batch into a new feature store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.files import atomic_directory
from ..base.progress import progress_bar
from ..data.preprocess import to_model_input
from ..diffusion.activations import extract_activations, shared_noise
from ..diffusion.flags import model_order
from .store import StoreWriter


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
    noise = shared_noise(noise_seed, image_size)
    attrs = {
        **attrs, "feature_source": "ddpm", "steps": [int(s) for s in steps], "blocks": model_order(blocks),
        "noise_seed": noise_seed,
    }
    with atomic_directory(out) as tmp:
        writer = StoreWriter(tmp, names, image_size, attrs)
        starts = range(0, len(images), batch_size)
        for start in progress_bar(starts, desc=f"extract {Path(out).name}", unit="batch", disable=not progress):
            batch = np.stack([to_model_input(image) for image in images[start : start + batch_size]])
            activations = extract_activations(model, diffusion, torch.from_numpy(batch), steps=steps, blocks=blocks, noise=noise)
            writer.write(start, activations, images[start : start + batch_size], labels[start : start + batch_size])
        writer.close()
