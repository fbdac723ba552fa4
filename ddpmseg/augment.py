"""Training augmentation and test-time augmentation of the study (docs/method.md §6), with albumentations 2.

Training: each extra copy of a training image is the image and its mask passed through
ColorJitter, ToGray, HorizontalFlip, CoarseDropout, RandomResizedCrop, Rotate and ElasticTransform,
each firing with probability p (0.4). Images are interpolated bilinearly; masks always with nearest
neighbour, so a mask only ever holds its input labels and ``ignore_label`` (what a transform fills:
dropout holes, rotation corners, elastic borders).

The study's CoarseDropout holes are 40 to 60 px on 256 px images; here they scale with the image:
40 * S / 256 to 60 * S / 256 px (rounded, at least 1), so a 64 px demo image gets 10 to 15 px holes.

Seeding: albumentations' ``Compose(seed=s)`` gives *every* transform a generator seeded with the same
s, so on the first call all transforms of equal p fire together or not at all. :func:`seed_pipeline`
instead seeds each transform from its own child of a ``numpy.random.SeedSequence``.

Test-time augmentation: a view is a list of transform names, all applied (p = 1) in the listed
order; the labels predicted on a view are mapped back to the image's frame by :func:`undo_view` and
merged over views by :func:`tta_vote`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check (network) on import

import albumentations as A
import cv2
import numpy as np

from .errors import DdpmsegError

# The study's settings (docs/method.md §6), for 256 px images.
AUGMENT_P = 0.4
COLOR_JITTER = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.2}
DROPOUT_HOLES = (2, 4)
DROPOUT_HOLE_PX_AT_256 = (40, 60)
CROP_SCALE = (0.3, 0.6)
ROTATE_LIMIT = 90  # albumentations' default: an angle uniform in [-90, 90] degrees
# albumentations 2's ElasticTransform defaults. At alpha 1, sigma 50 the displacement field is far
# below a pixel; 1.x's default also applied a random affine (alpha_affine 50), which 2.x removed.
ELASTIC_ALPHA = 1.0
ELASTIC_SIGMA = 50.0

GEOMETRIC_TRANSFORMS = ("HorizontalFlip", "CoarseDropout", "RandomResizedCrop", "Rotate", "ElasticTransform")
COLOUR_TRANSFORMS = ("ColorJitter", "ToGray", "ChannelShuffle")

TTA_TRANSFORMS = ("ToGray", "CoarseDropout", "ColorJitter", "HorizontalFlip", "ChannelShuffle")
# The 4 views of the report's table, and those of the study's code (each besides the image itself).
STUDY_TTA_VIEWS = [
    ["ToGray", "CoarseDropout"],
    ["ToGray"],
    ["ColorJitter", "HorizontalFlip"],
    ["ColorJitter", "HorizontalFlip", "ChannelShuffle"],
]
STUDY_CODE_TTA_VIEWS = [
    ["ToGray", "CoarseDropout"],
    ["ColorJitter", "HorizontalFlip"],
    ["CoarseDropout", "ColorJitter"],
    ["ColorJitter", "HorizontalFlip", "ChannelShuffle"],
]

# First entropy word of every seed, so training copies and TTA views never share a random stream.
_TRAIN_STREAM = 0x7472  # "tr"
_TTA_STREAM = 0x7474  # "tt"


def hole_size_range(image_size: int) -> tuple[int, int]:
    """CoarseDropout hole side range in px: the study's 40 to 60 px at 256 px, scaled by image_size / 256."""
    low = max(1, round(DROPOUT_HOLE_PX_AT_256[0] * image_size / 256))
    high = max(low, round(DROPOUT_HOLE_PX_AT_256[1] * image_size / 256))
    return low, high


def _coarse_dropout(image_size: int, fill_mask: int, p: float) -> A.CoarseDropout:
    holes = hole_size_range(image_size)
    return A.CoarseDropout(
        num_holes_range=DROPOUT_HOLES,
        hole_height_range=holes,
        hole_width_range=holes,
        fill=0,
        fill_mask=fill_mask,
        p=p,
    )


