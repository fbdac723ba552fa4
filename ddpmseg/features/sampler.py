"""Training pixels: every labelled pixel of the training views, in shuffled minibatches of exact features.

Features are never materialised upsampled: the native-resolution activations of the views (float16,
channel-last, :class:`ddpmseg.features.upsample.LayerGroups`) are held in memory and each minibatch's features are
gathered and upsampled on the fly.

Memory budget. When the activations of all training views fit in ``memory_budget_mb``, they are loaded
once and every epoch is one global shuffle of all labelled pixels. Otherwise they are streamed: each
epoch draws a random order of the views and walks it in groups of ``B`` whole views (the shuffle buffer,
which takes half the budget: ``B`` views are what half of it holds); the labelled pixels of a group are
shuffled and cut into batches, and the pixels left over at the end of a group open the next group's
first batch. Every epoch still visits every labelled pixel exactly once (but for the last partial batch,
which is dropped as in the paper), in random order within the buffer. Compared with a global shuffle, a
minibatch mixes pixels of the ``B`` views of its group instead of all views; with ``B`` of a few dozen
views (the default budget at the paper's shapes) this changes little, and the grouping is redrawn every
epoch.

Loading. A streamed group is loaded when the previous one is used up, into the one buffer of ``B``
views, by all of torch's threads (:meth:`ddpmseg.features.store.FeatureStore.load_groups`); training
waits for it. A load in the background would overlap it with training, but on a CPU the training
steps already keep every core busy: a loader thread takes a core from one of torch's threads, and
each step's parallel sections then wait for the descheduled one, for as long as the load lasts.

Data order. The order of the views (one draw per epoch) comes from a generator shared by every member
of a run; the order of pixels within a group comes from each member's own generator. A member thus sees
the same data whether it is trained alone or fused with others (:func:`ddpmseg.classifier.training.train_ensemble`),
which then share one buffer.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..data.preprocess import remove_small_annotations
from .store import FeatureStore
from .upsample import LayerGroups

MiB = 1 << 20


def member_seed(seed: int, member: int) -> int:
    """An independent 63-bit seed for ensemble member ``member`` of run ``seed``."""
    return int(np.random.SeedSequence([seed, member]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def view_order_seed(seed: int) -> int:
    """Seed of the per-epoch view order shared by the members of run ``seed``."""
    return int(np.random.SeedSequence([seed, 0x76696577]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def training_pixels(labels: np.ndarray, ignore_label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image, y, x, label) of every pixel that trains the classifier, image by image.

    Per image, classes with fewer than 20 pixels become ignore_label first (docs/method.md §1); pixels
    labelled ignore_label never train.
    """
    cleaned = np.stack([remove_small_annotations(mask, ignore_label) for mask in labels])
    image, ys, xs = np.nonzero(cleaned != ignore_label)
    return image, ys, xs, cleaned[image, ys, xs]


