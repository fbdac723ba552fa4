"""Rule of ``apply.smk``: a folder of new images labelled by a trained run (``apply:`` entries of the
config), and the same images ranked by what to annotate next."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.listing import image_files
from ..use import labelling
from ..use.run import run_segmenter
from ..base.errors import DdpmsegError
from ..base.files import atomic_directory, atomic_path
from ..use.suggest import suggest_from_labelling


def label_images(
    *,
    images: str | Path,
    members: Sequence[str | Path],
    checkpoint: str | Path | None,
    check: str | Path | None,
    labels: str | Path,
    overlay: str | Path,
    uncertainty: str | Path,
    examples: str | Path,
    predictions: str | Path,
    suggestions: str | Path,
    settings: dict[str, Any],
    tta: bool,
    batch_size: int,
    example_count: int,
    top: int,
    progress_folder: str | Path,
) -> None:
    """Label every image of the folder ``images`` with the run's ensemble (``members``, the DDPM
    ``checkpoint`` validated in ``check``, the run's ``settings``): label PNGs at each image's size in
    ``labels``, ``overlay``s, ``uncertainty`` maps, ``predictions`` (the table) and ``examples`` panels
    of the first ``example_count`` images, and ``suggestions``: the images ranked by uncertainty with a
    contact sheet of the ``top`` ones (:func:`ddpmseg.use.suggest.suggest_from_labelling`, from the same
    pass). An image that cannot be labelled fails the job, with the count and the first one named, once
    the others are labelled. ``checkpoint`` and ``check`` are empty for the RGB control, which needs no DDPM.

    The labelling goes to ``progress_folder`` first (kept per segmenter identity and TTA), so that a killed job
    resumes with the images it had not labelled yet; the outputs take their names when all are done.
    """
    segmenter = run_segmenter(members=members, checkpoint=checkpoint, check=check, settings=settings)
    files = image_files([images])
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
    with atomic_directory(suggestions) as tmp:
        suggest_from_labelling(work, files, tmp, top=top)
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