def training_transforms(
    image_size: int,
    ignore_label: int,
    p: float = AUGMENT_P,
    elastic_alpha: float = ELASTIC_ALPHA,
    elastic_sigma: float = ELASTIC_SIGMA,
) -> list[A.BasicTransform]:
    """The study's training transforms in order, each firing with probability ``p``.

    Filled pixels (dropout holes, borders outside the rotated or warped image) get 0 in the image and
    ``ignore_label`` in the mask; masks are always resampled with nearest neighbour.
    """
    if not 0.0 <= p <= 1.0:
        raise DdpmsegError(f"augmentation probability {p} is not in [0, 1]")
    if image_size < 1:
        raise DdpmsegError(f"augmentation image_size {image_size} must be positive")
    # the warps' resampling and their fill outside the warped image: 0 in the image, ignore in the mask
    warp = dict(
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=ignore_label,
    )
    return [
        A.ColorJitter(**COLOR_JITTER, p=p),
        A.ToGray(p=p),
        A.HorizontalFlip(p=p),
        _coarse_dropout(image_size, ignore_label, p),
        A.RandomResizedCrop(
            size=(image_size, image_size),
            scale=CROP_SCALE,
            interpolation=cv2.INTER_LINEAR,
            # pixel-centre nearest, aligned with the bilinear image (INTER_NEAREST is off by half a pixel)
            mask_interpolation=cv2.INTER_NEAREST_EXACT,
            p=p,
        ),
        A.Rotate(limit=ROTATE_LIMIT, **warp, p=p),
        A.ElasticTransform(alpha=elastic_alpha, sigma=elastic_sigma, **warp, p=p),
    ]


def training_pipeline(
    image_size: int,
    ignore_label: int,
    p: float = AUGMENT_P,
    elastic_alpha: float = ELASTIC_ALPHA,
    elastic_sigma: float = ELASTIC_SIGMA,
) -> A.Compose:
    """The study's training pipeline, ``Compose(training_transforms(...))``: call it with image= and mask=.

    The mask must be a dtype OpenCV resamples (uint8, uint16, int32); :func:`augment_copies` takes any
    integer mask. Seed it with :func:`seed_pipeline`, not ``Compose(seed=)``.
    """
    return A.Compose(training_transforms(image_size, ignore_label, p, elastic_alpha, elastic_sigma))


def seed_pipeline(pipeline: A.Compose, entropy: Sequence[int]) -> None:
    """Seed the pipeline and each of its transforms from its own child of ``SeedSequence(entropy)``.

    The pipeline's next call is then a function of ``entropy`` alone.
    """
    root = np.random.SeedSequence([int(e) for e in entropy])
    children = root.spawn(len(pipeline.transforms))
    pipeline.set_random_seed(int(root.generate_state(1)[0]))  # also sets every transform to one seed
    for transform, child in zip(pipeline.transforms, children):
        transform.set_random_seed(int(child.generate_state(1)[0]))


def _check_seed(seed: int, what: str) -> None:
    if int(seed) < 0:
        raise DdpmsegError(f"{what} {seed} must be a non-negative integer")


