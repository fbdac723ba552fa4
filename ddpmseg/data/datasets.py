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

from ..base.errors import DdpmsegError
from .listing import IMAGE_SUFFIXES, MASK_SUFFIXES, files_with_suffixes, is_hidden
from .preprocess import SMALL_ANNOTATION_PIXELS, make_square, remove_small_annotations, resize_image, resize_mask
from .decode import read_image, read_mask
from ..base.errors import warn
from .decode import stored_turned


def split_folder(root: str | Path, split: str) -> Path:
    """The folder of a split (``train``, ``test``) of a dataset in the archive layout."""
    return Path(root) / "real" / split


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


def list_samples(folder: str | Path, count: int | None = None, masks: str | Path | None = None) -> list[Sample]:
    """The first ``count`` images of ``folder`` in sorted name order, each with its same-stem mask.

    Masks are ``.npy`` files beside the images (the archive layout) or, when ``masks`` names a separate
    folder, ``.npy`` or single-channel ``.png`` files there. Suffixes of images and masks match in any
    case (``.PNG``, ``.Npy``). Raises :class:`DdpmsegError` for a missing folder, an empty split, two
    images with the same stem, fewer images than ``count``, a missing mask, two masks for one image or
    a broken symbolic link among the images or masks.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DdpmsegError(f"{folder}: dataset folder does not exist")
    mask_folder = folder if masks is None else Path(masks)
    if not mask_folder.is_dir():
        raise DdpmsegError(f"{mask_folder}: mask folder does not exist")
    images = files_with_suffixes(folder, IMAGE_SUFFIXES)
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
    masks_by_stem: dict[str, list[Path]] = {}
    for path in files_with_suffixes(mask_folder, suffixes):
        masks_by_stem.setdefault(path.stem, []).append(path)
    samples = []
    for image_path in images:
        found = masks_by_stem.get(image_path.stem, [])
        if not found:
            candidates = " or ".join(f"{image_path.stem}{suffix}" for suffix in suffixes)
            raise DdpmsegError(f"{image_path}: missing mask {candidates}")
        if len(found) > 1:
            raise DdpmsegError(f"{image_path}: two masks ({', '.join(p.name for p in found)}); keep one")
        samples.append(Sample(image_path.stem, image_path, found[0]))
    return samples


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def unused_entries(folder: str | Path, masks: str | Path | None = None) -> str | None:
    """What a split's folders hold besides images and their masks (masks without an image, subfolders,
    files of other types; hidden entries are not counted), as one line, or None when nothing."""
    folder = Path(folder)
    mask_folder = folder if masks is None else Path(masks)
    mask_suffixes = (".npy",) if masks is None else MASK_SUFFIXES
    image_stems = {p.stem for p in files_with_suffixes(folder, IMAGE_SUFFIXES)}
    orphans = [p for p in files_with_suffixes(mask_folder, mask_suffixes) if p.stem not in image_stems]
    if mask_folder == folder:
        known = {folder: IMAGE_SUFFIXES + mask_suffixes}
    else:
        known = {folder: IMAGE_SUFFIXES, mask_folder: mask_suffixes}
    subfolders, others = [], []
    for where in known:
        for path in sorted(where.iterdir()):
            if is_hidden(path):
                continue
            if path.is_dir():
                subfolders.append(path)
            elif path.suffix.lower() not in known[where]:
                others.append(path)
    parts = []
    if orphans:
        place = "" if mask_folder == folder else f" in {mask_folder}"
        parts.append(f"{plural(len(orphans), 'mask')}{place} without an image (e.g. {orphans[0].name})")
    if subfolders:
        parts.append(f"{plural(len(subfolders), 'subfolder')} ignored (e.g. {subfolders[0].name})")
    if others:
        parts.append(f"{plural(len(others), 'file')} of other types ignored (e.g. {others[0].name})")
    return f"{folder}: {', '.join(parts)}" if parts else None


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


DATASET_POLICY = "the dataset's non_square policy"


def square_sample(rgb: np.ndarray, mask: np.ndarray, policy: str | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask made square as the image's shape and the policy say, each at its own resolution
    (:func:`ddpmseg.data.preprocess.make_square`)."""
    square = make_square(rgb, policy, path, choose=DATASET_POLICY)
    if square.shape == rgb.shape:
        return rgb, mask
    return square, make_square(mask, policy, path, choose=DATASET_POLICY)


def load_split(
    split: Split | dict, count: int, start: int, stop: int, *, image_size: int, number_class: int, ignore_label: int
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
    rgb, mask = square_sample(rgb, mask, non_square, sample.image_path)
    return resize_image(rgb, image_size), resize_mask(mask, image_size)


def summarize_split(
    folder: str | Path,
    count: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
    *,
    masks: str | Path | None = None,
    non_square: str | None = None,
    training: bool = False,
) -> dict:
    """Check every sample of a split (see :func:`list_samples`, :func:`load_sample`) and summarise it.

    A training mask (``training``) with no pixel to train on, every pixel ignore_label after cropping
    and resizing or once classes under 20 pixels are ignored, is an error naming it; in a test split
    such masks are only listed (``unscored_masks``: they do not count in the scores). Masks without an
    image, subfolders and files of other types beside the split are printed as one warning line, and so
    are images with an EXIF orientation (read as shown: their masks must be in that orientation).
    """
    samples = list_samples(folder, count, masks)
    histogram = np.zeros(number_class, dtype=np.int64)
    ignored = 0
    sizes: Counter[str] = Counter()
    unscored, turned = [], []
    for sample in samples:
        rgb, mask = read_sample(sample, number_class, ignore_label)
        if stored_turned(sample.image_path):
            turned.append(sample.image_path.name)
        sizes[f"{rgb.shape[1]}x{rgb.shape[0]}"] += 1
        _, mask = square_sample(rgb, mask, non_square, sample.image_path)
        mask = resize_mask(mask, image_size)
        valid = mask != ignore_label
        if training:
            check_trainable(mask, ignore_label, image_size, sample.mask_path)
        elif not valid.any():
            unscored.append(sample.name)
        histogram += np.bincount(mask[valid], minlength=number_class)[:number_class]
        ignored += int((~valid).sum())
    unused = unused_entries(folder, masks)
    if unused:
        warn(unused)
    if turned:
        warn(f"{folder}: {plural(len(turned), 'image')} with an EXIF orientation (e.g. {turned[0]}), read as "
             "viewers show them: their masks must be in that orientation (an annotation tool's usually are)")
    return {
        "folder": str(folder),
        "masks": str(masks or folder),
        "images": len(samples),
        "names": [s.name for s in samples],
        "original_sizes": dict(sizes),
        "class_pixels": histogram.tolist(),
        "ignored_pixels": ignored,
        "unscored_masks": unscored,
        "unused": unused,
    }


def check_trainable(mask: np.ndarray, ignore_label: int, image_size: int, path: str | Path) -> None:
    """A preprocessed training mask must keep a pixel to train on (docs/method.md §1: classes of fewer than
    20 pixels in a mask are ignored in training)."""
    if (mask == ignore_label).all():
        raise DdpmsegError(
            f"{path}: every pixel is the ignore_label {ignore_label} at {image_size}x{image_size}; "
            "a training mask needs labelled pixels"
        )
    if (remove_small_annotations(mask, ignore_label) == ignore_label).all():
        raise DdpmsegError(
            f"{path}: no class has {SMALL_ANNOTATION_PIXELS} pixels at {image_size}x{image_size}, and smaller "
            "annotations are ignored in training; a training mask needs labelled pixels"
        )
