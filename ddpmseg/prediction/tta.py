"""Test-time augmentation of the study (docs/method.md §6): views, their undoing and the vote.

A view is a list of transform names, all applied (p = 1) in the listed order with the training
settings of :mod:`ddpmseg.data.augment`; the labels predicted on a view are mapped back to the image's frame
by :func:`undo_view` and merged over views by :func:`tta_vote`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check (network) on import

import albumentations as A
import numpy as np

from ..data.augment import COLOR_JITTER, check_seed, coarse_dropout, portable_opencv, seed_pipeline
from ..base.errors import DdpmsegError
from .views import TTA_TRANSFORMS, check_view

# First entropy word of every TTA seed (training copies start with ddpmseg.data.augment.TRAIN_STREAM).
TTA_STREAM = 0x7474  # "tt"


def _view_transform(name: str, image_size: int) -> A.BasicTransform:
    if name == "ToGray":
        return A.ToGray(p=1.0)
    if name == "CoarseDropout":
        return coarse_dropout(image_size, 0, 1.0)
    if name == "ColorJitter":
        return A.ColorJitter(**COLOR_JITTER, p=1.0)
    if name == "HorizontalFlip":
        return A.HorizontalFlip(p=1.0)
    return A.ChannelShuffle(p=1.0)


def apply_view(
    image: np.ndarray, view: Sequence[str], seed: int, image_index: int, ignore_label: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(view image (S, S, 3) uint8, valid (S, S) bool) of one image under one TTA view.

    Every transform of the view is applied, in the listed order, with the training settings
    (ColorJitter 0.5/0.5/0.5/0.2, 2 to 4 dropout holes of 40 to 60 px at 256 px scaled with S).
    ``valid`` is False where a dropout hole removed the content, in the view's frame (the image is 0
    there). The result is a function of (seed, image_index, view) and the image. ``ignore_label`` is
    not needed (``valid`` is boolean; :func:`undo_view` takes it) and is accepted only for symmetry.
    """
    view = check_view(view)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] != image.shape[1]:
        raise DdpmsegError(f"TTA image must be (S, S, 3) uint8, got {image.shape} {image.dtype}")
    check_seed(seed, "TTA seed")
    check_seed(image_index, "TTA image index")
    valid = np.ones(image.shape[:2], dtype=np.uint8)
    if not view:
        return image.copy(), valid.astype(bool)
    pipeline = A.Compose([_view_transform(name, image.shape[0]) for name in view])
    codes = [TTA_TRANSFORMS.index(name) for name in view]
    seed_pipeline(pipeline, [TTA_STREAM, seed, image_index, len(codes), *codes])
    with portable_opencv():
        result = pipeline(image=image, mask=valid)
    return result["image"], result["mask"].astype(bool)


def undo_view(labels: np.ndarray, valid: np.ndarray, view: Sequence[str], ignore_label: int) -> np.ndarray:
    """Labels predicted on a view, in the original image's frame: ignore_label where ``valid`` is False,
    then the horizontal flip undone (both arrays are in the view's frame)."""
    view = check_view(view)
    labels = np.asarray(labels)
    valid = np.asarray(valid, dtype=bool)
    if labels.ndim != 2 or labels.shape != valid.shape:
        raise DdpmsegError(f"TTA labels {labels.shape} and valid {valid.shape} must be the same 2-D shape")
    mapped = np.where(valid, labels, np.asarray(ignore_label, dtype=labels.dtype))
    if "HorizontalFlip" in view:
        mapped = mapped[:, ::-1]
    return np.ascontiguousarray(mapped)


def tta_vote(
    labels: np.ndarray, ignore_label: int, original: int = 0, number_class: int | None = None
) -> np.ndarray:
    """Per-pixel majority over V views' labels (V, ...) already mapped back, ignoring ignore_label votes.

    Ties go to the un-augmented view ``labels[original]`` when its label is among the tied maxima,
    else to the smallest tied label; a pixel whose every vote is ignore_label takes the original
    view's label. Labels must lie in [0, number_class) or equal ignore_label (which may be a class id:
    its votes are still ignored); ``number_class`` None means 1 + the largest other label. Returns
    labels.shape[1:] in labels' dtype.
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.shape[0] < 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DdpmsegError(
            f"TTA labels must be integers of shape (views, ...), got {labels.shape} {labels.dtype}"
        )
    views = labels.shape[0]
    if not 0 <= original < views:
        raise DdpmsegError(f"TTA original view {original} is not one of the {views} views")
    flat = labels.reshape(views, -1)
    if number_class is None:
        voted_labels = flat[flat != ignore_label]
        number_class = int(voted_labels.max()) + 1 if voted_labels.size else 1
    bad = ((flat < 0) | (flat >= number_class)) & (flat != ignore_label)
    if bad.any():
        raise DdpmsegError(
            f"TTA label {flat[bad][0]} outside [0, {number_class}) and not the ignore_label {ignore_label}"
        )
    counts = np.zeros((number_class, flat.shape[1]), dtype=np.int32)
    for c in range(number_class):
        if c != ignore_label:
            counts[c] = (flat == c).sum(axis=0)
    best = counts.max(axis=0)
    smallest_tied = counts.argmax(axis=0)  # argmax returns the first, i.e. smallest, of the tied labels
    base = flat[original]
    base_counts = counts[np.clip(base, 0, number_class - 1), np.arange(flat.shape[1])]
    base_wins = (base != ignore_label) & (base_counts == best)
    voted = np.where(base_wins | (best == 0), base, smallest_tied).astype(labels.dtype)
    return voted.reshape(labels.shape[1:])


def tta_labels(
    plain: np.ndarray,
    view_predictions: Sequence[tuple[np.ndarray, np.ndarray, Sequence[str]]],
    ignore_label: int,
    number_class: int,
) -> np.ndarray:
    """An image's final labels under TTA (int32): the labels predicted on each view, given as
    (labels, valid, view) in the view's frame, mapped back by :func:`undo_view` and voted by
    :func:`tta_vote` with the ``plain`` labels of the image itself, which win ties."""
    votes = [plain] + [undo_view(labels, valid, view, ignore_label) for labels, valid, view in view_predictions]
    return tta_vote(np.stack(votes), ignore_label, 0, number_class).astype(np.int32)
