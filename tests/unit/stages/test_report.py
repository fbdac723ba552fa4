"""Stage report: the report's figures and tables from the collected tables, training logs, panels and benchmarks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from ddpmseg.stages.report import make_report_figures
from ddpmseg.base.files import read_table, write_csv
from ddpmseg.prediction.visualize import default_palette, prediction_panel

RUNS = [{"dataset": "d", "variant": v, "seed": 0} for v in ("baseline", "final")]


def write_inputs(tmp_path) -> dict:
    """The report rule's inputs for one dataset, two variants, one seed and one member."""
    csv = {name: tmp_path / "tables" / f"{name}.csv" for name in ("miou", "per_class", "per_image")}
    write_csv(csv["miou"], pd.DataFrame({"dataset": "d", "variant": ["baseline", "final"], "mean": [40.0, 47.5],
                                         "std": np.nan, "seeds": 1, "mean_plain": [40.0, 45.0], "std_plain": np.nan,
                                         "delta_vs_baseline": [0.0, 7.5]}))
    write_csv(csv["per_class"], pd.DataFrame({"dataset": "d", "variant": ["baseline"] * 2 + ["final"] * 2, "seed": 0,
                                              "class_id": [0, 1] * 2, "class_name": ["sky", "horse"] * 2,
                                              "iou": [30.0, 50.0, 40.0, 55.0]}))
    write_csv(csv["per_image"], pd.DataFrame({"dataset": "d", "variant": ["baseline"] * 2 + ["final"] * 2, "seed": 0,
                                              "image": ["x", "y"] * 2, "miou": [20.0, 60.0, 30.0, 65.0]}))
    rng = np.random.default_rng(0)
    predictions, member_logs = [], []
    for run in RUNS:
        folder = tmp_path / "predictions" / run["variant"]
        (folder / "panels").mkdir(parents=True)
        for name in ("x", "y"):
            image, (truth, labels) = rng.integers(0, 256, (16, 16, 3), np.uint8), rng.integers(0, 2, (2, 16, 16))
            panel = prediction_panel(image, truth, labels, palette=default_palette(2), ignore_label=255)
            Image.fromarray(panel).save(folder / "panels" / f"{name}.png")
        predictions.append(str(folder))
        log = tmp_path / "models" / f"{run['variant']}.json"
        log.parent.mkdir(exist_ok=True)
        log.write_text(json.dumps({"epoch_losses": [1.0, 0.5, 0.25]}))
        member_logs.append(str(log))
    benchmark = tmp_path / "results" / "benchmarks" / "predict_ensemble" / "d.tsv"
    benchmark.parent.mkdir(parents=True)
    benchmark.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         "12.5\t0:00:12\t300\t1\t1\t1\t0\t0\t50\t6\n")
    return {"miou_csv": csv["miou"], "per_class_csv": csv["per_class"], "per_image_csv": csv["per_image"],
            "member_logs": member_logs, "predictions": predictions, "benchmarks": [str(benchmark)]}


def test_every_named_output_of_the_report_is_written_from_its_inputs(tmp_path) -> None:
    out = tmp_path / "report"
    outputs = {
        "miou": out / "miou.html", "per_class_table": out / "per_class_iou.html", "resources": out / "resources.html",
        "resources_csv": out / "resources.csv", "per_class": [out / "per_class_iou" / "d.png"],
        "curves": [out / "curves" / f"{v}.png" for v in ("baseline", "final")],
        "examples": [out / "examples" / f"{v}-{rank}.png" for v in ("baseline", "final") for rank in ("best", "worst")],
    }
    make_report_figures(
        **write_inputs(tmp_path), **outputs, member_runs=[{**run, "member": 0} for run in RUNS], prediction_runs=RUNS,
        datasets=["d"], variants=["baseline", "final"], class_names={"d": ["sky", "horse"]}, palettes={"d": None},
        number_class={"d": 2},
    )
    assert "47.50 (1 seed) (Δ +7.50)" in outputs["miou"].read_text()
    assert "horse" in outputs["per_class_table"].read_text()
    assert read_table(outputs["resources_csv"])["rule"].tolist() == ["predict_ensemble"]
    for path in outputs["per_class"] + outputs["curves"] + outputs["examples"]:
        assert path.stat().st_size > 1000, path
