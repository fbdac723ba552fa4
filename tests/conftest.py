"""Shared fixtures: a tiny guided-diffusion UNet saved as a real checkpoint, and dataset builders."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ddpmseg.config import default_variant_settings
from ddpmseg.ddpm import build_model_and_diffusion
from ddpmseg.files import atomic_directory
from ddpmseg.store import StoreWriter
from ddpmseg.training import TrainSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def train_settings(**overrides) -> TrainSettings:
    """Training settings: the schema's ``variant_defaults`` (the paper's), with ``overrides``."""
    return TrainSettings.of({**default_variant_settings(), **overrides})

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


IGNORE = 255


def write_identity_store(path, views: int, size: int = 12, seed: int = 0, extra_channels: int = 6, identity: bool = True):
    """A store whose full-resolution layer holds (view, y, x) of each pixel in its first 3 channels
    (random values instead when ``identity`` is False: a channel constant within a view is a second
    bias to a classifier, whose vanishing gradients Adam turns into rounding noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(views, size, size))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    labels[:, 0, :3] = 3  # a class of 3 pixels in every view: a small annotation, never trained on
    yy, xx = np.mgrid[0:size, 0:size]
    ids = np.stack([np.stack([np.full((size, size), v), yy, xx]) for v in range(views)]).astype(np.float32)
    if not identity:
        ids = rng.normal(size=ids.shape)
    full = np.concatenate([ids, rng.normal(size=(views, extra_channels, size, size))], axis=1)
    coarse = rng.normal(size=(views, 5, size // 2, size // 2))
    with atomic_directory(path) as tmp:
        writer = StoreWriter(tmp, [f"v{v}" for v in range(views)], size, {"checkpoint_sha256": "x"})
        writer.write(
            0,
            {(10, 0): torch.from_numpy(coarse).float(), (10, 1): torch.from_numpy(full).float()},
            np.zeros((views, size, size, 3), np.uint8),
            labels,
        )
        writer.close()
    return labels


def make_custom_dataset(root: Path, seed: int = 0) -> dict:
    """A user's dataset in separate image and mask folders: non-square images of mixed sizes, 8-bit
    and 16-bit PNG masks and a uint16 .npy mask; img1 (train) and img4 (test) are stored at twice their
    masks' size. Returns its config entry (source: folders)."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 32), (48, 36), (36, 36), (50, 40), (44, 30), (38, 46)]
    entry = {"source": "folders", "number_class": 3, "ignore_label": 255, "non_square": "center_crop",
             "training_number": 3, "testing_number": 3}
    for split, indices in (("train", range(0, 3)), ("test", range(3, 6))):
        images, masks = root / split / "images", root / split / "masks"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for k in indices:
            width, height = sizes[k]
            image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), dtype=np.uint16)
            mask[height // 4 : 3 * height // 4, : width // 2] = 1
            mask[height // 4 : 3 * height // 4, width // 2 :] = 2
            mask[0, :] = 255
            image[mask == 1] = (200, 40, 40)
            image[mask == 2] = (40, 200, 40)
            if k in (1, 4):  # image at twice its mask's resolution (as CelebAMask-HQ ships them)
                image = image.repeat(2, axis=0).repeat(2, axis=1)
            Image.fromarray(image).save(images / f"img{k}.jpg" if k % 2 else images / f"img{k}.png")
            if k % 3 == 0:
                np.save(masks / f"img{k}.npy", mask)  # uint16 array
            elif k % 3 == 1:
                Image.fromarray(mask.astype(np.uint8)).save(masks / f"img{k}.png")  # 8-bit PNG
            else:
                Image.fromarray(mask).save(masks / f"img{k}.png")  # 16-bit PNG
        entry[f"{split}_images"], entry[f"{split}_masks"] = str(images), str(masks)
    return entry


REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY_CONFIG = {
    "datasets": {
        "tiny": {
            "source": "demo",
            "ddpm": "tiny_ddpm",
            "number_class": 5,
            "ignore_label": 255,
            "training_number": 5,
            "testing_number": 3,
            "class_names": ["background", "disc", "square", "triangle", "ring"],
        }
    },
    "ddpms": {"tiny_ddpm": {"source": "demo", "flags": TINY_FLAGS}},
    "demo": {
        "seed": 0,
        "image_size": 32,
        "train_images": 5,
        "test_images": 3,
        "unlabelled_images": 6,
        "ddpm_training": {"iterations": 2, "batch_size": 2, "lr": 0.0001, "seed": 0},
    },
    "features": {"steps": [50, 300], "blocks": [1, 2], "batch_size": 2, "shard_size": 4},  # noise per run seed
    "variant_defaults": {"max_epochs": 2, "epochs_before_stopping": 1, "patience": 5},
    "variants": {
        "baseline": {},
        "final": {
            "dropout": 0.2,
            "optimizer": "adamw",
            "weight_decay": 0.0001,
            "augmentation_scale": 2,
            "tta_views": [["HorizontalFlip"], ["ToGray", "CoarseDropout"]],
        },
    },
    "seeds": [0, 1],
    "ensemble_size": 2,
}


def snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    config_path = workdir / "test-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # config order = table order
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The tiny demo plus a user's dataset (separate folders, non-square mixed sizes, PNG and uint16
    masks) through the whole pipeline; returns (workdir, config)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["custom"] = {**make_custom_dataset(workdir / "custom"), "ddpm": "tiny_ddpm"}
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, config
