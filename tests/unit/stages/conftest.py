"""Fixtures of the stage tests: feature stores of random activations and trained-looking members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpmseg.classifier.mlp import build_classifier, save_member
from ddpmseg.base.files import atomic_directory
from ddpmseg.features.store import FeatureStore, StoreWriter

IGNORE = 255
SIZE = 8
NUMBER_CLASS = 3


def write_store(path: Path, names: list[str], *, seed: int = 0, noise_seed: int = 7) -> FeatureStore:
    """A store of random activations (a coarse and a full-resolution layer), images and labels
    (classes 0..2, some pixels ignored) of images ``names``."""
    rng = np.random.default_rng(seed)
    views = len(names)
    labels = rng.integers(0, NUMBER_CLASS, size=(views, SIZE, SIZE))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    activations = {
        (10, 0): torch.from_numpy(rng.normal(size=(views, 4, SIZE // 2, SIZE // 2))).float(),
        (10, 1): torch.from_numpy(rng.normal(size=(views, 5, SIZE, SIZE))).float(),
    }
    images = rng.integers(0, 256, size=(views, SIZE, SIZE, 3), dtype=np.uint8)
    with atomic_directory(path) as tmp:
        writer = StoreWriter(tmp, names, SIZE, {"checkpoint_sha256": "x", "noise_seed": noise_seed})
        writer.write(0, activations, images, labels)
        writer.close()
    return FeatureStore([path])


@pytest.fixture
def stores(tmp_path):
    """``stores(name, names, seed=0)``: a store written under tmp_path, returned as a FeatureStore."""

    def make(name: str, names: list[str], seed: int = 0) -> FeatureStore:
        return write_store(tmp_path / f"{name}.zarr", names, seed=seed)

    return make


@pytest.fixture
def member_files(tmp_path):
    """``member_files(in_features, count)``: weight files of ``count`` randomly initialised members."""

    def make(in_features: int, count: int) -> list[str]:
        paths = []
        for member in range(count):
            torch.manual_seed(member)
            model = build_classifier(in_features, NUMBER_CLASS).eval()
            path = tmp_path / "models" / f"member{member}.pt"
            save_member(path, model, in_features=in_features, number_class=NUMBER_CLASS, dropout=0.0)
            paths.append(str(path))
        return paths

    return make
