"""Datasets: the paper's archive layout (``<root>/real/{train,test}/`` with images and same-stem ``.npy``
masks) or separate image and mask folders (masks ``.npy`` or single-channel ``.png``).

Images are taken in sorted file-name order and the first ``count`` of a split are used. Preprocessing
follows docs/method.md §1: RGB, bilinear resize to the model's ``image_size``, scaled to [-1, 1]; masks
resized with nearest neighbour by OpenCV's index rule, each of image and mask on its own.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..base.errors import DdpmsegError

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
MAX_IMAGE_PIXELS_VARIABLE = "DDPMSEG_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970  # PIL's own refusal limit (2 x Image.MAX_IMAGE_PIXELS), about 13378 x 13378
NPY_MAGIC = b"\x93NUMPY"


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def check_link(path: Path) -> None:
    """A broken symbolic link is an error naming it (``is_file`` would silently skip it)."""
    if path.is_symlink() and not path.exists():
        raise DdpmsegError(f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)")


def files_with_suffixes(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` whose suffix, in any case, is one of ``suffixes``, sorted by name."""
    found = []
    for path in folder.iterdir():
        if path.suffix.lower() in suffixes:
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


def warn(message: str) -> None:
    """One line on stderr, which the workflow keeps in the rule's log."""
    print(f"ddpmseg warning: {message}", file=sys.stderr)


