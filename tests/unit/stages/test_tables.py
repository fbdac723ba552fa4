"""Stage tables: the tables over every run, written to the rule's named outputs."""

from __future__ import annotations

import pandas as pd

from conftest import write_collected_tables

from ddpmseg.stages.tables import make_tables
from ddpmseg.config.paths import TABLES
from ddpmseg.base.files import read_table, write_csv


def write_scores(folder, miou: float) -> str:
    write_csv(folder / "summary.csv", pd.DataFrame([{"miou": miou, "miou_plain": miou - 1, "images": 2}]))
    write_csv(folder / "per_class.csv", pd.DataFrame({"class_id": [0, 1], "class_name": ["a", "b"], "iou": [miou, miou],
                                                      "iou_plain": [miou, miou]}))
    write_csv(folder / "per_image.csv", pd.DataFrame({"image": ["x", "y"], "miou": [miou, miou],
                                                      "miou_plain": [miou, miou], "uncertainty": [0.1, 0.2]}))
    return str(folder / "summary.csv")


def test_the_tables_of_the_runs_scores_in_the_named_files(tmp_path) -> None:
    runs = [{"dataset": "d", "variant": v, "seed": s} for v in ("baseline", "final") for s in (0, 1)]
    scores = [write_scores(tmp_path / "scores" / f"{r['variant']}{r['seed']}", 50.0 + 2 * i) for i, r in enumerate(runs)]
    outputs = {name: tmp_path / "named" / f"{name}.out" for name in TABLES}
    make_tables(scores=scores, **outputs, runs=runs, variants=["baseline", "final"], datasets=["d"])

    summary = read_table(outputs["miou"])
    assert summary["mean"].tolist() == [51.0, 55.0] and summary["delta_vs_baseline"].tolist()[1] == 4.0
    assert read_table(outputs["per_seed"])["miou"].tolist() == [50.0, 52.0, 54.0, 56.0]
    assert "| final | 55.00 ± 1.41 (Δ +4.00) |" in outputs["markdown"].read_text()
    folders = [{**r, "scores": str(tmp_path / "scores" / f"{r['variant']}{r['seed']}")} for r in runs]
    write_collected_tables(folders, tmp_path / "folder", ["baseline", "final"], ["d"])  # the same tables, by file name
    for name, file in TABLES.items():
        assert outputs[name].read_bytes() == (tmp_path / "folder" / file).read_bytes()
