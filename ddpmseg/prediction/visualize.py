"""Colourised masks and side-by-side panels (image | ground truth | prediction)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_COLOUR = (255, 255, 255)


def default_palette(number_class: int) -> list[tuple[int, int, int]]:
    """Distinct colours: class 0 black, the others spread over hue (golden-angle steps)."""
    colours = [(0, 0, 0)]
    for c in range(1, number_class):
        hue = (c * 0.618033988749895) % 1.0
        value = 0.95 if c % 2 else 0.7
        i, f = int(hue * 6), hue * 6 - int(hue * 6)
        p, q, t = value * 0.25, value * (1 - 0.75 * f), value * (1 - 0.75 * (1 - f))
        rgb = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i % 6]
        colours.append(tuple(int(round(255 * x)) for x in rgb))
    return colours


def colourise(mask: np.ndarray, palette: Sequence[Sequence[int]], ignore_label: int) -> np.ndarray:
    """(H, W) labels to (H, W, 3) uint8; ignore_label (and anything outside the palette) is white."""
    table = np.array(palette, dtype=np.uint8)
    rgb = np.full(mask.shape + (3,), IGNORE_COLOUR, dtype=np.uint8)
    valid = (mask >= 0) & (mask < len(table)) & (mask != ignore_label)
    rgb[valid] = table[mask[valid]]
    return rgb


def panel(image: np.ndarray, *masks_rgb: np.ndarray, gap: int = 2) -> np.ndarray:
    """Images side by side with a white gap."""
    height = image.shape[0]
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = [image]
    for mask_rgb in masks_rgb:
        parts += [spacer, mask_rgb]
    return np.concatenate(parts, axis=1)


def prediction_panel(
    image: np.ndarray,
    truth: np.ndarray,
    final: np.ndarray,
    *,
    palette: Sequence[Sequence[int]],
    ignore_label: int,
    plain: np.ndarray | None = None,
) -> np.ndarray:
    """The panel of a prediction: image | ground truth | [plain ensemble (with TTA on) |] final labels."""
    shown = [truth] + ([] if plain is None else [plain]) + [final]
    return panel(image, *(colourise(labels, palette, ignore_label) for labels in shown))
