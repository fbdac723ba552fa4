"""Scores of one run and the collected tables (pandas)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_path, save_text
from .metrics import dataset_miou, image_miou, scored_classes


def score_run(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    names: Sequence[str],
    uncertainty: Sequence[float],
    number_class: int,
    ignore_label: int,
    class_names: Sequence[str] | None = None,
) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    """(mIoU %, per-class table, per-image table) of one run's test predictions."""
    miou, per_class = dataset_miou(preds, gts, number_class, ignore_label)
    classes = scored_classes(number_class, ignore_label)
    class_names = class_names or [str(c) for c in range(number_class)]
    per_class_table = pd.DataFrame(
        {"class_id": classes, "class_name": [class_names[c] for c in classes], "iou": 100 * per_class}
    )
    per_image_table = pd.DataFrame(
        {
            "image": list(names),
            "miou": [100 * image_miou(p, g, number_class, ignore_label) for p, g in zip(preds, gts, strict=True)],
            "uncertainty": list(uncertainty),
        }
    )
    return 100 * miou, per_class_table, per_image_table


def write_csv(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def format_cell(mean: float, std: float, seeds: int) -> str:
    if seeds < 2 or np.isnan(std):
        return f"{mean:.2f} (1 seed)"
    return f"{mean:.2f} ± {std:.2f}"


def summarize_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """mean, std (sample, ddof=1) and number of seeds of mIoU per (dataset, variant)."""
    grouped = per_seed.groupby(["dataset", "variant"], sort=False)["miou"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def markdown_table(summary: pd.DataFrame, variants: Sequence[str], datasets: Sequence[str]) -> str:
    """Rows: variants; columns: datasets; cells: mIoU % as mean ± std over seeds."""
    lines = ["| variant | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    cells = {(r.dataset, r.variant): format_cell(r.mean, r.std, r.seeds) for r in summary.itertuples()}
    for variant in variants:
        row = [cells.get((dataset, variant), "–") for dataset in datasets]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def collect_tables(
    runs: Sequence[dict], out_dir: str | Path, variants: Sequence[str], datasets: Sequence[str]
) -> pd.DataFrame:
    """Write miou.md, miou.csv, per_seed.csv, per_class.csv and per_image.csv from run score folders.

    ``runs``: dicts with dataset, variant, seed and ``scores`` (a folder written by the scoring step).
    Returns the mean/std summary.
    """
    out_dir = Path(out_dir)
    per_seed, per_class, per_image = [], [], []
    for run in runs:
        key = {"dataset": run["dataset"], "variant": run["variant"], "seed": run["seed"]}
        folder = Path(run["scores"])
        summary = pd.read_csv(folder / "summary.csv")
        per_seed.append({**key, "miou": float(summary["miou"].iloc[0])})
        per_class.append(pd.read_csv(folder / "per_class.csv").assign(**key))
        per_image.append(pd.read_csv(folder / "per_image.csv", dtype={"image": str}).assign(**key))
    per_seed_table = pd.DataFrame(per_seed)
    summary = summarize_seeds(per_seed_table)
    key_columns = ["dataset", "variant", "seed"]
    per_class_table = pd.concat(per_class, ignore_index=True)
    per_image_table = pd.concat(per_image, ignore_index=True)
    write_csv(out_dir / "per_seed.csv", per_seed_table)
    write_csv(out_dir / "miou.csv", summary)
    write_csv(out_dir / "per_class.csv", per_class_table[key_columns + [c for c in per_class_table if c not in key_columns]])
    write_csv(out_dir / "per_image.csv", per_image_table[key_columns + [c for c in per_image_table if c not in key_columns]])
    text = "# mIoU (%), mean ± std over seeds\n\n" + markdown_table(summary, variants, datasets)
    save_text(out_dir / "miou.md", text)
    return summary
