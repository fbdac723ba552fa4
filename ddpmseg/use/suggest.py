"""What to label next: unlabelled images ranked by the ensemble's uncertainty (docs/method.md §4).

An image's score is the paper's: the mean of the top 10 % of its per-pixel Jensen-Shannon divergences
between the members (:func:`ddpmseg.prediction.predict.uncertainty_score`), computed on the plain image (no TTA)
at the image's resolution (:mod:`ddpmseg.use.labelling`). ``ranking.csv`` lists every readable image, most uncertain first;
``contact_sheet.png`` shows the ``top`` most uncertain ones, each beside its uncertainty map, over the
uncertainty scale's legend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..data.listing import check_unique_stems
from ..data.decode import read_image
from ..base.errors import warn
from ..base.errors import DdpmsegError
from ..base.files import load_json, save_png
from .labelling import NON_SQUARE_SETTING, ROWS, Prediction, paths_of, predictions, uncertainty_map
from ..prediction.visualize import uncertainty_legend
from .segmenter import Segmenter
from ..base.files import write_csv

THUMBNAIL_HEIGHT = 256  # px: a readable size on screen; small images are enlarged pixel by pixel
CAPTION_FONT = 16
CAPTION_HEIGHT = CAPTION_FONT + 8
GAP = 6


def suggest_images(
    segmenter: Segmenter,
    images: Sequence[Path],
    out_dir: Path,
    *,
    top: int,
    batch_size: int = 4,
    progress: bool = True,
    non_square_setting: str = NON_SQUARE_SETTING,
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
    kept: list[tuple[float, str, Prediction]] = []  # the current top ones
    scores: list[tuple[float, str]] = []
    for prediction in predictions(
        segmenter, images, failed, tta=False, batch_size=batch_size, progress=progress, desc="suggest",
        non_square_setting=non_square_setting,
    ):
        score = (prediction.score, prediction.path.name)
        scores.append(score)
        kept = sorted(kept + [(*score, prediction)], key=lambda item: (-item[0], item[1]))[:top]
    for _, reason in failed:
        warn(reason)
    if not scores:
        raise DdpmsegError(f"none of the {len(images)} images could be read")
    shown = [SheetEntry(name, score, p.original, uncertainty_map(p, segmenter)) for score, name, p in kept]
    return write_suggestions(out_dir, scores, shown)


def suggest_from_labelling(labelled: Mapping[Path, Path], out_dir: Path, *, top: int) -> pd.DataFrame:
    """:func:`suggest_images`' outputs for the ``labelled`` images (image -> the folder where
    :func:`ddpmseg.use.labelling.label_images` labelled it), read from their rows (the same score, of the
    plain ensemble with or without TTA) and uncertainty maps: no second pass of the DDPM and the members."""
    if top < 1:
        raise DdpmsegError(f"--top {top} must be at least 1")
    if not labelled:
        raise DdpmsegError("no labelled image to rank")
    by_name = {Path(path).name: (Path(path), Path(folder)) for path, folder in labelled.items()}
    scores = [(float(load_json(paths_of(folder, path.stem)[ROWS])["uncertainty"]), name)
              for name, (path, folder) in by_name.items()]
    shown = sorted(scores, key=lambda item: (-item[0], item[1]))[:top]
    entries = []
    for score, name in shown:
        path, folder = by_name[name]
        with Image.open(paths_of(folder, path.stem)["uncertainty"]) as picture:
            entries.append(SheetEntry(name, score, read_image(path), np.asarray(picture.convert("RGB"))))
    return write_suggestions(out_dir, scores, entries)


def write_suggestions(out_dir: Path, scores: Sequence[tuple[float, str]], shown: Sequence[SheetEntry]) -> pd.DataFrame:
    """``out_dir/ranking.csv`` of every (score, name) and ``contact_sheet.png`` of the ``shown`` ones
    (most uncertain first); returns the ranking."""
    ranking = ranking_table(scores)
    write_csv(Path(out_dir) / "ranking.csv", ranking)
    save_png(Path(out_dir) / "contact_sheet.png", contact_sheet(shown))
    return ranking


def ranking_table(scores: Sequence[tuple[float, str]]) -> pd.DataFrame:
    """(rank from 1, image, uncertainty), most uncertain first, ties in name order."""
    ordered = sorted(scores, key=lambda item: (-item[0], item[1]))
    return pd.DataFrame(
        {"rank": range(1, len(ordered) + 1), "image": [n for _, n in ordered], "uncertainty": [s for s, _ in ordered]}
    )


def thumbnail(array: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> Image.Image:
    """``array`` at ``height`` px high: enlarged by nearest neighbour (pixels stay visible), or shrunk
    bilinearly."""
    image = Image.fromarray(array)
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.NEAREST if height >= image.height else Image.BILINEAR)


@dataclass(frozen=True)
class SheetEntry:
    """One image of the contact sheet: its name and score, the image as read and the (H, W, 3) picture
    of its uncertainty (:func:`ddpmseg.use.labelling.uncertainty_map`)."""

    name: str
    score: float
    original: np.ndarray
    picture: np.ndarray


def contact_sheet(entries: Sequence[SheetEntry]) -> np.ndarray:
    """One row per image, most uncertain first: a caption (rank, name, score) over the image and its
    uncertainty picture, then the uncertainty scale's legend, on white."""
    font = ImageFont.load_default(size=CAPTION_FONT)
    rows = []
    for rank, entry in enumerate(entries, start=1):
        pair = [thumbnail(entry.original), thumbnail(entry.picture)]
        row = Image.new("RGB", (pair[0].width + GAP + pair[1].width, CAPTION_HEIGHT + THUMBNAIL_HEIGHT), "white")
        row.paste(pair[0], (0, CAPTION_HEIGHT))
        row.paste(pair[1], (pair[0].width + GAP, CAPTION_HEIGHT))
        ImageDraw.Draw(row).text((2, 2), f"{rank}. {entry.name}  {entry.score:.4f}", fill="black", font=font)
        rows.append(row)
    width = max(r.width for r in rows)
    legend = Image.fromarray(uncertainty_legend(min(width, 480), bar_height=16, font_size=14))
    sheet = Image.new("RGB", (max(width, legend.width), sum(r.height + GAP for r in rows) + legend.height), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + GAP
    sheet.paste(legend, (0, top))
    return np.asarray(sheet)
