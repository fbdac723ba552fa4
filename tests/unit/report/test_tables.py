"""Tables over seeds, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import NA_NAMES, raw_cells, write_collected_tables

from ddpmseg.report.tables import score_run
from ddpmseg.base.files import write_csv


def write_run(folder, miou: float, image_names=("0001", "0002")) -> None:
    write_csv(folder / "summary.csv", pd.DataFrame([{"miou": miou, "miou_plain": miou - 1, "images": 2}]))
    write_csv(folder / "per_class.csv", pd.DataFrame({"class_id": [0, 1], "class_name": ["a", "b"], "iou": [miou, miou], "iou_plain": [miou, miou]}))
    write_csv(folder / "per_image.csv", pd.DataFrame({"image": list(image_names), "miou": [1.0, 2.0], "miou_plain": [1.0, 1.5], "uncertainty": [0.1, 0.2]}))


def test_tables_mean_std_over_seeds(tmp_path) -> None:
    runs = []
    values = {("d1", "baseline"): [50.0, 52.0, 57.0], ("d1", "other"): [60.0, 61.0, 62.0], ("d2", "baseline"): [10.0, 20.0, 30.0]}
    for (dataset, variant), mious in values.items():
        for seed, miou in enumerate(mious):
            folder = tmp_path / "scores" / dataset / variant / f"seed{seed}"
            folder.mkdir(parents=True)
            write_run(folder, miou)
            runs.append({"dataset": dataset, "variant": variant, "seed": seed, "scores": folder})
    out = tmp_path / "tables"
    write_collected_tables(runs, out, ["baseline", "other"], ["d1", "d2"])
    summary = pd.read_csv(out / "miou.csv")
    row = summary[(summary.dataset == "d1") & (summary.variant == "baseline")].iloc[0]
    assert row["mean"] == pytest.approx(53.0)
    assert row["std"] == pytest.approx(np.std([50, 52, 57], ddof=1), rel=1e-5)
    assert row["seeds"] == 3
    assert row["mean_plain"] == pytest.approx(52.0)
    assert row["delta_vs_baseline"] == pytest.approx(0.0)
    other = summary[(summary.dataset == "d1") & (summary.variant == "other")].iloc[0]
    assert other["delta_vs_baseline"] == pytest.approx(61.0 - 53.0)
    text = (out / "miou.md").read_text()
    assert "| baseline | 53.00 ± 3.61 | 20.00 ± 10.00 |" in text
    assert "| other | 61.00 ± 1.00 (Δ +8.00) | – |" in text
    assert "No dataset of this run is covered by the published numbers" in text
    per_image = pd.read_csv(out / "per_image.csv", dtype={"image": str})
    assert list(per_image.columns[:3]) == ["dataset", "variant", "seed"]
    assert per_image["image"].iloc[0] == "0001"  # names stay strings
    assert len(pd.read_csv(out / "per_seed.csv")) == 9
    assert len(pd.read_csv(out / "per_class.csv")) == 18


def test_score_run_percent_and_tables() -> None:
    gt = [np.array([[0, 1], [1, 1]])]
    pred = [np.array([[0, 1], [0, 1]])]
    miou, per_class, per_image = score_run(pred, gt, ["x"], [0.3], number_class=2, ignore_label=255, class_names=["bg", "fg"])
    # class 0: I 1, U 2; class 1: I 2, U 3
    assert miou == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert per_class["class_name"].tolist() == ["bg", "fg"]
    assert per_image["miou"].iloc[0] == pytest.approx(miou)


def test_published_table_beside_measured(tmp_path) -> None:
    runs = []
    for variant, mious in {"baseline": [60.0, 62.0], "final": [66.0, 64.0], "mine": [1.0, 3.0]}.items():
        for seed, miou in enumerate(mious):
            folder = tmp_path / variant / str(seed)
            folder.mkdir(parents=True)
            write_run(folder, miou)
            runs.append({"dataset": "horse_21", "variant": variant, "seed": seed, "scores": folder})
    write_collected_tables(runs, tmp_path / "t", ["baseline", "final", "mine"], ["horse_21"])
    text = (tmp_path / "t" / "miou.md").read_text()
    assert "| variant | horse_21 measured | horse_21 published |" in text
    assert "| baseline | 61.00 | 63.74 |" in text  # docs/method.md §6
    assert "| final | 65.00 | 65.33 |" in text
    assert "| mine | 2.00 | – |" in text
    assert "horse_21 65.0 ± 0.8" in text  # the paper's number (docs/method.md §5)


def test_collect_tables_keeps_names_pandas_would_read_as_missing(tmp_path) -> None:
    folder = tmp_path / "scores"
    folder.mkdir()
    write_run(folder, 50.0, image_names=NA_NAMES[:2])
    write_csv(folder / "per_image.csv", pd.DataFrame(
        {"image": NA_NAMES, "miou": [1.0, np.nan, 3.0, 4.0, 5.0], "miou_plain": [1.0] * 5, "uncertainty": [0.1] * 5}))
    write_csv(folder / "per_class.csv", pd.DataFrame({"class_id": [0, 1], "class_name": ["None", "NA"], "iou": [1.0, 2.0], "iou_plain": [1.0, 2.0]}))
    write_collected_tables([{"dataset": "d", "variant": "baseline", "seed": 0, "scores": folder}], tmp_path / "t", ["baseline"], ["d"])
    per_image = raw_cells(tmp_path / "t" / "per_image.csv")
    assert per_image["image"].tolist() == NA_NAMES
    assert per_image["miou"].tolist() == ["1", "", "3", "4", "5"]  # a missing score stays missing
    assert raw_cells(tmp_path / "t" / "per_class.csv")["class_name"].tolist() == ["None", "NA"]
