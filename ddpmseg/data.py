"""Datasets in the paper's archive layout: ``<root>/real/{train,test}/`` with images and same-stem ``.npy`` masks.

Images are taken in sorted file-name order and the first ``count`` of a split are used. Preprocessing
follows method.md §1: RGB, bilinear resize to the model's ``image_size``, scaled to [-1, 1]; masks
resized with nearest neighbour.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DdpmsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SMALL_ANNOTATION_PIXELS = 20


@dataclass(frozen=True)
class Sample:
    """One image of a split and its mask."""

    name: str
    image_path: Path
    mask_path: Path


def split_dir(root: str | Path, split: str) -> Path:
    """Folder of a split in the archive layout."""
    return Path(root) / "real" / split


def list_samples(folder: str | Path, count: int | None = None) -> list[Sample]:
    """The first ``count`` images of ``folder`` in sorted name order, each with its same-stem ``.npy`` mask.

    Raises :class:`DdpmsegError` for a missing folder, an empty split, two images with the same stem,
    fewer images than ``count`` or a missing mask.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DdpmsegError(f"{folder}: dataset folder does not exist")
    images = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DdpmsegError(f"{folder}: empty split, no {'/'.join(IMAGE_SUFFIXES)} images")
    stems = Counter(p.stem for p in images)
    duplicated = sorted(stem for stem, n in stems.items() if n > 1)
    if duplicated:
        names = ", ".join(p.name for p in images if p.stem == duplicated[0])
        raise DdpmsegError(f"{folder}: two images with the same stem '{duplicated[0]}' ({names})")
    if count is not None:
        if len(images) < count:
            raise DdpmsegError(f"{folder}: split has {len(images)} images, the config asks for {count}")
        images = images[:count]
    samples = []
    for image_path in images:
        mask_path = image_path.with_suffix(".npy")
        if not mask_path.is_file():
            raise DdpmsegError(f"{image_path}: missing mask {mask_path.name}")
        samples.append(Sample(image_path.stem, image_path, mask_path))
    return samples


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable image ({error})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` mask as a 2-D int64 array of class ids."""
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable mask ({error})") from None
    if mask.ndim != 2:
        raise DdpmsegError(f"{path}: mask must be a 2-D array of class ids, got shape {mask.shape}")
    if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
        return mask.astype(np.int64)
    if np.issubdtype(mask.dtype, np.floating) and np.all(np.isfinite(mask)) and np.all(mask == np.round(mask)):
        return mask.astype(np.int64)
    raise DdpmsegError(f"{path}: mask must hold integer class ids, got dtype {mask.dtype}")


def resize_image(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to a square ``image_size``."""
    if rgb.shape[:2] == (image_size, image_size):
        return rgb
    resized = Image.fromarray(rgb).resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(resized)


def resize_mask(mask: np.ndarray, image_size: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask to ``image_size`` x ``image_size`` (pixel-centre sampling)."""
    height, width = mask.shape
    rows = np.minimum(((np.arange(image_size) + 0.5) * height / image_size).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(image_size) + 0.5) * width / image_size).astype(np.int64), width - 1)
    return mask[rows[:, None], cols[None, :]]


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 to (3, H, W) float32 in [-1, 1]."""
    return (rgb.astype(np.float32) / 255.0 * 2.0 - 1.0).transpose(2, 0, 1).copy()


def check_labels(mask: np.ndarray, number_class: int, ignore_label: int, path: str | Path) -> None:
    """Every label must lie in [0, number_class) or equal ``ignore_label``."""
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= number_class)) & (values != ignore_label)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise DdpmsegError(
            f"{path}: label(s) {shown} outside [0, {number_class}) and not the ignore_label {ignore_label}"
        )


def read_sample(sample: Sample, number_class: int, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked (image uint8 (H, W, 3), mask int64 (H, W)) of one sample at its original size."""
    rgb = read_image(sample.image_path)
    mask = read_mask(sample.mask_path)
    if mask.shape != rgb.shape[:2]:
        raise DdpmsegError(
            f"{sample.mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image's "
            f"{rgb.shape[1]}x{rgb.shape[0]} ({sample.image_path.name})"
        )
    check_labels(mask, number_class, ignore_label, sample.mask_path)
    return rgb, mask


def load_sample(
    sample: Sample, image_size: int, number_class: int, ignore_label: int
) -> tuple[np.ndarray, np.ndarray]:
    """Checked and preprocessed (image uint8 (S, S, 3), mask int64 (S, S)) of one sample."""
    rgb, mask = read_sample(sample, number_class, ignore_label)
    return resize_image(rgb, image_size), resize_mask(mask, image_size)


def remove_small_annotations(
    mask: np.ndarray, ignore_label: int, min_pixels: int = SMALL_ANNOTATION_PIXELS
) -> np.ndarray:
    """Training masks only: a class with 0 < pixel count < ``min_pixels`` in this mask becomes ignore_label."""
    values, counts = np.unique(mask, return_counts=True)
    small = values[(counts < min_pixels) & (values != ignore_label)]
    if small.size == 0:
        return mask
    cleaned = mask.copy()
    cleaned[np.isin(mask, small)] = ignore_label
    return cleaned


def summarize_split(
    folder: str | Path, count: int, image_size: int, number_class: int, ignore_label: int
) -> dict:
    """Check every sample of a split (see :func:`list_samples`, :func:`load_sample`) and summarise it."""
    samples = list_samples(folder, count)
    histogram = np.zeros(number_class, dtype=np.int64)
    ignored = 0
    sizes: Counter[str] = Counter()
    for sample in samples:
        rgb, mask = read_sample(sample, number_class, ignore_label)
        sizes[f"{rgb.shape[1]}x{rgb.shape[0]}"] += 1
        mask = resize_mask(mask, image_size)
        valid = mask != ignore_label
        histogram += np.bincount(mask[valid], minlength=number_class)[:number_class]
        ignored += int((~valid).sum())
    return {
        "folder": str(folder),
        "images": len(samples),
        "names": [s.name for s in samples],
        "original_sizes": dict(sizes),
        "class_pixels": histogram.tolist(),
        "ignored_pixels": ignored,
    }
