"""Rule of ``demo.smk``: the generated demo dataset (its DDPM is trained by ``ddpm.smk``)."""

from __future__ import annotations

from pathlib import Path

from ..data.demo import write_demo_dataset


def generate_demo_dataset(*, dataset: str | Path, seed: int, image_size: int, train: int, test: int, unlabelled: int) -> None:
    """Write the demo dataset (labelled train and test scenes, unlabelled scenes) into ``dataset``."""
    write_demo_dataset(dataset, seed=seed, image_size=image_size, train=train, test=test, unlabelled=unlabelled)
