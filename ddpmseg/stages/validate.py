"""Rules of ``validate.smk``: a dataset's splits and a DDPM checkpoint, checked before anything costly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.datasets import Split, summarize_split
from ..diffusion.diffusers_folder import ddpm_location, digest_of, file_digests, is_diffusers
from ..diffusion.model import (
    build_model_and_diffusion,
    check_state_dict,
    load_ddpm,
    model_flags,
    read_checkpoint,
)
from ..data.download import download
from ..base.files import save_json, sha256_file


def validate_dataset(
    *,
    summary: str | Path,
    splits: dict[str, Split | dict],
    counts: dict[str, int],
    image_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Check every split (masks, sizes, labels, readability, stems, squareness); write the ``summary`` JSON."""
    summaries = {}
    for name, split in splits.items():
        split = Split.of(split)
        summaries[name] = summarize_split(
            split.images, counts[name], image_size, number_class, ignore_label, masks=split.masks,
            non_square=split.non_square, training=name == "train",
        )
    save_json(summary, {"number_class": number_class, "ignore_label": ignore_label, **summaries})


def validate_ddpm(
    *, checkpoint: str | Path | list[str], check: str | Path, flags: dict[str, Any], verify: dict[str, Any] | None = None
) -> None:
    """Check that the checkpoint fits the flags; record its sha256 in ``check``. (Steps and blocks are
    checked against the flags when the config is read, so that changing them does not rerun this.)

    ``verify`` (url, sha256, lock_file, lock_key) first checks a downloaded or hand-placed checkpoint
    against the registry's digest or the lock file; with neither, its digest goes into the lock file
    only once it has loaded (``weights_only``) and fitted the flags.

    A diffusers DDPM (``checkpoint``: its folder's files, ``flags``: its description) must load with
    diffusers into the UNet its configs describe; ``check`` records its digest and each file's sha256.
    """
    flags = model_flags(flags)
    if is_diffusers(flags):
        validate_diffusers_ddpm(folder=ddpm_location(checkpoint), check=check, flags=flags)
        return
    checkpoint = ddpm_location(checkpoint)
    model, _ = build_model_and_diffusion(flags)
    fitted: list[Path] = []

    def fits_flags(path: Path) -> None:
        check_state_dict(model, read_checkpoint(path), checkpoint, flags)
        fitted.append(path)

    digest = download(dest=checkpoint, progress=False, content_check=fits_flags, **verify) if verify else None
    if not fitted:  # a known digest (or no verification) skips the download's content check
        fits_flags(Path(checkpoint))
    save_json(
        check,
        {
            "checkpoint": str(checkpoint),
            "sha256": digest or sha256_file(checkpoint),
            "flags": flags,
            "decoder_blocks": len(model.output_blocks),
        },
    )


def validate_diffusers_ddpm(*, folder: Path, check: str | Path, flags: dict[str, Any]) -> None:
    """Load a diffusers folder as extraction will (every weight in place, the configs as described) and
    record its digest, its files' sha256 and its decoder blocks in ``check``."""
    files = file_digests(folder)
    model, _ = load_ddpm(folder, flags, device="cpu")
    save_json(
        check,
        {
            "checkpoint": str(folder),
            "sha256": digest_of(files),
            "files": files,
            "flags": flags,
            "decoder_blocks": len(model.output_blocks),
        },
    )
