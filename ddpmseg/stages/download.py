"""Rules of ``download.smk``: registry archives and checkpoints, and a dataset's folder of an archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.archive import check_archive, extract_archive
from ..data.download import download


def download_archive(
    *, archive: str | Path, verify: dict[str, Any], retries: int, backoff_s: float, timeout_s: float
) -> None:
    """Download a dataset archive (resuming, verified, atomic; see :func:`ddpmseg.data.download.download`).

    ``verify``: url, sha256, lock_file, lock_key. Without a known digest, the archive must read as
    extraction would (:func:`ddpmseg.data.archive.check_archive`) before its digest goes into the lock file.
    """
    _fetch(archive, verify, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, is_archive=True)


def download_checkpoint(
    *, checkpoint: str | Path, verify: dict[str, Any], retries: int, backoff_s: float, timeout_s: float
) -> None:
    """Download a DDPM checkpoint, only verified here: its digest is recorded by
    :func:`ddpmseg.stages.validate.validate_ddpm` once it has loaded and fitted the model flags (which
    this rule does not know, and loading would need far more memory than a download)."""
    _fetch(checkpoint, verify, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, is_archive=False)


def _fetch(
    dest: str | Path, verify: dict[str, Any], *, retries: int, backoff_s: float, timeout_s: float, is_archive: bool
) -> None:
    digest = download(
        verify["url"], dest, sha256=verify["sha256"], lock_file=verify["lock_file"], lock_key=verify["lock_key"],
        retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
        content_check=check_archive if is_archive else None, record=is_archive,
    )
    print(f"{dest}: sha256 {digest}")


def extract_dataset(*, archive: str | Path, dataset: str | Path, prefix: str, verify: dict[str, Any]) -> None:
    """Verify the archive (registry digest or lock file; else it must read safely before its digest is
    recorded), then extract one dataset's folder (``prefix``) from it into ``dataset``."""
    download(dest=archive, progress=False, content_check=check_archive, **verify)
    files = extract_archive(archive, dataset, members_prefix=prefix)
    print(f"{archive}: {len(files)} files of {prefix} extracted to {dataset}")