def _encode_mask(mask: np.ndarray, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint16 with ignore_label as 0, lookup table code -> label), for OpenCV-safe resampling."""
    labels = np.unique(mask[mask != ignore_label])
    if labels.size >= np.iinfo(np.uint16).max:
        raise DdpmsegError(f"mask holds {labels.size} distinct labels, at most 65534 can be augmented")
    lookup = np.concatenate([np.array([ignore_label], dtype=mask.dtype), labels.astype(mask.dtype)])
    codes = np.where(mask == ignore_label, 0, np.searchsorted(labels, mask) + 1).astype(np.uint16)
    return codes, lookup


def augment_copies(
    images: np.ndarray,
    masks: np.ndarray,
    copies: int,
    seed: int,
    ignore_label: int,
    p: float = AUGMENT_P,
    indices: Sequence[int] | np.ndarray | None = None,
    elastic_alpha: float = ELASTIC_ALPHA,
    elastic_sigma: float = ELASTIC_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` augmented copies of every image and mask (the originals are not included).

    ``images`` (n, S, S, 3) uint8, ``masks`` (n, S, S) of any integer dtype. Returns images
    (n * copies, S, S, 3) uint8 and masks (n * copies, S, S) of the masks' dtype, image-major:
    row ``i * copies + c`` is copy c of image i. A copy depends only on (seed, image index, copy
    index), the image index being ``indices[i]`` (default i, the position in ``images``), so a subset
    or a shard gives the same copies as the whole set when given its indices. Mask values stay within
    the input's labels and ``ignore_label``.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise DdpmsegError(
            f"augmentation images must be (n, S, S, 3) uint8, got {images.shape} {images.dtype}"
        )
    n, size = images.shape[0], images.shape[1]
    if images.shape[2] != size:
        raise DdpmsegError(f"augmentation images must be square, got {images.shape[1]}x{images.shape[2]}")
    if masks.shape != images.shape[:3] or not np.issubdtype(masks.dtype, np.integer):
        raise DdpmsegError(
            f"augmentation masks must be (n, S, S) integers matching the images {images.shape[:3]}, "
            f"got {masks.shape} {masks.dtype}"
        )
    info = np.iinfo(masks.dtype)
    if not info.min <= ignore_label <= info.max:
        raise DdpmsegError(f"ignore_label {ignore_label} does not fit the masks' dtype {masks.dtype}")
    if copies < 0:
        raise DdpmsegError(f"augmentation copies {copies} must be non-negative")
    _check_seed(seed, "augmentation seed")
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.shape != (n,) or (n and indices.min() < 0):
        raise DdpmsegError(
            f"augmentation indices must be {n} non-negative integers, got shape {indices.shape}"
        )

    # Masks travel as uint16 codes with ignore_label as 0, so the pipeline fills with code 0.
    pipeline = training_pipeline(size, 0, p, elastic_alpha, elastic_sigma)
    out_images = np.empty((n * copies, size, size, 3), dtype=np.uint8)
    out_masks = np.empty((n * copies, size, size), dtype=masks.dtype)
    for i in range(n):
        codes, lookup = _encode_mask(masks[i], ignore_label)
        for c in range(copies):
            seed_pipeline(pipeline, [_TRAIN_STREAM, seed, indices[i], c])
            result = pipeline(image=images[i], mask=codes)
            out_images[i * copies + c] = result["image"]
            out_masks[i * copies + c] = lookup[result["mask"]]
    return out_images, out_masks


def _check_view(view: Sequence[str]) -> list[str]:
    if isinstance(view, str) or not all(isinstance(name, str) for name in view):
        raise DdpmsegError(
            f"TTA view {view!r} must be a list of transform names from {', '.join(TTA_TRANSFORMS)}"
        )
    for name in view:
        if name not in TTA_TRANSFORMS:
            raise DdpmsegError(
                f"TTA view {list(view)}: unknown transform '{name}', allowed: {', '.join(TTA_TRANSFORMS)}"
            )
    if len(set(view)) != len(view):
        raise DdpmsegError(f"TTA view {list(view)} names a transform twice")
    return list(view)


def view_key(view: Sequence[str]) -> str:
    """A short, stable, file-system-safe name of a view, e.g. 'togray+coarsedropout'; 'original' for []."""
    view = _check_view(view)
    return "+".join(name.lower() for name in view) if view else "original"


def view_is_flipped(view: Sequence[str]) -> bool:
    """Whether the view mirrors the image left-right (its labels must be flipped back)."""
    return "HorizontalFlip" in _check_view(view)


def _view_transform(name: str, image_size: int) -> A.BasicTransform:
    if name == "ToGray":
        return A.ToGray(p=1.0)
    if name == "CoarseDropout":
        return _coarse_dropout(image_size, 0, 1.0)
    if name == "ColorJitter":
        return A.ColorJitter(**COLOR_JITTER, p=1.0)
    if name == "HorizontalFlip":
        return A.HorizontalFlip(p=1.0)
    return A.ChannelShuffle(p=1.0)


def apply_view(
    image: np.ndarray, view: Sequence[str], seed: int, image_index: int, ignore_label: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(view image (S, S, 3) uint8, valid (S, S) bool) of one image under one TTA view.

    Every transform of the view is applied, in the listed order, with the training settings
    (ColorJitter 0.5/0.5/0.5/0.2, 2 to 4 dropout holes of 40 to 60 px at 256 px scaled with S).
    ``valid`` is False where a dropout hole removed the content, in the view's frame (the image is 0
    there). The result is a function of (seed, image_index, view) and the image. ``ignore_label`` is
    not needed (``valid`` is boolean; :func:`undo_view` takes it) and is accepted only for symmetry.
    """
    view = _check_view(view)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] != image.shape[1]:
        raise DdpmsegError(f"TTA image must be (S, S, 3) uint8, got {image.shape} {image.dtype}")
    _check_seed(seed, "TTA seed")
    _check_seed(image_index, "TTA image index")
    valid = np.ones(image.shape[:2], dtype=np.uint8)
    if not view:
        return image.copy(), valid.astype(bool)
    pipeline = A.Compose([_view_transform(name, image.shape[0]) for name in view])
    codes = [TTA_TRANSFORMS.index(name) for name in view]
    seed_pipeline(pipeline, [_TTA_STREAM, seed, image_index, len(codes), *codes])
    result = pipeline(image=image, mask=valid)
    return result["image"], result["mask"].astype(bool)


