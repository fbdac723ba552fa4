"""The report's figures and tables (ddpmseg.report.figures) on small hand-made inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_collected_tables

from ddpmseg.report.figures import (
    panel_columns,
    plot_example,
    plot_per_class_iou,
    plot_training_curves,
    select_examples,
)
from ddpmseg.report.html import miou_html, per_class_html, resources_html
from ddpmseg.report.benchmarks import benchmark_rule, read_benchmarks, summarize_benchmarks
from ddpmseg.base.files import read_table, write_csv
from ddpmseg.prediction.visualize import default_palette, panel


def distinct_colours(path) -> int:
    with Image.open(path) as image:
        return len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))


def write_scores(folder, miou: float) -> None:
    folder.mkdir(parents=True)
    write_csv(folder / "summary.csv", pd.DataFrame([{"miou": miou, "miou_plain": miou - 1, "images": 1}]))
    write_csv(folder / "per_class.csv", pd.DataFrame({"class_id": [0], "class_name": ["a"], "iou": [miou], "iou_plain": [miou]}))
    write_csv(folder / "per_image.csv", pd.DataFrame({"image": ["x"], "miou": [miou], "miou_plain": [miou], "uncertainty": [0.1]}))


def test_miou_html_is_the_markdown_table_rendered_from_miou_csv(tmp_path) -> None:
    runs = []
    for variant, mious in {"baseline": [60.0, 62.0], "final": [66.0, 64.0], "<mine>": [1.0]}.items():
        for seed, miou in enumerate(mious):
            write_scores(tmp_path / "scores" / variant / str(seed), miou)
            runs.append({"dataset": "horse_21", "variant": variant, "seed": seed, "scores": tmp_path / "scores" / variant / str(seed)})
    variants = ["baseline", "final", "<mine>"]
    write_collected_tables(runs, tmp_path / "t", variants, ["horse_21", "cells"])
    html = miou_html(read_table(tmp_path / "t" / "miou.csv"), variants, ["horse_21", "cells"])
    assert "<h1>mIoU (%), mean ± std over seeds</h1>" in html and "<h2>Measured beside published" in html
    assert "<th>variant</th><th>horse_21</th><th>cells</th>" in html
    assert '<td class="num">65.00 ± 1.41 (Δ +4.00)</td>' in html and "<td>–</td>" in html
    assert "<td>&lt;mine&gt;</td>" in html  # escaped
    assert "<th>horse_21 measured</th><th>horse_21 published</th>" in html and '<td class="num">63.74</td>' in html
    assert "<p>Δ: difference of the mean to the baseline variant&#x27;s.</p>" in html
    assert "horse_21 65.0 ± 0.8" in html
    # every cell of miou.md's tables is in the HTML, and nothing of the Markdown syntax
    markdown = (tmp_path / "t" / "miou.md").read_text()
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| variant"):
            for cell in line.strip("| ").split(" | "):
                assert f">{cell.replace('<', '&lt;').replace('>', '&gt;')}</td>" in html
    assert "|" not in html and "---" not in html


def test_miou_html_without_published_numbers(tmp_path) -> None:
    write_scores(tmp_path / "s", 50.0)
    write_collected_tables([{"dataset": "d", "variant": "v", "seed": 0, "scores": tmp_path / "s"}], tmp_path / "t", ["v"], ["d"])
    html = miou_html(read_table(tmp_path / "t" / "miou.csv"), ["v"], ["d"])
    assert '<td class="num">50.00 (1 seed)</td>' in html
    assert "<p>No dataset of this run is covered by the published numbers (docs/method.md §6).</p>" in html


def per_class_table() -> pd.DataFrame:
    rows = []
    for variant, base in (("baseline", 50.0), ("final", 60.0)):
        for seed in (0, 1):
            for class_id, name in ((0, "background"), (1, "disc")):
                rows.append({"dataset": "d", "variant": variant, "seed": seed, "class_id": class_id,
                             "class_name": name, "iou": base + 10 * class_id + 2 * seed})
    return pd.DataFrame(rows)


def test_per_class_table_and_chart(tmp_path) -> None:
    table = per_class_table()
    html = per_class_html(table, ["d"], ["baseline", "final"], {"d": ["bg", "disc"]})
    assert "<td>bg</td>" in html and "<td>disc</td>" in html
    assert "51.00 ± 1.41" in html and "71.00 ± 1.41" in html  # disc: final 70, 72
    plot_per_class_iou(table, "d", ["baseline", "final"], ["bg", "disc"], tmp_path / "chart.png")
    assert distinct_colours(tmp_path / "chart.png") > 20
    with pytest.raises(ValueError, match="no per-class scores"):
        plot_per_class_iou(table, "other", ["baseline"], ["bg", "disc"], tmp_path / "none.png")


def test_training_curves(tmp_path) -> None:
    logs = [(seed, member, {"epoch_losses": [1.0 / (e + 1 + member + seed) for e in range(5 + member)]})
            for seed in (0, 1) for member in (0, 1)]
    plot_training_curves(logs, tmp_path / "curves.png", "d / baseline")
    assert distinct_colours(tmp_path / "curves.png") > 20
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_best_and_worst_examples() -> None:
    per_image = pd.DataFrame({
        "dataset": ["d"] * 5 + ["e"], "variant": ["v"] * 6, "seed": [0, 0, 1, 1, 1, 0],
        "image": ["a", "b", "a", "b", "c", "z"], "miou": [50.0, 90.0, 10.0, 90.0, np.nan, 99.0],
    })
    chosen = select_examples(per_image, "d", "v")
    assert (chosen["best"]["seed"], chosen["best"]["image"]) == (0, "b")  # tie with (1, b): smaller seed
    assert (chosen["worst"]["seed"], chosen["worst"]["image"]) == (1, "a")
    with pytest.raises(ValueError):
        select_examples(per_image, "d", "other")


@pytest.mark.parametrize("masks,columns", [(2, 3), (3, 4)])
def test_example_panel(tmp_path, masks, columns) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tiles = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(masks)]
    Image.fromarray(panel(image, *tiles)).save(tmp_path / "panel.png")
    assert len(panel_columns(*Image.open(tmp_path / "panel.png").size)) == columns
    plot_example(tmp_path / "panel.png", tmp_path / "example.png", "best", ["a", "b", "c"], default_palette(3))
    assert distinct_colours(tmp_path / "example.png") > 20
    assert panel_columns(50, 16) is None


def write_benchmark(path, seconds, rss) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds / 2}\n")


def test_benchmarks_are_aggregated_per_rule(tmp_path) -> None:
    root = tmp_path / "results" / "benchmarks"
    files = [root / "extract_features/d/train/shard0.tsv", root / "extract_features/d/test/shard0.tsv",
             root / "train_member/d/v/seed0/member0.tsv", root / "train_member/d/v/seed0/member1.tsv"]
    for path, (seconds, rss) in zip(files, [(10.0, 100.0), (30.0, 300.0), (5.0, "NA"), (7.0, 70.0)], strict=True):
        write_benchmark(path, seconds, rss)
    assert benchmark_rule(files[2]) == "train_member"
    with pytest.raises(ValueError):
        benchmark_rule(tmp_path / "x.tsv")
    summary = summarize_benchmarks(read_benchmarks(files))
    assert summary.to_dict("records") == [
        {"rule": "extract_features", "jobs": 2, "total_s": 40.0, "max_s": 30.0, "cpu_time_s": 20.0, "max_rss_mb": 300.0},
        {"rule": "train_member", "jobs": 2, "total_s": 12.0, "max_s": 7.0, "cpu_time_s": 6.0, "max_rss_mb": 70.0},
    ]
    html = resources_html(summary)
    assert "<td>extract_features</td>" in html and '<td class="num">0:00:40</td>' in html and "<td>all</td>" in html
    json.dumps(summary.to_dict("records"))  # plain values


def test_report_figures_find_the_panel_of_an_image_named_na(tmp_path) -> None:
    from ddpmseg.report.figures import make_report_figures

    tables = {"miou": tmp_path / "miou.csv", "per_class": tmp_path / "per_class.csv", "per_image": tmp_path / "per_image.csv"}
    write_csv(tables["miou"], pd.DataFrame([{"dataset": "d", "variant": "v", "mean": 50.0, "std": np.nan, "seeds": 1,
                                             "mean_plain": 50.0, "std_plain": np.nan, "delta_vs_baseline": np.nan}]))
    write_csv(tables["per_class"], pd.DataFrame({"dataset": ["d"] * 2, "variant": ["v"] * 2, "seed": [0, 0], "class_id": [0, 1],
                                                 "class_name": ["None", "NA"], "iou": [40.0, 60.0]}))
    write_csv(tables["per_image"], pd.DataFrame({"dataset": ["d"] * 2, "variant": ["v"] * 2, "seed": [0, 0],
                                                 "image": ["NA", "null"], "miou": [90.0, 10.0]}))
    folder = tmp_path / "predictions"
    (folder / "panels").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("NA", "null"):
        tiles = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
        Image.fromarray(panel(*tiles)).save(folder / "panels" / f"{name}.png")
    log = tmp_path / "member0.json"
    log.write_text(json.dumps({"epoch_losses": [1.0, 0.5, 0.25]}))
    write_benchmark(tmp_path / "benchmarks" / "score" / "d.tsv", 1.0, 10.0)
    outputs = {name: tmp_path / "out" / f"{name}.html" for name in ("miou", "per_class_table", "resources")}
    outputs.update(resources_csv=tmp_path / "out" / "resources.csv", per_class=[tmp_path / "out" / "per_class.png"],
                   curves=[tmp_path / "out" / "curves.png"], examples=[tmp_path / "out" / "best.png", tmp_path / "out" / "worst.png"])
    run = {"dataset": "d", "variant": "v", "seed": 0}
    make_report_figures(tables=tables, member_logs=[({**run, "member": 0}, log)], predictions=[(run, folder)],
                        benchmarks=[tmp_path / "benchmarks" / "score" / "d.tsv"], outputs=outputs, datasets=["d"],
                        variants=["v"], class_names={"d": ["None", "NA"]}, palettes={"d": None}, number_class={"d": 2})
    assert distinct_colours(outputs["examples"][0]) > 20 and distinct_colours(outputs["examples"][1]) > 20
