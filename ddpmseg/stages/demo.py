"""Rules of ``demo.smk``: the generated demo dataset and the small demo DDPM trained on it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import read_image, resize_image, to_model_input
from ..ddpm import build_model_and_diffusion, model_flags, select_device, train_ddpm
from ..demo import write_demo_dataset
from ..errors import DdpmsegError
from ..files import save_json, save_torch
from ..progress import progress_bar


def generate_demo_dataset(*, dataset: str | Path, seed: int, image_size: int, train: int, test: int, unlabelled: int) -> None:
    """Write the demo dataset (labelled train and test scenes, unlabelled scenes) into ``dataset``."""
    write_demo_dataset(dataset, seed=seed, image_size=image_size, train=train, test=test, unlabelled=unlabelled)


def train_demo_ddpm(
    *,
    dataset: str | Path,
    checkpoint: str | Path,
    log_json: str | Path,
    flags: dict[str, Any],
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Train the small demo UNet on the demo's unlabelled images; save a plain state_dict."""
    flags = model_flags(flags)
    folder = Path(dataset) / "unlabelled"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise DdpmsegError(f"{folder}: no unlabelled images to train the demo DDPM on")
    images = np.stack([to_model_input(resize_image(read_image(p), flags["image_size"])) for p in paths])
    torch.manual_seed(seed)
    model, diffusion = build_model_and_diffusion(flags)
    device = select_device()
    model.to(device)
    started = time.perf_counter()
    bar = progress_bar(total=iterations, desc="train demo DDPM", unit="it")

    def progress(_iteration: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    losses = train_ddpm(
        model, diffusion, images, iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    bar.close()
    save_torch(checkpoint, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    save_json(
        log_json,
        {
            "images": len(images),
            "iterations": iterations,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "losses": losses,
            "device": str(device),
            "wall_time_s": time.perf_counter() - started,
        },
    )