def _release_freed_memory() -> None:
    """Give the heap's freed pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Called after each group of streamed views is loaded: the decompression buffers of its chunks are
    freed into glibc's heap arenas, which otherwise keep them and fragment, so that RSS creeps up group
    after group (measured: +12 MiB per epoch on a 150 MiB store). Once per group, it costs nothing in
    the training loop, unlike a lower mmap threshold, which made every step's temporaries page-fault.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fits_in_budget(view_bytes: int, views: int, memory_budget_mb: float | None) -> bool:
    """Whether the activations of ``views`` training views are held in memory (else they are streamed)."""
    return memory_budget_mb is None or view_bytes * views <= memory_budget_mb * MiB


class PixelSampler:
    """Shuffled minibatches of (features float32, labels int64) over the labelled pixels of a store."""

    def __init__(
        self,
        store: FeatureStore,
        ignore_label: int,
        indices: Sequence[int] | None = None,
        memory_budget_mb: float | None = None,
    ):
        self.store = store
        self.indices = list(range(len(store))) if indices is None else list(indices)
        parts = [training_pixels(store.labels(i)[None], ignore_label) for i in self.indices]
        counts = [len(part[0]) for part in parts]
        self.image = torch.from_numpy(np.concatenate([np.full(n, v, dtype=np.int32) for v, n in enumerate(counts)]))
        self.ys = torch.from_numpy(np.concatenate([part[1] for part in parts]).astype(np.int16))
        self.xs = torch.from_numpy(np.concatenate([part[2] for part in parts]).astype(np.int16))
        self.labels = torch.from_numpy(np.concatenate([part[3] for part in parts]).astype(np.int16))
        self.view_start = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        self.image_size = store.image_size
        self.feature_dim = store.feature_dim
        self.view_bytes = 2 * sum(layer.channels * layer.height * layer.width for layer in store.layers)
        self.streaming = not fits_in_budget(self.view_bytes, len(self.indices), memory_budget_mb)
        if self.streaming:
            self.buffer_views = max(1, int(memory_budget_mb * MiB // (2 * self.view_bytes)))
            self._resident: LayerGroups | None = None
            self._buffer = store.group_buffers(self.buffer_views)
        else:
            self.buffer_views = len(self.indices)
            self._resident = store.load_groups(self.indices)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def views(self) -> int:
        return len(self.indices)

    def pixels_of_first(self, views: int) -> int:
        """Number of training pixels in the first ``views`` views (the originals, before augmented copies)."""
        return int(self.view_start[min(views, self.views)])

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Exact features of training pixels (positions in this sampler); loads what is not resident."""
        if self._resident is not None:
            return self._resident.features(self.image[pixels].long(), self.ys[pixels].long(), self.xs[pixels].long())
        views = torch.unique(self.image[pixels].long())
        groups = self._load(views)
        return self._gather(groups, self._local(views), pixels)

    def _load(self, views: torch.Tensor, out: list[torch.Tensor] | None = None) -> LayerGroups:
        groups = self.store.load_groups([self.indices[v] for v in views.tolist()], out)
        _release_freed_memory()
        return groups

    def _local(self, views: torch.Tensor) -> torch.Tensor:
        local = torch.full((self.views,), -1, dtype=torch.long)
        local[views] = torch.arange(len(views))
        return local

    def _gather(self, groups: LayerGroups, local: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        return groups.features(local[self.image[pixels].long()], self.ys[pixels].long(), self.xs[pixels].long())

    def _pixels_of(self, views: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.arange(int(self.view_start[v]), int(self.view_start[v + 1])) for v in views.tolist()])

    def epoch(
        self,
        view_generator: torch.Generator,
        pixel_generator: torch.Generator,
        batch_size: int,
        batches: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of one member: (features (B, D), labels (B,)) batches."""
        for features, labels in self.ensemble_epoch(view_generator, [pixel_generator], batch_size, batches):
            yield features[0], labels[0]

    def ensemble_epoch(
        self,
        view_generator: torch.Generator,
        pixel_generators: Sequence[torch.Generator],
        batch_size: int,
        batches: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch for M members sharing the buffer: (features (M, B, D), labels (M, B)) per batch.

        Member m's pixel order comes from ``pixel_generators[m]``; the view order from ``view_generator``
        (drawn once per epoch, also when everything is resident, so that both modes consume it alike).
        ``batches`` caps the number of batches (the study keeps the un-augmented epoch length).
        """
        total = len(self) // batch_size if batches is None else min(batches, len(self) // batch_size)
        order = torch.randperm(self.views, generator=view_generator)
        groups = [order[k : k + self.buffer_views] for k in range(0, self.views, self.buffer_views)]
        member_count = len(pixel_generators)
        carry_features = torch.empty((member_count, 0, self.feature_dim))
        carry_labels = torch.empty((member_count, 0), dtype=torch.long)
        done = 0
        for views in groups:
            if done >= total:
                break
            if self.streaming:
                resident, local = self._load(views, self._buffer), self._local(views)
            else:
                resident, local = self._resident, torch.arange(self.views)
            pool_pixels = self._pixels_of(views) if self.streaming else torch.arange(len(self))
            orders = [pool_pixels[torch.randperm(len(pool_pixels), generator=gen)] for gen in pixel_generators]
            start = 0
            while done < total:
                need = batch_size - carry_labels.shape[1]
                if start + need > len(pool_pixels):
                    break
                # one gather for all members: its fixed costs are paid once per batch, not per member
                pixels = torch.stack([order[start : start + need] for order in orders])
                features = self._gather(resident, local, pixels.view(-1)).view(member_count, need, self.feature_dim)
                labels = self.labels[pixels].long()
                if need < batch_size:  # the first batch of a group completes the previous group's leftovers
                    features = torch.cat([carry_features, features], dim=1)
                    labels = torch.cat([carry_labels, labels], dim=1)
                    carry_features, carry_labels = carry_features[:, :0], carry_labels[:, :0]
                start += need
                done += 1
                yield features, labels
            if done < total and start < len(pool_pixels):  # left over: opens the next group's first batch
                pixels = torch.stack([order[start:] for order in orders])
                gathered = self._gather(resident, local, pixels.view(-1)).view(member_count, -1, self.feature_dim)
                carry_features = torch.cat([carry_features, gathered], dim=1)
                carry_labels = torch.cat([carry_labels, self.labels[pixels].long()], dim=1)
