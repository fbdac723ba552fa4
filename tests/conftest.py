"""Shared fixtures: a tiny guided-diffusion UNet saved as a real checkpoint, and dataset builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpmseg.ddpm import build_model_and_diffusion

# A small UNet built with the same guided-diffusion functions as the paper's models.
TINY_FLAGS = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "16",
    "num_head_channels": 16,
    "learn_sigma": True,
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
    "resblock_updown": True,
    "use_scale_shift_norm": True,
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny UNet saved as a plain state_dict checkpoint."""
    torch.manual_seed(0)
    model, _ = build_model_and_diffusion(TINY_FLAGS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


def write_sample(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{stem}{suffix}")
    np.save(folder / f"{stem}.npy", mask)


def make_dataset(root: Path, train: int = 3, test: int = 2, size: int = 32, number_class: int = 3, seed: int = 0) -> Path:
    """A dataset in the archive layout: random images, masks of horizontal class bands."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            mask = (np.arange(size)[:, None] * number_class // size).repeat(size, axis=1).astype(np.uint8)
            write_sample(root / "real" / split, f"{index:03d}", image, mask)
    return root
