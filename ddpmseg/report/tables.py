"""Scores of one run and the tables collected over runs (pandas).

The mIoU tables are built as DataFrames of display cells (:func:`miou_cells`,
:func:`published_comparison`); ``miou.md`` and the report's HTML are two renderings of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.files import save_text
from ..prediction.metrics import dataset_miou, image_miou, scored_classes
from .published import PAPER, STUDY
from ..base.files import read_table, write_csv

MISSING = "–"  # a cell with no value
MIOU_TITLE = "mIoU (%), mean ± std over seeds"
DELTA_NOTE = "Δ: difference of the mean to the baseline variant's."
PUBLISHED_TITLE = "Measured beside published (docs/method.md §6, one run each)"
NOT_PUBLISHED = "No dataset of this run is covered by the published numbers (docs/method.md §6)."


def score_run(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    names: Sequence[str],
    uncertainty: Sequence[float],
    *,
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


def merge_plain_scores(
    final: tuple[float, pd.DataFrame, pd.DataFrame], plain: tuple[float, pd.DataFrame, pd.DataFrame], *, images: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, per-class, per-image tables) of one run from the :func:`score_run` results of its final
    predictions and of its plain ensemble (without TTA; the same as the final ones without TTA): the
    plain scores go beside the final ones in the columns ``miou_plain`` and ``iou_plain``."""
    (miou, per_class, per_image), (miou_plain, per_class_plain, per_image_plain) = final, plain
    per_class = per_class.assign(iou_plain=per_class_plain["iou"])
    per_image = per_image.copy()
    per_image.insert(2, "miou_plain", per_image_plain["miou"])
    summary = pd.DataFrame([{"miou": miou, "miou_plain": miou_plain, "images": images}])
    return summary, per_class, per_image


def format_cell(mean: float, std: float, seeds: int) -> str:
    if seeds < 2 or np.isnan(std):
        return f"{mean:.2f} (1 seed)"
    return f"{mean:.2f} ± {std:.2f}"


def summarize_seeds(per_seed: pd.DataFrame, baseline: str | None = "baseline") -> pd.DataFrame:
    """Per (dataset, variant): mean, std (sample, ddof=1) and number of seeds of mIoU, the same for the
    plain ensemble (without TTA), and the difference of the mean to the ``baseline`` variant's."""
    grouped = per_seed.groupby(["dataset", "variant"], sort=False)
    summary = grouped["miou"].agg(mean="mean", std="std", seeds="count").reset_index()
    plain = grouped["miou_plain"].agg(mean_plain="mean", std_plain="std").reset_index(drop=True)
    summary = pd.concat([summary, plain], axis=1)
    reference = summary[summary["variant"] == baseline].set_index("dataset")["mean"]
    summary["delta_vs_baseline"] = summary["mean"] - summary["dataset"].map(reference)
    return summary


