"""Scores (docs/method.md §5): mIoU with the reference protocol, per-class IoU and per-image mIoU."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EPSILON = 1e-8


def scored_classes(number_class: int, ignore_label: int) -> np.ndarray:
    """Every class id except ignore_label (bedroom_28 ignores its class 0)."""
    return np.array([c for c in range(number_class) if c != ignore_label], dtype=np.int64)


def intersections_unions(
    pred: np.ndarray, gt: np.ndarray, number_class: int, ignore_label: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per scored class c: I_c = #(pred = c and gt = c), U_c = #(pred = c or gt = c).

    A pixel whose gt is ignore_label still counts in U_c when pred = c (the reference protocol).
    """
    classes = scored_classes(number_class, ignore_label)
    pred_is = pred.reshape(1, -1) == classes[:, None]
    gt_is = gt.reshape(1, -1) == classes[:, None]
    return (pred_is & gt_is).sum(axis=1), (pred_is | gt_is).sum(axis=1)


def iou(intersections: np.ndarray, unions: np.ndarray) -> np.ndarray:
    """I / (U + 1e-8): a class absent from predictions and ground truth scores 0."""
    return intersections / (unions + EPSILON)


def dataset_miou(
    preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], number_class: int, ignore_label: int
) -> tuple[float, np.ndarray]:
    """(mIoU, per-class IoU) over a test set: I and U summed over images, then IoU per class, then mean."""
    classes = scored_classes(number_class, ignore_label)
    total_i = np.zeros(len(classes), dtype=np.int64)
    total_u = np.zeros(len(classes), dtype=np.int64)
    for pred, gt in zip(preds, gts, strict=True):
        i, u = intersections_unions(pred, gt, number_class, ignore_label)
        total_i += i
        total_u += u
    per_class = iou(total_i, total_u)
    return float(per_class.mean()), per_class


def image_miou(pred: np.ndarray, gt: np.ndarray, number_class: int, ignore_label: int) -> float:
    """Per-image mIoU: mean IoU over the scored classes present in this image's ground truth."""
    classes = scored_classes(number_class, ignore_label)
    i, u = intersections_unions(pred, gt, number_class, ignore_label)
    present = np.isin(classes, np.unique(gt))
    if not present.any():
        return float("nan")
    return float(iou(i, u)[present].mean())
