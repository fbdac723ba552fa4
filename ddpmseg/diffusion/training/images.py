"""The unlabelled images a DDPM trains on, read as they are needed, and the order and flips in which it
sees them.

Before training starts every image's header is checked (:func:`check_training_images`), so that an
unreadable or non-square image is a one-line error naming it, not a crash hours in, without decoding
the pixels. During training a process holds a few batches, whatever the number of images:
:class:`TrainingImages` reads one image per index, made square by the ``non_square`` policy and resized
bilinearly to the model's ``image_size`` (as the feature pipeline does, docs/method.md §1), in DataLoader
workers, and :class:`StepBatches` gives the loader, from the step a run starts at, each step's indices of
this rank's share of the global batch.

The order is a fresh permutation per epoch and each sample is flipped horizontally with probability
1/2 (guided-diffusion's ``random_flip``); both are functions of (seed, step) only
(:mod:`~ddpmseg.diffusion.training.draws`), so that a resumed or a distributed run sees exactly the
batches of an uninterrupted single-process run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ...base.errors import DdpmsegError
from ...data.decode import check_image, read_image
from ...data.preprocess import check_non_square_policy, check_square, model_image, to_model_input
from .draws import batch_indices

CHOOSE = "the DDPM's non_square policy"


def check_training_images(paths: Sequence[Path], non_square: str | None) -> None:
    """Every image can be read and is square or has a policy, from its header (see
    :func:`ddpmseg.data.decode.check_image`)."""
    check_non_square_policy(non_square)
    if not paths:
        raise DdpmsegError("DDPM training: no images to train on")
    for path in paths:
        width, height = check_image(path)
        check_square(height, width, non_square, path, choose=CHOOSE)


@dataclass(frozen=True)
class Unreadable:
    """A batch with a file that could not be read, as its one-line error."""

    message: str


class TrainingImages(Dataset):
    """The training images by index, each read when asked for as the (S, S, 3) uint8 image the model sees."""

    def __init__(self, paths: Sequence[Path], image_size: int, non_square: str | None) -> None:
        self.paths = [str(path) for path in paths]
        self.image_size = image_size
        self.non_square = non_square

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        return model_image(read_image(path), self.image_size, self.non_square, path, choose=CHOOSE)

    def __getitems__(self, indices: Sequence[int]) -> list[np.ndarray] | list[Unreadable]:
        """The images at ``indices`` (a DataLoader asks for a batch at once); a file that cannot be read
        gives its error as data: raised in a worker, it would reach the training as a many-line traceback."""
        try:
            return [self[index] for index in indices]
        except DdpmsegError as error:
            return [Unreadable(str(error))]


def stack_images(items: list[np.ndarray] | list[Unreadable]) -> np.ndarray | Unreadable:
    """The DataLoader's collate function: the images as one (B, S, S, 3) array, or what could not be read."""
    return items[0] if isinstance(items[0], Unreadable) else np.stack(items)


class StepBatches(Sampler[list[int]]):
    """The DataLoader's batch sampler: for steps ``start`` .. ``stop`` - 1, the indices of the images at
    this rank's ``positions`` of global batch ``step`` (:func:`~ddpmseg.diffusion.training.draws.batch_indices`)."""

    def __init__(self, *, seed: int, batch_size: int, count: int, positions: np.ndarray, start: int, stop: int) -> None:
        self.seed, self.batch_size, self.count = seed, batch_size, count
        self.positions = positions
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield batch_indices(self.seed, step, self.batch_size, self.count)[self.positions].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def image_batches(images: TrainingImages, steps: StepBatches, *, workers: int) -> Iterator[np.ndarray]:
    """Each step's (share, S, S, 3) uint8 images, in step order, read by ``workers`` DataLoader processes
    a few batches ahead (0: in this process, when asked for); a file that cannot be read is its one-line
    error here."""
    loader = DataLoader(images, batch_sampler=steps, num_workers=workers, collate_fn=stack_images)
    batches = iter(loader)
    try:
        for batch in batches:
            if isinstance(batch, Unreadable):
                raise DdpmsegError(batch.message)
            yield batch
    finally:
        del batches  # stops the workers now, not when this generator is garbage-collected


def to_batch(images: np.ndarray, flips: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 and (B,) bool to a (B, 3, H, W) float32 tensor in [-1, 1], flipped where asked."""
    flipped = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    return torch.from_numpy(to_model_input(flipped))