def per_class_summary(per_class: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds of the IoU of every (dataset, variant, class)."""
    grouped = per_class.groupby(["dataset", "variant", "class_id"], sort=False)["iou"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def miou_cells(summary: pd.DataFrame, variants: Sequence[str], datasets: Sequence[str]) -> pd.DataFrame:
    """The mIoU table: a ``variant`` column, then one column per dataset; cells: mIoU % as mean ± std
    over seeds, with Δ to the baseline (``summary`` as :func:`summarize_seeds` returns it)."""
    cells = {}
    for r in summary.itertuples():
        cell = format_cell(r.mean, r.std, r.seeds)
        if r.variant != "baseline" and not np.isnan(r.delta_vs_baseline):
            cell += f" (Δ {r.delta_vs_baseline:+.2f})"
        cells[(r.dataset, r.variant)] = cell
    rows = [[variant, *(cells.get((dataset, variant), MISSING) for dataset in datasets)] for variant in variants]
    return pd.DataFrame(rows, columns=["variant", *datasets])


def published_comparison(summary: pd.DataFrame, variants: Sequence[str], datasets: Sequence[str]) -> pd.DataFrame:
    """Measured mean mIoU beside the study's published numbers, for the datasets and variants it
    covers: a ``variant`` column, then ``<dataset> measured`` and ``<dataset> published`` per covered
    dataset (no rows and no dataset columns when it covers none)."""
    covered = [d for d in datasets if any(d in STUDY.get(v, {}) for v in variants)]
    columns = ["variant", *(f"{d} {kind}" for d in covered for kind in ("measured", "published"))]
    if not covered:
        return pd.DataFrame(columns=columns)
    means = {(r.dataset, r.variant): r.mean for r in summary.itertuples()}
    rows = []
    for variant in variants:
        cells = [variant]
        for dataset in covered:
            measured = means.get((dataset, variant))
            published = STUDY.get(variant, {}).get(dataset)
            cells.append(MISSING if measured is None else f"{measured:.2f}")
            cells.append(MISSING if published is None else f"{published:.2f}")
        rows.append(cells)
    return pd.DataFrame(rows, columns=columns)


def paper_results_note(datasets: Sequence[str]) -> str | None:
    """The paper's DDPM results for those of ``datasets`` it reports (None: none)."""
    paper = [f"{d} {PAPER[d][0]} ± {PAPER[d][1]}" for d in datasets if d in PAPER]
    if not paper:
        return None
    return "The paper's DDPM results (baseline protocol, mean ± std over runs): " + ", ".join(paper) + "."


def markdown_table(cells: pd.DataFrame) -> str:
    """A DataFrame of display cells as a Markdown pipe table."""
    lines = ["| " + " | ".join(cells.columns) + " |", "|---|" + "---|" * (len(cells.columns) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def miou_markdown(summary: pd.DataFrame, variants: Sequence[str], datasets: Sequence[str]) -> str:
    """``miou.md``: the mIoU table, then the measured numbers beside the published ones."""
    comparison = published_comparison(summary, variants, datasets)
    text = f"# {MIOU_TITLE}\n\n" + markdown_table(miou_cells(summary, variants, datasets)) + f"\n{DELTA_NOTE}\n"
    text += f"\n## {PUBLISHED_TITLE}\n\n"
    if comparison.empty:
        return text + NOT_PUBLISHED + "\n"
    text += markdown_table(comparison)
    note = paper_results_note(datasets)
    return text + ("" if note is None else f"\n{note}\n")


def write_tables(
    runs: Sequence[dict], paths: Mapping[str, str | Path], *, variants: Sequence[str], datasets: Sequence[str]
) -> pd.DataFrame:
    """Write miou.md, miou.csv, per_seed.csv, per_class.csv and per_image.csv (``paths``, by the names
    of :data:`ddpmseg.config.paths.TABLES`) from run score folders.

    ``runs``: dicts with dataset, variant, seed and ``scores`` (a folder written by the scoring step).
    Returns the mean/std summary.
    """
    per_seed, per_class, per_image = [], [], []
    for run in runs:
        key = {"dataset": run["dataset"], "variant": run["variant"], "seed": run["seed"]}
        folder = Path(run["scores"])
        summary = read_table(folder / "summary.csv").iloc[0]
        per_seed.append({**key, "miou": float(summary["miou"]), "miou_plain": float(summary["miou_plain"])})
        per_class.append(read_table(folder / "per_class.csv").assign(**key))
        per_image.append(read_table(folder / "per_image.csv").assign(**key))
    per_seed_table = pd.DataFrame(per_seed)
    summary = summarize_seeds(per_seed_table)
    key_columns = ["dataset", "variant", "seed"]
    per_class_table = pd.concat(per_class, ignore_index=True)
    per_image_table = pd.concat(per_image, ignore_index=True)
    write_csv(paths["per_seed"], per_seed_table)
    write_csv(paths["miou"], summary)
    write_csv(paths["per_class"], per_class_table[key_columns + [c for c in per_class_table if c not in key_columns]])
    write_csv(paths["per_image"], per_image_table[key_columns + [c for c in per_image_table if c not in key_columns]])
    save_text(paths["markdown"], miou_markdown(summary, variants, datasets))
    return summary
