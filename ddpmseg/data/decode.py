"""Reading image and mask files faithfully: 8-bit files of any PIL mode, 16-bit and floating-point files
scaled by their bit depth, masks as ``.npy`` arrays or single-channel PNGs; anything that cannot be read
as it is meant is refused with one line naming the file, never guessed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..base.errors import DdpmsegError

MAX_IMAGE_PIXELS_VARIABLE = "DDPMSEG_MAX_IMAGE_PIXELS"


DEFAULT_MAX_IMAGE_PIXELS = 178_956_970  # PIL's own refusal limit (2 x Image.MAX_IMAGE_PIXELS), about 13378 x 13378


NPY_MAGIC = b"\x93NUMPY"


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
    178,956,970, PIL's own limit) is refused before it is decoded. An EXIF orientation (a phone's photo
    taken upright is stored sideways with orientation 6) is applied: the array is the image as viewers
    show it (:func:`oriented`).
    """
    with opened_image(path) as image:
        return viewed_rgb(image, path)


def viewed_rgb(image: Image.Image, source: str | Path) -> np.ndarray:
    """An opened image as an (H, W, 3) uint8 RGB array as viewers show it (:func:`image_to_rgb`, then its
    EXIF orientation applied); ``source`` names it in errors."""
    return oriented(image_to_rgb(image, source), exif_orientation(image))


def values_decide(image: Image.Image) -> bool:
    """32-bit integer or floating-point greyscale: its values, not its header, decide whether
    :func:`image_to_rgb` can read it."""
    return image.mode == "F" or (image.mode == "I" and tile_rawmode(image) not in UNSIGNED_16_BIT_RAWMODES)


def check_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as stored, checked as :func:`read_image` checks it, without
    decoding its pixels where the header decides: the file opens as an image and its pixel count is within
    the limit. 32-bit integer and floating-point files, whose values decide, are read once. A file whose
    compressed pixel data is damaged (cut short) passes: only decoding it finds that. The EXIF orientation
    is not applied (a PNG's may follow its pixels): a turned image is as square as a stored one."""
    with opened_image(path) as image:
        if values_decide(image):
            image_to_rgb(image, path)
        return image.size


@contextmanager
def opened_image(path: str | Path) -> Iterator[Image.Image]:
    """An image file opened, not decoded, with its pixel count checked; anything PIL cannot read in it,
    then or while it is used, is one error naming the file."""
    try:
        with pil_size_check_off(), Image.open(path) as image:
            check_pixel_count(image, path)
            yield image
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DdpmsegError(f"{path}: unreadable image ({without_path(error, path)})") from None


def without_path(error: Exception, path: str | Path) -> str:
    """An error's text without the file name it repeats (the message names the file once, first)."""
    text = str(error)
    for name in (repr(str(path)), str(path), repr(Path(path).name)):
        text = text.replace(f" {name}", "").replace(name, "")
    return text.strip() or type(error).__name__


EXIF_ORIENTATION = 0x0112


def stored_turned(path: str | Path) -> bool:
    """Whether an image file is shown turned or mirrored (an EXIF orientation other than 1), from its header."""
    try:
        with pil_size_check_off(), Image.open(path) as image:
            return exif_orientation(image) != 1
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1 to 8; 1, the stored orientation, when it has none or a bad one)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # a damaged EXIF block: the pixels are still the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, ...) array as stored, turned as EXIF ``orientation`` says it is shown: 2 mirrored, 3 turned
    by 180°, 4 flipped, 5 transposed, 6 turned clockwise by 90°, 7 transversed, 8 turned anticlockwise."""
    turns = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, k=1),
    }
    return np.ascontiguousarray(turns[orientation](array))


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
