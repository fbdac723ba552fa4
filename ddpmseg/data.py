"""Datasets: the paper's archive layout (``<root>/real/{train,test}/`` with images and same-stem ``.npy``
masks) or separate image and mask folders (masks ``.npy`` or single-channel ``.png``).

Images are taken in sorted file-name order and the first ``count`` of a split are used. Preprocessing
follows docs/method.md §1: RGB, bilinear resize to the model's ``image_size``, scaled to [-1, 1]; masks
resized with nearest neighbour by OpenCV's index rule, each of image and mask on its own.
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


@dataclass(frozen=True)
class Split:
    """Where a split's images and masks are and how non-square images are treated."""

    images: Path
    masks: Path | None = None  # None: .npy masks beside the images (the archive layout)
    non_square: str | None = None

    @classmethod
    def of(cls, value: "Split | dict") -> "Split":
        """From a plain dict (as Snakemake params carry it) or a Split."""
        if isinstance(value, Split):
            return value
        masks = value.get("masks")
        return cls(Path(value["images"]), Path(masks) if masks else None, value.get("non_square"))

    def as_dict(self) -> dict:
        return {"images": str(self.images), "masks": str(self.masks) if self.masks else None, "non_square": self.non_square}


def split_dir(root: str | Path, split: str) -> Path:
    """Folder of a split in the archive layout."""
    return Path(root) / "real" / split


MASK_SUFFIXES = (".npy", ".png")
NON_SQUARE_POLICIES = ("resize", "center_crop")


def list_samples(folder: str | Path, count: int | None = None, masks: str | Path | None = None) -> list[Sample]:
    """The first ``count`` images of ``folder`` in sorted name order, each with its same-stem mask.

    Masks are ``.npy`` files beside the images (the archive layout) or, when ``masks`` names a separate
    folder, ``.npy`` or single-channel ``.png`` files there. Raises :class:`DdpmsegError` for a missing
    folder, an empty split, two images with the same stem, fewer images than ``count``, a missing mask
    or two masks for one image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DdpmsegError(f"{folder}: dataset folder does not exist")
    mask_folder = folder if masks is None else Path(masks)
    if not mask_folder.is_dir():
        raise DdpmsegError(f"{mask_folder}: mask folder does not exist")
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
    suffixes = (".npy",) if masks is None else MASK_SUFFIXES
    samples = []
    for image_path in images:
        candidates = [mask_folder / f"{image_path.stem}{suffix}" for suffix in suffixes]
        found = [path for path in candidates if path.is_file()]
        if not found:
            raise DdpmsegError(f"{image_path}: missing mask {' or '.join(str(c.name) for c in candidates)}")
        if len(found) > 1:
            raise DdpmsegError(f"{image_path}: two masks ({', '.join(p.name for p in found)}); keep one")
        samples.append(Sample(image_path.stem, image_path, found[0]))
    return samples


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable image ({error})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask (``.npy`` array or single-channel ``.png``) as a 2-D int64 array of class ids."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                    raise DdpmsegError(f"{path}: mask PNG must be single-channel (mode {image.mode})")
                return np.asarray(image).astype(np.int64)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise DdpmsegError(f"{path}: unreadable mask ({error})") from None
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


def make_square(
    rgb: np.ndarray, mask: np.ndarray, policy: str | None, path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the non-square policy to an image and its mask (each at its own resolution): ``resize``
    keeps everything (stretched later), ``center_crop`` keeps the central square of each; without a
    policy a non-square image is an error rather than silently stretched."""
    height, width = rgb.shape[:2]
    if height == width or policy == "resize":
        return rgb, mask
    if policy == "center_crop":
        return center_square(rgb), center_square(mask)
    raise DdpmsegError(
        f"{path}: image is {width}x{height}, not square; choose the dataset's non_square policy "
        f"({' or '.join(NON_SQUARE_POLICIES)})"
    )


def center_square(array: np.ndarray) -> np.ndarray:
    """The central square of an (H, W, ...) array."""
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return array[top : top + side, left : left + side]


