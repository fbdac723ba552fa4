"""Which files of a folder are images (or masks): by suffix in any case, sorted by name, broken links named,
two images of one name refused where outputs are named by it."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..base.errors import DdpmsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


MASK_SUFFIXES = (".npy", ".png")


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def check_link(path: Path) -> None:
    """A broken symbolic link is an error naming it (``is_file`` would silently skip it)."""
    if path.is_symlink() and not path.exists():
        raise DdpmsegError(f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)")


def files_with_suffixes(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` whose suffix, in any case, is one of ``suffixes``, sorted by name. Hidden files
    (``._photo.png`` that macOS writes beside a copied file, ``.thumb.png``) are not among them."""
    found = []
    for path in folder.iterdir():
        if path.suffix.lower() in suffixes and not is_hidden(path):
            check_link(path)
            if path.is_file():
                found.append(path)
    return sorted(found)


def check_unique_stems(images: Sequence[Path]) -> None:
    """Outputs are named by stem: two images with one stem (e.g. in two folders) are an error."""
    if not images:
        raise DdpmsegError("no images to label")
    counts = Counter(Path(p).stem for p in images)
    repeated = sorted(stem for stem, n in counts.items() if n > 1)
    if repeated:
        clashing = ", ".join(str(p) for p in images if Path(p).stem == repeated[0])
        raise DdpmsegError(f"two images share the name '{repeated[0]}' ({clashing}); outputs are named by it: rename one")


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (``.png``/``.jpg``/``.jpeg``, any case, not recursing) in
    folders, sorted and without repeats. A path that does not exist, or a folder without images, is an
    error naming it; a file named directly is taken whatever its suffix (reading it tells)."""
    found: set[Path] = set()
    for entry in map(Path, paths):
        check_link(entry)
        if entry.is_dir():
            images = files_with_suffixes(entry, IMAGE_SUFFIXES)
            if not images:
                raise DdpmsegError(f"{entry}: folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
            found.update(images)
        elif entry.is_file():
            found.add(entry)
        else:
            raise DdpmsegError(f"{entry}: no such image file or folder")
    return sorted(found)


def training_image_files(folders: list[str]) -> list[Path]:
    """The images of the folders, folder after folder, each sorted by name (the files that
    :func:`ddpmseg.config.ddpms.ddpm_image_inputs` lists for the rule)."""
    files = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise DdpmsegError(f"{folder}: no such folder of images to train the DDPM on")
        found = files_with_suffixes(Path(folder), IMAGE_SUFFIXES)
        if not found:
            raise DdpmsegError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images to train the DDPM on")
        files += found
    return files


def image_shards(images: Sequence[str | Path], shard_size: int) -> dict[int, list[Path]]:
    """The images in shards of about ``shard_size`` (at most that many on average): an image's shard is a
    hash of its file name (BLAKE2b, so that similar names spread) modulo the shard count, the smallest power
    of two that gives shards of at most ``shard_size`` images on average. So adding, removing or changing one image changes only its own
    shard, unless the count of shards doubles or halves. Empty shards are left out; each is sorted."""
    if shard_size < 1:
        raise DdpmsegError(f"shard_size {shard_size} must be at least 1")
    needed = max(1, math.ceil(len(images) / shard_size))
    count = 2 ** math.ceil(math.log2(needed))
    shards: dict[int, list[Path]] = {}
    for path in sorted(Path(p) for p in images):
        digest = hashlib.blake2b(path.name.encode(), digest_size=8).digest()
        shards.setdefault(int.from_bytes(digest, "big") % count, []).append(path)
    return dict(sorted(shards.items()))
