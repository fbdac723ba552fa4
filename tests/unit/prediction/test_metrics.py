"""mIoU against hand-worked values (docs/method.md §5)."""

from __future__ import annotations

import numpy as np
import pytest

from ddpmseg.prediction.metrics import dataset_miou, image_miou, intersections_unions

IGNORE = 255


def test_miou_hand_worked_with_ignore_pixel_and_absent_class() -> None:
    # 4 classes (0..3); class 3 is absent from both predictions and ground truth.
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, IGNORE, 1]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [2, 0, 1, 1]])
    # class 0: I = 3 (0,0),(1,0),(1,1); U = gt0 {4} + pred0 only {(2,1)} = 5
    # class 1: I = 3 (0,2),(0,3),(1,2) + (2,3) = 4; U = gt1 {5} + pred1 only {(0,1),(2,2: gt ignore)} = 7
    # class 2: I = 1 (2,0); U = gt2 {2} + pred2 only {(1,3)} = 3
    # class 3: I = 0, U = 0 -> IoU 0
    i, u = intersections_unions(pred, gt, 4, IGNORE)
    assert i.tolist() == [3, 4, 1, 0] and u.tolist() == [5, 7, 3, 0]
    miou, per_class = dataset_miou([pred], [gt], 4, IGNORE)
    expected = np.array([3 / 5, 4 / 7, 1 / 3, 0.0])
    np.testing.assert_allclose(per_class, expected, rtol=1e-7)
    assert miou == pytest.approx(expected.mean(), rel=1e-7)


def test_counts_are_summed_over_images_before_the_ratio() -> None:
    gt_a, pred_a = np.array([[1, 1]]), np.array([[1, 0]])  # class 1: I 1, U 2; class 0: I 0, U 1
    gt_b, pred_b = np.array([[1, 0]]), np.array([[1, 0]])  # class 1: I 1, U 1; class 0: I 1, U 1
    miou, per_class = dataset_miou([pred_a, pred_b], [gt_a, gt_b], 2, IGNORE)
    np.testing.assert_allclose(per_class, [1 / 2, 2 / 3])  # not the mean of per-image IoUs
    assert miou == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_ignore_label_inside_class_range_is_not_scored() -> None:
    # bedroom_28 style: ignore_label 0 is a class id; class 0 is dropped from the mean.
    gt = np.array([[0, 1, 2, 2]])
    pred = np.array([[1, 1, 2, 0]])
    miou, per_class = dataset_miou([pred], [gt], 3, 0)
    # class 1: I 1, U 2 (pred 1 on the ignored pixel counts); class 2: I 1, U 2
    np.testing.assert_allclose(per_class, [0.5, 0.5])
    assert miou == pytest.approx(0.5)


def test_image_miou_uses_classes_present_in_ground_truth() -> None:
    gt = np.array([[0, 0, 1, IGNORE]])
    pred = np.array([[0, 2, 1, 2]])
    # present: 0 (I 1, U 2) and 1 (I 1, U 1); class 2 (absent from gt) is not averaged
    assert image_miou(pred, gt, 3, IGNORE) == pytest.approx((0.5 + 1.0) / 2)
