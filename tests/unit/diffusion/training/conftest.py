"""Fixtures of the DDPM training tests: a tiny UNet's flags and settings, random training images, one torch
thread, and helpers that train into a folder and compare weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpmseg.diffusion.model import build_model_and_diffusion
from ddpmseg.diffusion.training.run import train_ddpm
from ddpmseg.diffusion.training.settings import DdpmTrainingSettings


REPO = Path(__file__).resolve().parents[4]


# A tiny UNet (16 px, 32 channels, one res block) over 100 diffusion steps: an iteration takes ~0.1 s.
FLAGS = {
    "image_size": 16, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,2",
    "attention_resolutions": "8", "num_head_channels": 16, "learn_sigma": True, "diffusion_steps": 100,
}


SETTINGS = DdpmTrainingSettings(
    iterations=2, batch_size=4, microbatch=2, lr=1e-3, weight_decay=0.0, ema_rate=0.9, save_every=2,
    log_every=1, fp16=False, schedule_sampler="uniform", seed=0, sample_count=2, sample_steps=2,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads per process are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """Six random RGB images of 20 px (resized to 16 by the training)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for index in range(6):
        path = folder / f"image{index}.png"
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def outputs(folder: Path) -> dict[str, Path]:
    return {name: folder / file for name, file in
            (("state", "state.pt"), ("checkpoint", "ema.pt"), ("log_json", "log.json"), ("samples", "samples.png"))}


def train(folder: Path, images: list[Path], settings: DdpmTrainingSettings = SETTINGS, **arguments) -> dict[str, Path]:
    paths = outputs(folder)
    train_ddpm(images=images, flags=FLAGS, settings=settings, non_square=None, progress=False, **paths, **arguments)
    return paths


def save_init(path: Path, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model, _ = build_model_and_diffusion(FLAGS)
    torch.save(model.state_dict(), path)
    return model.state_dict()


def assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def subprocess_env() -> dict[str, str]:
    """This worktree's ddpmseg first, one thread per process."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
