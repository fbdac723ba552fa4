"""Training augmentation of the study (docs/method.md §6), with albumentations 2.

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

Test-time augmentation (:mod:`ddpmseg.prediction.tta`) uses the same transforms and seeding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check (network) on import

import albumentations as A
import cv2
import numpy as np

from ..base.errors import DdpmsegError

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

# First entropy word of every seed, so training copies and TTA views (ddpmseg.prediction.tta.TTA_STREAM) never
# share a random stream.
TRAIN_STREAM = 0x7472  # "tr"


def hole_size_range(image_size: int) -> tuple[int, int]:
    """CoarseDropout hole side range in px: the study's 40 to 60 px at 256 px, scaled by image_size / 256."""
    low = max(1, round(DROPOUT_HOLE_PX_AT_256[0] * image_size / 256))
    high = max(low, round(DROPOUT_HOLE_PX_AT_256[1] * image_size / 256))
    return low, high


def coarse_dropout(image_size: int, fill_mask: int, p: float) -> A.CoarseDropout:
    """The study's CoarseDropout, its holes scaled to ``image_size`` (:func:`hole_size_range`)."""
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
        coarse_dropout(image_size, ignore_label, p),
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


@contextmanager
def portable_opencv() -> Iterator[None]:
    """OpenCV's plain code paths while the block runs, instead of the SIMD ones it picks for the CPU.

    ColorJitter, Rotate and ElasticTransform go through OpenCV functions that OpenCV dispatches to AVX2,
    AVX-512 or other code by the CPU it finds, and those round differently: on this project's CI machine
    the optimized paths changed 9 % of the augmented images' pixels (by up to 4 levels) against the plain
    ones, so the demo's ``final`` row differed between machines while ``baseline`` did not. The plain
    paths (OpenCV's baseline, SSE3 on x86-64) give the same bytes on every x86-64 CPU, at no measurable
    cost on the demo's images."""
    was = cv2.useOptimized()
    cv2.setUseOptimized(False)
    try:
        yield
    finally:
        cv2.setUseOptimized(was)


def check_seed(seed: int, what: str) -> None:
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
    *,
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
    check_seed(seed, "augmentation seed")
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.shape != (n,) or (n and indices.min() < 0):
        raise DdpmsegError(
            f"augmentation indices must be {n} non-negative integers, got shape {indices.shape}"
        )

    # Masks travel as uint16 codes with ignore_label as 0, so the pipeline fills with code 0.
    pipeline = training_pipeline(size, 0, p, elastic_alpha, elastic_sigma)
    out_images = np.empty((n * copies, size, size, 3), dtype=np.uint8)
    out_masks = np.empty((n * copies, size, size), dtype=masks.dtype)
    with portable_opencv():
        for i in range(n):
            codes, lookup = _encode_mask(masks[i], ignore_label)
            for c in range(copies):
                seed_pipeline(pipeline, [TRAIN_STREAM, seed, indices[i], c])
                result = pipeline(image=images[i], mask=codes)
                out_images[i * copies + c] = result["image"]
                out_masks[i * copies + c] = lookup[result["mask"]]
    return out_images, out_masks
