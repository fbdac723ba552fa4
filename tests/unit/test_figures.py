"""The report's figures and tables (ddpmseg.figures) on small hand-made inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ddpmseg.figures import (
    benchmark_rule,
    markdown_to_html,
    panel_columns,
    per_class_html,
    plot_example,
    plot_per_class_iou,
    plot_training_curves,
    read_benchmarks,
    resources_html,
    select_examples,
    summarize_benchmarks,
)
from ddpmseg.visualize import default_palette, panel


def distinct_colours(path) -> int:
    with Image.open(path) as image:
        return len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0))


def test_markdown_tables_become_html_tables() -> None:
    text = (
        "# mIoU (%), mean ± std over seeds\n\n| variant | a | b |\n|---|---|---|\n| baseline | 1.00 ± 0.10 | – |\n"
        "| final | 2.00 ± 0.20 (Δ +1.00) | 3 <x> |\n\nΔ: difference\nto the baseline.\n\n## Second\n\nNo <dataset>.\n"
    )
    html = markdown_to_html(text)
    assert "<h1>mIoU (%), mean ± std over seeds</h1>" in html and "<h2>Second</h2>" in html
    assert "<th>variant</th><th>a</th><th>b</th>" in html
    assert '<td class="num">2.00 ± 0.20 (Δ +1.00)</td>' in html
    assert "<td>–</td>" in html and "3 &lt;x&gt;" in html  # escaped
    assert "<p>Δ: difference to the baseline.</p>" in html and "No &lt;dataset&gt;." in html
    assert "---" not in html


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
    from ddpmseg.figures import make_report_figures
    from ddpmseg.report import write_csv

    tables = {"miou_md": tmp_path / "miou.md", "per_class": tmp_path / "per_class.csv", "per_image": tmp_path / "per_image.csv"}
    tables["miou_md"].write_text("# mIoU\n\n| variant | d |\n|---|---|\n| v | 50.00 (1 seed) |\n")
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
    make_report_figures(tables, [({**run, "member": 0}, log)], [(run, folder)], [tmp_path / "benchmarks" / "score" / "d.tsv"],
                        outputs, ["d"], ["v"], {"d": ["None", "NA"]}, {"d": None}, {"d": 2})
    assert distinct_colours(outputs["examples"][0]) > 20 and distinct_colours(outputs["examples"][1]) > 20
