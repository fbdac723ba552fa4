"""Colourised masks, side-by-side panels (image | ground truth | prediction) and uncertainty pictures."""

from __future__ import annotations

import functools
import math
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


# Uncertainty pictures: the members' JS divergence u in [0, ln K] on a logarithmic scale,
# log10(1 + 1000 u / ln K) / log10(1001), through a perceptual colour map: ensembles mostly agree, so the
# values that matter span decades well below ln K (the demo's stay under a tenth of it), and one fixed
# scale lets maps of different images and bundles be compared.
UNCERTAINTY_COLOURMAP = "viridis"
UNCERTAINTY_DECADES = 3  # the scale resolves u / ln K from 10**-3 to 1
UNCERTAINTY_TICKS = (0.0, 0.001, 0.01, 0.1, 1.0)  # u / ln K marked on the legend
OUTSIDE_COLOUR = (255, 255, 255)  # pixels the model did not see (the margins a center crop cuts off)


def uncertainty_scale(js: np.ndarray, number_class: int) -> np.ndarray:
    """JS divergences (nats) to [0, 1] on the pictures' logarithmic scale (see above)."""
    stretch = 10.0**UNCERTAINTY_DECADES
    relative = np.clip(np.asarray(js, dtype=np.float64) / math.log(number_class), 0.0, 1.0)
    return np.log10(1.0 + stretch * relative) / math.log10(1.0 + stretch)


@functools.lru_cache(maxsize=1)
def uncertainty_colour_table() -> np.ndarray:
    """The 256 colours of the uncertainty scale, (256, 3) uint8, from 0 to 1."""
    from matplotlib import colormaps  # only the pictures need matplotlib

    table = np.rint(colormaps[UNCERTAINTY_COLOURMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
    table.flags.writeable = False  # shared by every call
    return table


def uncertainty_picture(js: np.ndarray, number_class: int, inside: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 colours of a JS map on the fixed scale; white where ``inside`` is False."""
    levels = np.rint(uncertainty_scale(js, number_class) * 255).astype(np.uint8)
    picture = uncertainty_colour_table()[levels]
    if inside is not None:
        picture[~inside] = OUTSIDE_COLOUR
    return picture


def uncertainty_legend(width: int, *, bar_height: int = 14, font_size: int = 12) -> np.ndarray:
    """A colour bar ``width`` px wide with its ticks, labelled in units of ln K, on white."""
    from PIL import Image, ImageDraw, ImageFont

    margin = 3 * font_size
    bar_width = max(1, width - 2 * margin)
    height = bar_height + 2 * font_size + 10
    legend = Image.new("RGB", (max(width, bar_width), height), "white")
    positions = np.linspace(0.0, 1.0, bar_width)
    bar = uncertainty_colour_table()[np.rint(positions * 255).astype(np.uint8)]
    legend.paste(Image.fromarray(np.repeat(bar[None], bar_height, axis=0)), (margin, 0))
    draw = ImageDraw.Draw(legend)
    font = ImageFont.load_default(size=font_size)
    for tick in UNCERTAINTY_TICKS:
        x = margin + float(uncertainty_scale(np.array(tick * math.log(2)), 2)) * (bar_width - 1)
        draw.line([(x, bar_height), (x, bar_height + 3)], fill="black")
        # the 0 label sits left of its tick, clear of the 0.001 label beside it
        draw.text((x + 1, bar_height + 4), f"{tick:g}", fill="black", font=font, anchor="ra" if tick == 0 else "ma")
    draw.text((legend.width / 2, bar_height + 6 + font_size), "uncertainty: JS divergence / ln K (log scale)",
              fill="black", font=font, anchor="ma")
    return np.asarray(legend)
