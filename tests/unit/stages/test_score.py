"""Stage score: a run's final and plain (without TTA) scores side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_sample

from ddpmseg.data.preprocess import resize_mask
from ddpmseg.prediction.metrics import dataset_miou
from ddpmseg.stages.score import score_predictions
from ddpmseg.base.files import read_table, write_csv

from .conftest import IGNORE, NUMBER_CLASS, SIZE

NAMES = ["a", "b", "c"]


def write_predictions(folder, labels: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for name, prediction in labels.items():
        np.save(folder / f"{name}.npy", prediction)


@pytest.mark.parametrize("tta", [False, True])
def test_final_and_plain_scores_go_into_the_named_tables(tmp_path, tta) -> None:
    """Against the test masks resized to the model's size (OpenCV's nearest index rule), here 12 -> 8 px."""
    rng = np.random.default_rng(0)
    split = tmp_path / "real" / "test"
    masks = {name: rng.integers(0, NUMBER_CLASS, (12, 12)) for name in NAMES}
    masks["b"][:4] = IGNORE
    for name, mask in masks.items():
        write_sample(split, name, rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), mask)
    truth = {name: resize_mask(mask, SIZE) for name, mask in masks.items()}
    rng = np.random.default_rng(1)
    final = {n: np.where(rng.random(t.shape) < 0.8, t, 0) for n, t in truth.items()}
    plain = {n: np.where(rng.random(t.shape) < 0.5, t, 1) for n, t in truth.items()}
    predictions = tmp_path / "predictions"
    write_predictions(predictions / "labels", final)
    if tta:
        write_predictions(predictions / "labels_plain", plain)
    write_csv(predictions / "uncertainty.csv", pd.DataFrame({"image": NAMES, "uncertainty": [0.3, 0.1, 0.2]}))
    tables = {name: tmp_path / "scores" / f"{name}.csv" for name in ("summary", "per_class", "per_image")}
    score_predictions(predictions=predictions, **tables, split={"images": str(split)}, testing_number=3,
                      image_size=SIZE, number_class=NUMBER_CLASS, ignore_label=IGNORE, class_names=["sky", "grass", "horse"])

    expected_plain = plain if tta else final
    miou, _ = dataset_miou(list(final.values()), list(truth.values()), NUMBER_CLASS, IGNORE)
    miou_plain, per_class_plain = dataset_miou(list(expected_plain.values()), list(truth.values()), NUMBER_CLASS, IGNORE)
    summary = read_table(tables["summary"])
    assert summary.columns.tolist() == ["miou", "miou_plain", "images"]
    assert summary.iloc[0].tolist() == pytest.approx([100 * miou, 100 * miou_plain, 3], rel=1e-5)
    per_class = read_table(tables["per_class"])
    assert per_class.columns.tolist() == ["class_id", "class_name", "iou", "iou_plain"]
    assert per_class["iou_plain"].tolist() == pytest.approx((100 * per_class_plain).tolist(), rel=1e-5)
    per_image = read_table(tables["per_image"])
    assert per_image.columns.tolist() == ["image", "miou", "miou_plain", "uncertainty"]
    assert per_image["image"].tolist() == NAMES and per_image["uncertainty"].tolist() == [0.3, 0.1, 0.2]
    assert (per_image["miou"] == per_image["miou_plain"]).all() != tta