def max_image_pixels() -> int:
    """The most pixels an image or PNG mask may have: ``DDPMSEG_MAX_IMAGE_PIXELS`` or the default."""
    value = os.environ.get(MAX_IMAGE_PIXELS_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    limit = int(value) if value.isdigit() else 0
    if limit <= 0:
        raise DdpmsegError(f"{MAX_IMAGE_PIXELS_VARIABLE}={value!r}: must be a positive whole number of pixels")
    return limit


@contextmanager
def pil_size_check_off() -> Iterator[None]:
    """PIL's own decompression-bomb check off while a file is opened (it raises an exception that names
    no file); :func:`check_pixel_count` applies the limit instead, before anything is decoded."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_pixel_count(image: Image.Image, path: str | Path) -> None:
    limit = max_image_pixels()
    width, height = image.size
    if width * height > limit:
        raise DdpmsegError(
            f"{path}: image is {width}x{height} = {width * height:,} pixels, more than the limit of {limit:,} "
            f"(a guard against decompression bombs); to read it, set the environment variable "
            f"{MAX_IMAGE_PIXELS_VARIABLE} to a larger number of pixels"
        )


# Raw modes of 16-bit unsigned greyscale (PIL reads 16-bit PGM files as mode I with raw mode I;16B).
UNSIGNED_16_BIT_RAWMODES = ("I;16", "I;16B", "I;16L", "I;16N")
# 16-bit-per-channel PNGs, which PIL reads at 8 bits by keeping the high byte, and a raw mode of the same
# bit width that gives the low bytes (grey+alpha: all four bytes as RGBA).
LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


def tile_rawmode(image: Image.Image) -> str | None:
    """The raw mode PIL will decode a single-tile file with (known only before the image is loaded)."""
    tiles = getattr(image, "tile", [])  # in-memory images have none
    if len(tiles) != 1:
        return None
    args = tiles[0][3]
    rawmode = args[0] if isinstance(args, tuple) else args
    return rawmode if isinstance(rawmode, str) else None


def read_16_bit_channels(image: Image.Image, path: str | Path) -> np.ndarray | None:
    """The full 16-bit values, (H, W, channels) uint16, of a 16-bit-per-channel PNG (RGB, RGBA or
    grey+alpha), decoded once for the high bytes and once for the low ones; None for any other file."""
    rawmode = tile_rawmode(image)
    if image.format != "PNG" or rawmode not in LOW_BYTE_RAWMODES:
        return None
    codec, extents, offset, _ = image.tile[0]
    image.tile = [(codec, extents, offset, LOW_BYTE_RAWMODES[rawmode])]
    low = np.asarray(image).astype(np.uint16)
    if rawmode == "LA;16B":  # bytes: grey high, grey low, alpha high, alpha low
        return (low[..., [0, 2]] << 8) | low[..., [1, 3]]
    with Image.open(path) as again:
        high = np.asarray(again).astype(np.uint16)
    return (high << 8) | low


def scale_16_bit(values: np.ndarray) -> np.ndarray:
    """16-bit values to 8 bit: round(v * 255 / 65535) = round(v / 257) (never a tie)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def integer_grey_to_8_bit(values: np.ndarray, path: str | Path) -> np.ndarray:
    """32-bit integer greyscale: 0..255 is taken as 8-bit, else 0..65535 as 16-bit; anything else is refused."""
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= 255:
        return values.astype(np.uint8)
    if low >= 0 and high <= 65535:
        return scale_16_bit(values)
    raise DdpmsegError(
        f"{path}: 32-bit integer image with values {low}..{high}; only 0..255 (8-bit) or 0..65535 (16-bit) "
        "can be read, convert it to an 8- or 16-bit image"
    )


def float_grey_to_8_bit(values: np.ndarray, path: str | Path) -> np.ndarray:
    """Floating-point greyscale: [0, 1] is scaled by 255, else [0, 255] is taken as is (both rounded);
    anything else, NaN or infinity is refused."""
    if not np.all(np.isfinite(values)):
        raise DdpmsegError(f"{path}: floating-point image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return np.rint(values.astype(np.float64) * 255).astype(np.uint8)
    if low >= 0 and high <= 255:
        return np.rint(values).astype(np.uint8)
    raise DdpmsegError(
        f"{path}: floating-point image with values {low:g}..{high:g}; only [0, 1] or [0, 255] can be read"
    )


def image_to_rgb(image: Image.Image, path: str | Path) -> np.ndarray:
    """An opened, not yet loaded image as (H, W, 3) uint8 RGB (see :func:`read_image`)."""
    rawmode = tile_rawmode(image)
    channels = read_16_bit_channels(image, path)
    if channels is not None:
        rgb = channels[..., :3] if channels.shape[2] >= 3 else np.repeat(channels[..., :1], 3, axis=2)
        return scale_16_bit(rgb)
    if image.mode.startswith("I;16") or (image.mode == "I" and rawmode in UNSIGNED_16_BIT_RAWMODES):
        grey = scale_16_bit(np.asarray(image))
    elif image.mode == "I":
        grey = integer_grey_to_8_bit(np.asarray(image), path)
    elif image.mode == "F":
        grey = float_grey_to_8_bit(np.asarray(image), path)
    else:
        return np.asarray(image.convert("RGB"))
    return np.repeat(grey[..., None], 3, axis=2)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    8-bit files of any PIL mode are converted by PIL (greyscale repeated, palettes looked up, CMYK and
    YCbCr converted); alpha is dropped, not composited. Deeper files are scaled to 8 bit by their bit
    depth: 16-bit greyscale and 16-bit-per-channel PNGs (RGB, RGBA, grey+alpha) by round(v / 257);
    32-bit integer greyscale by :func:`integer_grey_to_8_bit`, floating-point greyscale by
    :func:`float_grey_to_8_bit`. An image of more than ``DDPMSEG_MAX_IMAGE_PIXELS`` pixels (default
    178,956,970, PIL's own limit) is refused before it is decoded.
    """
    try:
        with pil_size_check_off(), Image.open(path) as image:
            check_pixel_count(image, path)
            return image_to_rgb(image, path)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable image ({error})") from None


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file's array; a file that is not one (``np.load`` would call it pickled data) is named."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise DdpmsegError(f"{path}: not a NumPy array file (masks must be written with numpy.save)")
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DdpmsegError(f"{path}: unreadable mask ({error})") from None


def read_png_mask(path: Path) -> np.ndarray:
    try:
        with pil_size_check_off(), Image.open(path) as image:
            check_pixel_count(image, path)
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise DdpmsegError(f"{path}: mask PNG must be single-channel (mode {image.mode})")
            return np.asarray(image).astype(np.int64)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable mask ({error})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask (``.npy`` array or single-channel ``.png``, suffix in any case) as a 2-D int64 array
    of class ids. A ``.npy`` may hold booleans, integers or floats that are all whole numbers (finite,
    below 2**31 in magnitude); anything else is refused."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return read_png_mask(path)
    mask = load_npy(path)
    if mask.ndim != 2:
        raise DdpmsegError(f"{path}: mask must be a 2-D array of class ids, got shape {mask.shape}")
    if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
        return mask.astype(np.int64)
    if np.issubdtype(mask.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(mask) & (mask == np.round(mask)) & (np.abs(mask) < 2**31)
        if whole.all():
            return mask.astype(np.int64)
        raise DdpmsegError(
            f"{path}: mask must hold integer class ids, got dtype {mask.dtype} with value {float(mask[~whole][0]):g}"
        )
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
    *,
    masks: str | Path | None = None,
    non_square: str | None = None,
    training: bool = False,
) -> dict:
    """Check every sample of a split (see :func:`list_samples`, :func:`load_sample`) and summarise it.

    A training mask (``training``) with no pixel to train on, every pixel ignore_label after cropping
    and resizing or once classes under 20 pixels are ignored, is an error naming it; in a test split
    such masks are only listed (``unscored_masks``: they do not count in the scores). Masks without an
    image, subfolders and files of other types beside the split are printed as one warning line.
    """
    samples = list_samples(folder, count, masks)
    histogram = np.zeros(number_class, dtype=np.int64)
    ignored = 0
    sizes: Counter[str] = Counter()
    unscored = []
    for sample in samples:
        rgb, mask = read_sample(sample, number_class, ignore_label)
        sizes[f"{rgb.shape[1]}x{rgb.shape[0]}"] += 1
        _, mask = make_square(rgb, mask, non_square, sample.image_path)
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
