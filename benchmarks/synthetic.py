"""The synthetic dataset of the training and disk benchmarks: paper-shaped stores of random activations."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import common  # noqa: F401 - puts this checkout's ddpmseg on the path
import numpy as np
import torch
import torch.nn.functional as F

from ddpmseg.base.files import atomic_directory, save_json
from ddpmseg.config.registry import paper_model_flags
from ddpmseg.features.store import StoreWriter

GB = 1e9
# The paper's setting (docs/method.md §2-3): per step, decoder blocks (block, channels, resolution).
PAPER_STEPS = (50, 150, 250)
PAPER_BLOCKS = ((5, 1024, 32), (6, 512, 32), (7, 512, 32), (8, 512, 64), (12, 256, 128))
IMAGE_SIZE = 256
NUMBER_CLASS = 21  # horse_21
IGNORE_LABEL = 255
FEATURE_DIM = len(PAPER_STEPS) * sum(channels for _, channels, _ in PAPER_BLOCKS)  # 8448
VALUES_PER_VIEW = len(PAPER_STEPS) * sum(c * r * r for _, c, r in PAPER_BLOCKS)  # 25.2 M
RAW_FP16_BYTES_PER_VIEW = 2 * VALUES_PER_VIEW
REFERENCE_BYTES_PER_VIEW = IMAGE_SIZE * IMAGE_SIZE * FEATURE_DIM * 4  # upsampled float32, 2.2 GB
DATASET_VERSION = 1  # bump when the synthetic data recipe changes



def blob_labels(generator: torch.Generator, grid: int = 8, margin: float = 0.005) -> np.ndarray:
    """A (256, 256) mask of blob-shaped regions of the 21 classes, with ignore-label outlines.

    Random class scores on a coarse grid, upsampled bilinearly; each pixel takes the best class, and
    pixels where the best two are within ``margin`` become the ignore label (about 7 % of the pixels).
    """
    scores = torch.rand((1, NUMBER_CLASS, grid, grid), generator=generator)
    scores = F.interpolate(scores, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)[0]
    best = scores.topk(2, dim=0).values
    labels = scores.argmax(dim=0).to(torch.int32)
    labels[best[0] - best[1] < margin] = IGNORE_LABEL
    return labels.numpy()


def random_view(seed: int, view: int) -> tuple[dict[tuple[int, int], torch.Tensor], np.ndarray, np.ndarray]:
    """Activations {(step, block): (1, C, h, w)} N(0, 1) float32, image (1, S, S, 3) uint8, labels (1, S, S)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + view)
    activations = {
        (step, block): torch.randn((1, channels, size, size), generator=generator)
        for step in PAPER_STEPS
        for block, channels, size in PAPER_BLOCKS
    }
    image = torch.randint(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3), generator=generator, dtype=torch.uint8).numpy()
    return activations, image, blob_labels(generator)[None]


class SyntheticDataset:
    """Shards ``shard000.zarr, ...`` of ``shard_size`` views each under ``workdir/paper-random-...``.

    ``dataset.json`` is the marker: the recipe (a mismatch stops rather than overwrites) and the
    shards known complete. Shards are written one view at a time (one view's activations in memory)
    and appear only when complete (:func:`ddpmseg.base.files.atomic_directory`), so an interrupted run
    resumes where it stopped. Nothing is ever deleted.
    """

    def __init__(self, workdir: Path, shard_size: int, seed: int = 0):
        self.shard_size, self.seed = shard_size, seed
        self.root = Path(workdir) / f"paper-random-v{DATASET_VERSION}-seed{seed}-shard{shard_size}"
        self.marker = self.root / "dataset.json"
        self.spec = {
            "version": DATASET_VERSION,
            "seed": seed,
            "shard_size": shard_size,
            "steps": list(PAPER_STEPS),
            "blocks": [list(b) for b in PAPER_BLOCKS],
            "image_size": IMAGE_SIZE,
            "number_class": NUMBER_CLASS,
            "ignore_label": IGNORE_LABEL,
        }

    def shard_path(self, shard: int) -> Path:
        return self.root / f"shard{shard:03d}.zarr"

    def _complete(self) -> set[int]:
        if not self.marker.exists():
            return set()
        marker = json.loads(self.marker.read_text())
        if marker.get("spec") != self.spec:
            raise SystemExit(f"{self.marker}: written by another recipe; use another --workdir")
        return {k for k in marker["complete_shards"] if self.shard_path(k).exists()}

    def ensure(self, views: int) -> tuple[list[Path], float]:
        """Paths of the shards holding the first ``views`` views (written if missing); seconds spent writing."""
        shards = math.ceil(views / self.shard_size)
        complete = self._complete()
        missing = [k for k in range(shards) if k not in complete]
        spent = 0.0
        if missing:
            self.root.mkdir(parents=True, exist_ok=True)
            check_disk(self.root, len(missing) * self.shard_size * RAW_FP16_BYTES_PER_VIEW)
            started = time.perf_counter()
            for k in missing:
                print(f"writing {self.shard_path(k)} ({self.shard_size} views of random activations)", flush=True)
                self._write_shard(k)
                complete.add(k)
                save_json(self.marker, {"spec": self.spec, "complete_shards": sorted(complete)})
            spent = time.perf_counter() - started
        return [self.shard_path(k) for k in range(shards)], spent

    def _write_shard(self, shard: int) -> None:
        first = shard * self.shard_size
        names = [f"view{first + i:05d}" for i in range(self.shard_size)]
        attrs = {
            "checkpoint_sha256": "random-activations-benchmark",
            "model_flags": paper_model_flags(),
            "steps": list(PAPER_STEPS),
            "blocks": [b for b, _, _ in PAPER_BLOCKS],
            "noise_seed": self.seed,
            "number_class": NUMBER_CLASS,
            "ignore_label": IGNORE_LABEL,
        }
        with atomic_directory(self.shard_path(shard)) as tmp:
            writer = StoreWriter(tmp, names, IMAGE_SIZE, attrs)
            for i in range(self.shard_size):
                activations, image, labels = random_view(self.seed, first + i)
                writer.write(i, activations, image, labels)
            writer.close()

    def store_and_indices(self, views: int) -> tuple[list[str], list[int] | None]:
        """Store paths and the view indices (None: all of them) for the first ``views`` views."""
        paths, _ = self.ensure(views)
        indices = None if views == len(paths) * self.shard_size else list(range(views))
        return [str(p) for p in paths], indices


def check_disk(directory: Path, needed: int, margin: int = 1 << 30) -> None:
    free = shutil.disk_usage(directory).free
    print(f"disk: {free / GB:.1f} GB free under {directory}, about {needed / GB:.1f} GB to write", flush=True)
    if free < needed + margin:
        raise SystemExit(f"not enough disk space under {directory}: choose another --workdir")


def directory_bytes(path: Path) -> tuple[int, int]:
    """(sum of file sizes, bytes allocated on disk) of every file under ``path``."""
    size = allocated = 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            size += stat.st_size
            allocated += stat.st_blocks * 512
    return size, allocated
