"""Training pixels: every labelled pixel of the training images, in shuffled minibatches of exact features.

The native-resolution activations of the training views are held in memory (float16, channel-last);
each minibatch's features are gathered and upsampled on the fly (:func:`ddpmseg.store.gather_features`),
so the upsampled training set (8448 floats per pixel at the paper's setting) is never built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .data import remove_small_annotations
from .store import FeatureStore, gather_features


def member_seed(seed: int, member: int) -> int:
    """An independent 63-bit seed for ensemble member ``member`` of run ``seed``."""
    return int(np.random.SeedSequence([seed, member]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def training_pixels(labels: np.ndarray, ignore_label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image, y, x, label) of every pixel that trains the classifier.

    Per image, classes with fewer than 20 pixels become ignore_label first (method.md §1); pixels
    labelled ignore_label never train.
    """
    cleaned = np.stack([remove_small_annotations(mask, ignore_label) for mask in labels])
    image, ys, xs = np.nonzero(cleaned != ignore_label)
    return image, ys, xs, cleaned[image, ys, xs]


class PixelSampler:
    """Shuffled minibatches (features (B, D) float32, labels (B,) int64) over the labelled pixels of a store."""

    def __init__(self, store: FeatureStore, ignore_label: int, indices: Sequence[int] | None = None):
        indices = list(range(len(store))) if indices is None else list(indices)
        labels = np.stack([store.labels(i) for i in indices])
        image, ys, xs, pixel_labels = training_pixels(labels, ignore_label)
        self.image = torch.from_numpy(image)
        self.ys = torch.from_numpy(ys)
        self.xs = torch.from_numpy(xs)
        self.labels = torch.from_numpy(pixel_labels.astype(np.int64))
        self.layers = store.load_all(indices)
        self.image_size = store.image_size
        self.feature_dim = store.feature_dim

    def __len__(self) -> int:
        return len(self.labels)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Exact features of training pixels given by their position in this sampler."""
        return gather_features(self.layers, self.image[pixels], self.ys[pixels], self.xs[pixels], self.image_size)

    def epoch(
        self, generator: torch.Generator, batch_size: int, steps: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: a fresh permutation in full batches (the last partial batch is dropped).

        ``steps`` caps the number of batches (the study keeps the un-augmented epoch length).
        """
        order = torch.randperm(len(self), generator=generator)
        count = len(self) // batch_size if steps is None else min(steps, len(self) // batch_size)
        for k in range(count):
            pixels = order[k * batch_size : (k + 1) * batch_size]
            yield self.features(pixels), self.labels[pixels]
