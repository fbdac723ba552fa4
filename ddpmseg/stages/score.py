"""Rule of ``score.smk``: one run's predictions scored against the test labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.datasets import Split, load_split
from ..report.tables import merge_plain_scores, score_run
from ..base.files import read_table, write_csv


def score_predictions(
    *,
    predictions: str | Path,
    summary: str | Path,
    per_class: str | Path,
    per_image: str | Path,
    split: Split | dict,
    testing_number: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
    class_names: Sequence[str] | None = None,
) -> None:
    """Score one run's final predictions, and the plain ensemble's when TTA was on, against the test
    split's masks (``split``'s first ``testing_number``, resized to ``image_size`` as the features' images
    are); write the ``summary``, ``per_class`` and ``per_image`` tables.

    Columns ending in ``_plain`` hold the ensemble without TTA (equal to the final ones without TTA).
    """
    predictions = Path(predictions)
    names, _, masks = load_split(split, testing_number, 0, testing_number, image_size=image_size,
                                 number_class=number_class, ignore_label=ignore_label)
    uncertainty = read_table(predictions / "uncertainty.csv").set_index("image")["uncertainty"]
    gts = list(masks)
    scores = []
    for folder in ("labels", "labels_plain"):
        if not (predictions / folder).is_dir():
            folder = "labels"
        preds = [np.load(predictions / folder / f"{name}.npy") for name in names]
        scores.append(
            score_run(
                preds, gts, names, [uncertainty[n] for n in names],
                number_class=number_class, ignore_label=ignore_label, class_names=class_names,
            )
        )
    summary_table, per_class_table, per_image_table = merge_plain_scores(*scores, images=len(gts))
    write_csv(per_class, per_class_table)
    write_csv(per_image, per_image_table)
    write_csv(summary, summary_table)