def undo_view(labels: np.ndarray, valid: np.ndarray, view: Sequence[str], ignore_label: int) -> np.ndarray:
    """Labels predicted on a view, in the original image's frame: ignore_label where ``valid`` is False,
    then the horizontal flip undone (both arrays are in the view's frame)."""
    view = _check_view(view)
    labels = np.asarray(labels)
    valid = np.asarray(valid, dtype=bool)
    if labels.ndim != 2 or labels.shape != valid.shape:
        raise DdpmsegError(f"TTA labels {labels.shape} and valid {valid.shape} must be the same 2-D shape")
    mapped = np.where(valid, labels, np.asarray(ignore_label, dtype=labels.dtype))
    if "HorizontalFlip" in view:
        mapped = mapped[:, ::-1]
    return np.ascontiguousarray(mapped)


def tta_vote(
    labels: np.ndarray, ignore_label: int, original: int = 0, number_class: int | None = None
) -> np.ndarray:
    """Per-pixel majority over V views' labels (V, ...) already mapped back, ignoring ignore_label votes.

    Ties go to the un-augmented view ``labels[original]`` when its label is among the tied maxima,
    else to the smallest tied label; a pixel whose every vote is ignore_label takes the original
    view's label. Labels must lie in [0, number_class) or equal ignore_label (which may be a class id:
    its votes are still ignored); ``number_class`` None means 1 + the largest other label. Returns
    labels.shape[1:] in labels' dtype.
    """
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.shape[0] < 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DdpmsegError(
            f"TTA labels must be integers of shape (views, ...), got {labels.shape} {labels.dtype}"
        )
    views = labels.shape[0]
    if not 0 <= original < views:
        raise DdpmsegError(f"TTA original view {original} is not one of the {views} views")
    flat = labels.reshape(views, -1)
    if number_class is None:
        voted_labels = flat[flat != ignore_label]
        number_class = int(voted_labels.max()) + 1 if voted_labels.size else 1
    bad = ((flat < 0) | (flat >= number_class)) & (flat != ignore_label)
    if bad.any():
        raise DdpmsegError(
            f"TTA label {flat[bad][0]} outside [0, {number_class}) and not the ignore_label {ignore_label}"
        )
    counts = np.zeros((number_class, flat.shape[1]), dtype=np.int32)
    for c in range(number_class):
        if c != ignore_label:
            counts[c] = (flat == c).sum(axis=0)
    best = counts.max(axis=0)
    smallest_tied = counts.argmax(axis=0)  # argmax returns the first, i.e. smallest, of the tied labels
    base = flat[original]
    base_counts = counts[np.clip(base, 0, number_class - 1), np.arange(flat.shape[1])]
    base_wins = (base != ignore_label) & (base_counts == best)
    voted = np.where(base_wins | (best == 0), base, smallest_tied).astype(labels.dtype)
    return voted.reshape(labels.shape[1:])
