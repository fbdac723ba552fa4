"""Rules of ``apply.smk``: a folder of new images labelled by a trained run (``apply:`` entries of the
config), one job per shard of images (``label_images``), and the shards gathered into the entry's outputs,
with the images ranked by what to annotate next (``gather_labels``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..base.files import atomic_directory, write_csv
from ..use import labelling
from ..use.run import run_segmenter
from ..use.settings import SegmenterSettings
from ..use.suggest import suggest_from_labelling

def label_images(
    *,
    images: Sequence[str | Path],
    members: Sequence[str | Path],
    checkpoint: str | Path | None,
    check: str | Path | None,
    labelling_folder: str | Path,
    settings: dict[str, Any],
    tta: bool,
    batch_size: int,
    non_square_setting: str,
    progress_folder: str | Path,
) -> None:
    """Label one shard of an ``apply:`` entry's images with the run's ensemble (``members``, the DDPM
    ``checkpoint`` validated in ``check``, the run's ``settings``) into ``labelling_folder``: a labelling
    folder of :func:`ddpmseg.use.labelling.label_images` (label PNGs at each image's size, overlays,
    uncertainty maps, each image's row). An image that cannot be labelled fails the job, with the count and
    the first one named, once the others are labelled. ``checkpoint`` and ``check`` are empty for the RGB
    control, which needs no DDPM. ``settings`` are the run's, under the entry's ``non_square`` policy when
    it has one (``non_square_setting`` names it in the error a non-square image gets without one).

    The labelling goes to ``progress_folder`` first (kept per segmenter identity and TTA), so that a killed
    job resumes with the images it had not labelled yet; the output takes its name when all are done.
    """
    segmenter = run_segmenter(members=members, checkpoint=checkpoint, check=check, settings=settings)
    files = [Path(path) for path in images]
    # the labelling folder records the segmenter, not whether TTA was on: the folder's name says it
    work = _progress_folder(Path(progress_folder), f"{segmenter.identity}-{'tta' if tta else 'plain'}")
    summary = labelling.label_images(segmenter, files, work, tta=tta, batch_size=batch_size,
                                     non_square_setting=non_square_setting)
    print(f"{summary.labelled} labelled, {summary.skipped} labelled before, {len(summary.failed)} failed")
    if summary.failed:
        _, reason = summary.failed[0]
        raise DdpmsegError(f"{len(summary.failed)} of {len(files)} images could not be labelled; first: {reason}")
    with atomic_directory(labelling_folder) as tmp:
        shutil.copytree(work, tmp, dirs_exist_ok=True)
    shutil.rmtree(Path(progress_folder))


def _progress_folder(root: Path, name: str) -> Path:
    """``root/<name>``, with the folders of other segmenters or TTA settings removed."""
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name != name:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return root / name


def gather_labels(
    *,
    shards: Sequence[str | Path],
    labels: str | Path,
    overlay: str | Path,
    uncertainty: str | Path,
    examples: str | Path,
    predictions: str | Path,
    suggestions: str | Path,
    shard_images: Sequence[Sequence[str]],
    settings: dict[str, Any],
    example_count: int,
    top: int,
) -> None:
    """The entry's outputs from its labelled shards (``shards``, whose images are ``shard_images``):
    ``labels``, ``overlay`` and ``uncertainty`` folders of every image (hard links to the shards' files
    where the file system allows, else copies), ``predictions`` (the table, in file-name order),
    ``examples`` panels of the first ``example_count`` images, and ``suggestions``: the images ranked by
    uncertainty with a contact sheet of the ``top`` ones (:func:`ddpmseg.use.suggest.suggest_from_labelling`).
    The same files as one labelling of the whole folder."""
    folders = {
        Path(image): Path(shard) for shard, images in zip(shards, shard_images, strict=True) for image in images
    }
    labelled = dict(sorted(folders.items()))
    for kind, output in (("labels", labels), ("overlay", overlay), ("uncertainty", uncertainty)):
        with atomic_directory(output) as tmp:
            for image, folder in labelled.items():
                _link_or_copy(labelling.paths_of(folder, image.stem)[kind], tmp / f"{image.stem}.png")
    class_names = SegmenterSettings.from_plain(settings).class_names
    write_csv(predictions, labelling.prediction_table(labelled, class_names))
    with atomic_directory(examples) as tmp:
        labelling.write_examples(tmp, labelled, example_count)
    with atomic_directory(suggestions) as tmp:
        suggest_from_labelling(labelled, tmp, top=top)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)