def resize_image(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to a square ``image_size``."""
    if rgb.shape[:2] == (image_size, image_size):
        return rgb
    resized = Image.fromarray(rgb).resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(resized)


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each of ``target`` output indices under OpenCV's ``INTER_NEAREST`` resize.

    The reference implementation resizes masks with ``cv2.resize(..., interpolation=INTER_NEAREST)``,
    which takes ``floor(i * n / S)`` computed in double precision as ``i * (1 / (S / n))``: that product
    can fall just below an integer (n = 186, S = 64, i = 32 gives 92, not 93), and the reference's
    masks carry those indices, so they are reproduced here rather than the exact quotient.
    """
    inverse_scale = 1.0 / (target / source)
    indices = np.floor(np.arange(target, dtype=np.float64) * inverse_scale).astype(np.int64)
    return np.minimum(indices, source - 1)


def resize_mask(mask: np.ndarray, image_size: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask to ``image_size`` x ``image_size``, as the reference does
    (OpenCV's index rule, :func:`nearest_indices`; docs/method.md §1)."""
    height, width = mask.shape
    if (height, width) == (image_size, image_size):
        return mask
    rows = nearest_indices(height, image_size)
    cols = nearest_indices(width, image_size)
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


def same_aspect_ratio(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Whether two (height, width) sizes have the same aspect ratio, within one pixel of rounding."""
    (h1, w1), (h2, w2) = first, second
    return abs(w2 - w1 * h2 / h1) <= 1 and abs(h2 - h1 * w2 / w1) <= 1


def read_sample(sample: Sample, number_class: int, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked (image uint8 (H, W, 3), mask int64 (h, w)) of one sample at their original sizes.

    A mask may be stored at another resolution than its image (CelebAMask-HQ: 1024 px images, 512 px
    masks) if both have the same aspect ratio: each is resized to ``image_size`` on its own, as the
    reference does. Different aspect ratios are an error.
    """
    rgb = read_image(sample.image_path)
    mask = read_mask(sample.mask_path)
    if mask.shape != rgb.shape[:2] and not same_aspect_ratio(rgb.shape[:2], mask.shape):
        raise DdpmsegError(
            f"{sample.mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} has another aspect ratio than its "
            f"image's {rgb.shape[1]}x{rgb.shape[0]} ({sample.image_path.name})"
        )
    check_labels(mask, number_class, ignore_label, sample.mask_path)
    return rgb, mask


def load_split(
    split: Split | dict, count: int, start: int, stop: int, image_size: int, number_class: int, ignore_label: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, images (n, S, S, 3) uint8 and masks (n, S, S) of images ``start:stop`` of a split's first ``count``."""
    split = Split.of(split)
    samples = list_samples(split.images, count, split.masks)[start:stop]
    loaded = [load_sample(s, image_size, number_class, ignore_label, split.non_square) for s in samples]
    return [s.name for s in samples], np.stack([im for im, _ in loaded]), np.stack([m for _, m in loaded])


def load_sample(
    sample: Sample, image_size: int, number_class: int, ignore_label: int, non_square: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Checked and preprocessed (image uint8 (S, S, 3), mask int64 (S, S)) of one sample."""
    rgb, mask = read_sample(sample, number_class, ignore_label)
    rgb, mask = make_square(rgb, mask, non_square, sample.image_path)
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
    folder: str | Path,
    count: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
    masks: str | Path | None = None,
    non_square: str | None = None,
) -> dict:
    """Check every sample of a split (see :func:`list_samples`, :func:`load_sample`) and summarise it."""
    samples = list_samples(folder, count, masks)
    histogram = np.zeros(number_class, dtype=np.int64)
    ignored = 0
    sizes: Counter[str] = Counter()
    for sample in samples:
        rgb, mask = read_sample(sample, number_class, ignore_label)
        sizes[f"{rgb.shape[1]}x{rgb.shape[0]}"] += 1
        _, mask = make_square(rgb, mask, non_square, sample.image_path)
        mask = resize_mask(mask, image_size)
        valid = mask != ignore_label
        histogram += np.bincount(mask[valid], minlength=number_class)[:number_class]
        ignored += int((~valid).sum())
    return {
        "folder": str(folder),
        "masks": str(masks or folder),
        "images": len(samples),
        "names": [s.name for s in samples],
        "original_sizes": dict(sizes),
        "class_pixels": histogram.tolist(),
        "ignored_pixels": ignored,
    }
