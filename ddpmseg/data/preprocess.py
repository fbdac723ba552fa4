"""Preprocessing (docs/method.md §1), the one implementation that datasets, DDPM training, labelling and the
segmenter share: a non-square image made square by the ``non_square`` policy, resized bilinearly to the
model's ``image_size``, scaled to [-1, 1]; masks resized with nearest neighbour by OpenCV's index rule,
each of image and mask on its own; maps of the part of the image the model saw placed back into the
image (labels at the model's size scaled up by nearest neighbour, or labelled at the image's own
resolution); the training masks' rule for small annotations.

The same policy must hold for training and labelling: features of a cropped image are not those of a
stretched one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..base.errors import DdpmsegError

NON_SQUARE_POLICIES = ("resize", "center_crop")


def check_non_square_policy(policy: str | None, setting: str = "non_square") -> None:
    if policy is not None and policy not in NON_SQUARE_POLICIES:
        raise DdpmsegError(f"{setting}: {policy!r} is not one of {', '.join(NON_SQUARE_POLICIES)} (or none, an error)")


def crop_box(height: int, width: int, policy: str | None) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of the part of an H x W image the model's square covers: its
    central square under ``center_crop`` (of a non-square image), else all of it."""
    if height != width and policy == "center_crop":
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side
    return 0, 0, height, width


def check_square(height: int, width: int, policy: str | None, path: str | Path, *, choose: str) -> None:
    """A non-square image needs a policy: without one it is an error whose message says what to ``choose``."""
    if height != width and policy not in NON_SQUARE_POLICIES:
        raise DdpmsegError(
            f"{path}: image is {width}x{height}, not square; choose {choose} ({' or '.join(NON_SQUARE_POLICIES)})"
        )


def make_square(array: np.ndarray, policy: str | None, path: str | Path, *, choose: str) -> np.ndarray:
    """The part of an (H, W, ...) image or mask that the model sees, at its own resolution: all of it when
    square or under ``resize`` (stretched by the resize that follows), its central square under
    ``center_crop``. Without a policy a non-square image is an error (:func:`check_square`), rather than
    silently stretched."""
    height, width = array.shape[:2]
    check_square(height, width, policy, path, choose=choose)
    top, left, box_height, box_width = crop_box(height, width, policy)
    if (box_height, box_width) == (height, width):
        return array
    return array[top : top + box_height, left : left + box_width]


def model_image(rgb: np.ndarray, image_size: int, policy: str | None, path: str | Path, *, choose: str) -> np.ndarray:
    """The (S, S, 3) uint8 image the model sees of an (H, W, 3) image: made square, then resized."""
    return resize_image(make_square(rgb, policy, path, choose=choose), image_size)


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
    return resize_nearest(mask, image_size, image_size)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (h, w, ...) array at ``height`` x ``width`` by nearest neighbour, OpenCV's index rule."""
    if array.shape[:2] == (height, width):
        return array
    rows = nearest_indices(array.shape[0], height)
    cols = nearest_indices(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 images to (..., 3, H, W) float32 in [-1, 1]."""
    return np.ascontiguousarray(np.moveaxis(rgb.astype(np.float32) / 255.0 * 2.0 - 1.0, -1, -3))


def to_original_size(
    array: np.ndarray, height: int, width: int, policy: str | None, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """An (S, S) map at the model's resolution back at the image's H x W, by nearest neighbour (OpenCV's
    index rule, as masks are resized): :func:`place_in_image` of the map resized to the crop box."""
    _, _, box_height, box_width = crop_box(height, width, policy)
    return place_in_image(resize_nearest(array, box_height, box_width), height, width, policy, fill)


def place_in_image(
    box_map: np.ndarray, height: int, width: int, policy: str | None, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """A map of the part of an H x W image that the model covers (:func:`crop_box`'s shape) placed into
    the image; outside a center crop the map holds ``fill``. Returns (map (H, W) in the map's dtype,
    inside (H, W) bool: covered by the model's square)."""
    top, left, box_height, box_width = crop_box(height, width, policy)
    if box_map.shape[:2] != (box_height, box_width):
        raise DdpmsegError(f"a map of {box_map.shape[:2]} does not fit the {box_height}x{box_width} box it belongs in")
    if (box_height, box_width) == (height, width):
        return box_map, np.ones((height, width), dtype=bool)
    placed = np.full((height, width), fill, dtype=box_map.dtype)
    inside = np.zeros((height, width), dtype=bool)
    placed[top : top + box_height, left : left + box_width] = box_map
    inside[top : top + box_height, left : left + box_width] = True
    return placed, inside


SMALL_ANNOTATION_PIXELS = 20


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
