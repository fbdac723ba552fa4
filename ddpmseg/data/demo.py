"""The embedded demo dataset: textured scenes of overlapping shapes, in the paper's archive layout.

Four object classes on textured backgrounds: plain discs, squares with horizontal stripes, triangles
with vertical stripes and rings with diagonal stripes, each object in a random colour, size, position
and rotation; objects overlap. A pixel's colour says nothing about its class: its neighbourhood (the
stripes' orientation, the shape) does, which is what the demo's RGB control lacks and diffusion
features carry. Stripes are bands of ``_texture_cell`` pixels (2 at 32 px, 4 at 64 px).

Every image is drawn from its own generator seeded by (seed, split, index), so the dataset is the same
for a given seed whatever the counts. Pixels on object outlines carry the ignore label, like the
"void" borders of hand-made annotations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..base.files import atomic_directory
from .datasets import split_folder

CLASS_NAMES = ["background", "disc", "square", "triangle", "ring"]
IGNORE_LABEL = 255
_SPLIT_IDS = {"train": 0, "test": 1, "unlabelled": 2}


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth two-colour gradient with stripes and grain."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    base = rng.uniform(0.2, 0.9, size=3).astype(np.float32) * rng.uniform(0.4, 1.0)
    other = rng.uniform(0.2, 0.9, size=3).astype(np.float32) * rng.uniform(0.4, 1.0)
    rgb = base[None, None] * (1 - ramp[..., None]) + other[None, None] * ramp[..., None]
    period = rng.uniform(4, 12)
    stripe_angle = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * (np.cos(stripe_angle) * xx + np.sin(stripe_angle) * yy) * size / period)
    rgb = rgb + rng.uniform(0.02, 0.08) * stripes[..., None]
    rgb = rgb + rng.normal(0, 0.03, size=rgb.shape).astype(np.float32)
    return rgb


def _shape_mask(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Boolean mask of one object of class ``label`` at a random position, size and rotation."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    radius = rng.uniform(0.2, 0.33) * size
    cy, cx = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
    dy, dx = yy - cy, xx - cx
    theta = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = -np.sin(theta) * dx + np.cos(theta) * dy
    if label == 1:  # disc
        return dx**2 + dy**2 <= radius**2
    if label == 2:  # square
        half = radius * 0.8
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if label == 3:  # triangle: three half-planes
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            phi = theta + k * 2 * np.pi / 3
            inside &= np.cos(phi) * dx + np.sin(phi) * dy <= radius * 0.7
        return inside
    if label == 4:  # ring
        distance = np.sqrt(dx**2 + dy**2)
        return (distance <= radius) & (distance >= radius * 0.4)
    raise ValueError(f"unknown demo class {label}")


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another label."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    return edge


def _texture_cell(size: int) -> int:
    """Side in pixels of a texture's cell: 4 at 64 px, 2 (the finest a pattern can be) at 32 px and below."""
    return max(2, size // 16)


def _texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Brightness pattern (size, size, 1) of an object class: what identifies it besides its shape.

    Colours are random, so a class is told by its shape and texture only, which greyscale, colour
    jitter and flips (the study's augmentations) keep: a flip leaves horizontal and vertical stripes
    as they are and diagonal ones diagonal. The stripes' phase is random; their orientation is not
    rotated with the object, so it stays a class's mark.
    """
    yy, xx = np.mgrid[0:size, 0:size]
    cell = _texture_cell(size)
    phase_y, phase_x = rng.integers(0, 2 * cell, size=2)
    if label == 2:  # square: horizontal stripes
        pattern = ((yy + phase_y) // cell) % 2
    elif label == 3:  # triangle: vertical stripes
        pattern = ((xx + phase_x) // cell) % 2
    elif label == 4:  # ring: diagonal stripes
        pattern = ((xx + yy + phase_x) // cell) % 2
    else:  # disc: plain
        pattern = np.zeros((size, size))
    return (1.0 - 0.55 * pattern.astype(np.float32))[..., None]


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One demo image (size, size, 3) uint8 and its mask (size, size) uint8 with outlines ignored."""
    rgb = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(2, 5)):
        label = int(rng.integers(1, len(CLASS_NAMES)))
        shape = _shape_mask(rng, label, size)
        colour = _hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
        shading = _texture(rng, label, size) + rng.normal(0, 0.03, size=(size, size, 1)).astype(np.float32)
        rgb = np.where(shape[..., None], colour[None, None] * shading, rgb)
        mask[shape] = label
    labelled = mask.copy()
    labelled[_outline(mask)] = IGNORE_LABEL
    image = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, labelled


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def write_demo_dataset(
    root: str | Path, *, seed: int, image_size: int, train: int, test: int, unlabelled: int
) -> None:
    """Write ``root/real/{train,test}/NNNN.png`` + ``.npy`` and ``root/unlabelled/NNNNN.png`` atomically."""
    with atomic_directory(root) as tmp:
        for split, count in (("train", train), ("test", test)):
            folder = split_folder(tmp, split)
            folder.mkdir(parents=True)
            for index in range(count):
                image, mask = render_scene(scene_rng(seed, split, index), image_size)
                Image.fromarray(image).save(folder / f"{index:04d}.png")
                np.save(folder / f"{index:04d}.npy", mask)
        folder = tmp / "unlabelled"
        folder.mkdir()
        for index in range(unlabelled):
            image, _ = render_scene(scene_rng(seed, "unlabelled", index), image_size)
            Image.fromarray(image).save(folder / f"{index:05d}.png")
