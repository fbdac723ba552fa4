"""What to label next: unlabelled images ranked by the ensemble's uncertainty (docs/method.md §4).

An image's score is the paper's: the mean of the top 10 % of its per-pixel Jensen-Shannon divergences
between the members (:func:`ddpmseg.predict.uncertainty_score`), computed on the plain image (no TTA)
at the model's resolution. ``ranking.csv`` lists every readable image, most uncertain first;
``contact_sheet.png`` shows the ``top`` most uncertain ones, each beside its uncertainty map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .data import warn
from .errors import DdpmsegError
from .files import save_png
from .labelling import Prediction, check_unique_stems, predictions, uncertainty_map
from .predict import uncertainty_score
from .segmenter import Segmenter
from .tables import write_csv

THUMBNAIL_HEIGHT = 128
CAPTION_HEIGHT = 14
GAP = 4


def suggest_images(
    segmenter: Segmenter,
    images: Sequence[Path],
    out_dir: Path,
    *,
    top: int,
    batch_size: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """Rank ``images`` by uncertainty into ``out_dir/ranking.csv`` (rank, image, uncertainty; ties by
    name) and draw the ``top`` most uncertain in ``out_dir/contact_sheet.png``; return the ranking.

    Unreadable images are left out of the ranking with a warning line each on stderr; if none is
    readable it is an error.
    """
    images, out_dir = [Path(p) for p in images], Path(out_dir)
    if top < 1:
        raise DdpmsegError(f"--top {top} must be at least 1")
    check_unique_stems(images)
    failed: list[tuple[Path, str]] = []
    kept: list[tuple[float, str, Prediction]] = []  # the current top ones, with their maps
    scores: list[tuple[float, str]] = []
    for prediction in predictions(
        segmenter, images, failed, tta=False, batch_size=batch_size, progress=progress, desc="suggest"
    ):
        score = (uncertainty_score(prediction.js), prediction.path.name)
        scores.append(score)
        kept = sorted(kept + [(*score, prediction)], key=lambda item: (-item[0], item[1]))[:top]
    for _, reason in failed:
        warn(reason)
    if not scores:
        raise DdpmsegError(f"none of the {len(images)} images could be read")
    ranking = ranking_table(scores)
    write_csv(out_dir / "ranking.csv", ranking)
    save_png(out_dir / "contact_sheet.png", contact_sheet([(name, s, p) for s, name, p in kept], segmenter))
    return ranking


def ranking_table(scores: Sequence[tuple[float, str]]) -> pd.DataFrame:
    """(rank from 1, image, uncertainty), most uncertain first, ties in name order."""
    ordered = sorted(scores, key=lambda item: (-item[0], item[1]))
    return pd.DataFrame(
        {"rank": range(1, len(ordered) + 1), "image": [n for _, n in ordered], "uncertainty": [s for s, _ in ordered]}
    )


def thumbnail(array: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> Image.Image:
    image = Image.fromarray(array)
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.BILINEAR)


def contact_sheet(entries: Sequence[tuple[str, float, Prediction]], segmenter: Segmenter) -> np.ndarray:
    """One row per image, most uncertain first: a caption (rank, name, score) over the image and its
    uncertainty map (grey, as :func:`ddpmseg.labelling.uncertainty_map`), on white."""
    rows = []
    for rank, (name, score, prediction) in enumerate(entries, start=1):
        grey = uncertainty_map(prediction, segmenter)
        pair = [thumbnail(prediction.original), thumbnail(np.repeat(grey[..., None], 3, axis=2))]
        row = Image.new("RGB", (pair[0].width + GAP + pair[1].width, CAPTION_HEIGHT + THUMBNAIL_HEIGHT), "white")
        row.paste(pair[0], (0, CAPTION_HEIGHT))
        row.paste(pair[1], (pair[0].width + GAP, CAPTION_HEIGHT))
        ImageDraw.Draw(row).text((2, 1), f"{rank}. {name}  {score:.4f}", fill="black")
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + GAP for r in rows) - GAP), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + GAP
    return np.asarray(sheet)
