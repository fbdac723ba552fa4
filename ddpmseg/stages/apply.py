"""Rules of ``apply.smk``: a folder of new images labelled by a trained run (``apply:`` entries of the
config), and the images ranked by what to annotate next."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import labelling
from ..bundle import run_segmenter
from ..errors import DdpmsegError
from ..files import atomic_directory, atomic_path


def label_images(
    *,
    images: str | Path,
    members: Sequence[str | Path],
    checkpoint: str | Path,
    check: str | Path,
    labels: str | Path,
    overlay: str | Path,
    uncertainty: str | Path,
    examples: str | Path,
    predictions: str | Path,
    settings: dict[str, Any],
    tta: bool,
    batch_size: int,
    example_count: int,
    progress_folder: str | Path,
) -> None:
    """Label every image of the folder ``images`` with the run's ensemble (``members``, the DDPM
    ``checkpoint`` validated in ``check``, the run's ``settings``): label PNGs at each image's size in
    ``labels``, ``overlay``s, ``uncertainty`` maps, ``predictions`` (the table) and ``examples`` panels
    of the first ``example_count`` images. An image that cannot be labelled fails the job, with the
    count and the first one named, once the others are labelled.

    The labelling goes to ``progress_folder`` first (kept per segmenter identity and TTA), so that a killed job
    resumes with the images it had not labelled yet; the outputs take their names when all are done.
    """
    segmenter = run_segmenter(members=members, checkpoint=checkpoint, check=check, settings=settings)
    files = labelling.image_files([images])
    # the labelling folder records the segmenter, not whether TTA was on: the folder's name says it
    work = _progress_folder(Path(progress_folder), f"{segmenter.identity}-{'tta' if tta else 'plain'}")
    summary = labelling.label_images(
        segmenter, files, work, tta=tta, batch_size=batch_size, examples=example_count
    )
    print(f"{summary.labelled} labelled, {summary.skipped} labelled before, {len(summary.failed)} failed")
    if summary.failed:
        _, reason = summary.failed[0]
        raise DdpmsegError(f"{len(summary.failed)} of {len(files)} images could not be labelled; first: {reason}")
    (work / "examples").mkdir(exist_ok=True)
    for folder, output in (("labels", labels), ("overlay", overlay), ("uncertainty", uncertainty), ("examples", examples)):
        with atomic_directory(output) as tmp:
            shutil.copytree(work / folder, tmp, dirs_exist_ok=True)
    with atomic_path(predictions) as tmp:
        shutil.copyfile(work / "predictions.csv", tmp)
    shutil.rmtree(Path(progress_folder))


def _progress_folder(root: Path, name: str) -> Path:
    """``root/<name>``, with the folders of other segmenters or TTA settings removed."""
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name != name:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return root / name


def suggest_images(
    *,
    images: str | Path,
    members: Sequence[str | Path],
    checkpoint: str | Path,
    check: str | Path,
    suggestions: str | Path,
    settings: dict[str, Any],
    top: int,
    batch_size: int,
) -> None:
    """Rank the images of the folder ``images`` by the run's ensemble's uncertainty, most uncertain first:
    ``suggestions``/ranking.csv and contact_sheet.png of the ``top`` ones (the images to annotate next)."""
    from ..suggest import suggest_images as rank_images

    segmenter = run_segmenter(members=members, checkpoint=checkpoint, check=check, settings=settings)
    with atomic_directory(suggestions) as tmp:
        rank_images(segmenter, labelling.image_files([images]), tmp, top=top, batch_size=batch_size)
