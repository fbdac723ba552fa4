"""Rule of ``tables.smk``: the tables over every run (mIoU per variant and dataset, per seed, class, image)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..report.tables import write_tables


def make_tables(
    *,
    scores: Sequence[str | Path],
    markdown: str | Path,
    miou: str | Path,
    per_seed: str | Path,
    per_class: str | Path,
    per_image: str | Path,
    runs: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    datasets: Sequence[str],
) -> None:
    """Collect the tables from the runs' scores: ``scores`` holds each run's ``summary.csv`` (beside its
    per-class and per-image tables), in the order of ``runs`` ({dataset, variant, seed})."""
    scored = [{**run, "scores": str(Path(summary).parent)} for run, summary in zip(runs, scores, strict=True)]
    paths = {"markdown": markdown, "miou": miou, "per_seed": per_seed, "per_class": per_class, "per_image": per_image}
    write_tables(scored, paths, variants=variants, datasets=datasets)
