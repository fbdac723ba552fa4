"""Bilinear upsampling of native-resolution activations to the image size, computed per pixel.

Bilinear upsampling (align_corners=False) to S x S (or any H x W) is a fixed linear map, so the feature of pixel
(y, x) is a weighted sum of 4 native neighbours: :func:`gather_features` computes it the way
``torch.nn.functional.interpolate`` does; :class:`LayerGroups` does the same for many pixels at once,
one gather per resolution. :func:`upsampling_taps` gives the same taps for whole output rows of
several maps at once (native-resolution prediction, :mod:`ddpmseg.prediction.predict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerShape:
    """What the upsampling needs of a layer; a stored :class:`ddpmseg.features.store.Layer` serves as one too."""

    channels: int
    height: int
    width: int


def bilinear_taps(coords: torch.Tensor, in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (lo, hi) and weight of hi for output ``coords``, as ``F.interpolate`` (align_corners=False)."""
    scale = in_size / out_size
    source = ((coords.to(torch.float32) + 0.5) * scale - 0.5).clamp_(min=0.0)
    lo = source.to(torch.long).clamp_(max=in_size - 1)
    hi = (lo + 1).clamp_(max=in_size - 1)
    frac = (source - lo.to(torch.float32)).clamp_(0.0, 1.0)
    return lo, hi, frac


def gather_features(
    layers: Sequence[torch.Tensor],
    image_index: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    image_size: int,
) -> torch.Tensor:
    """Exact upsampled features (P, D) float32 of pixels (ys, xs) of images ``image_index``.

    ``layers`` are channel-last activations (n, h, w, C), in feature order; ``image_index`` indexes
    their first axis. Equals ``F.interpolate(act, (S, S), mode="bilinear")[i, :, y, x]`` concatenated.
    """
    parts = []
    for act in layers:
        height, width = act.shape[1], act.shape[2]
        y0, y1, fy = bilinear_taps(ys, height, image_size)
        x0, x1, fx = bilinear_taps(xs, width, image_size)
        fy, fx = fy[:, None], fx[:, None]
        top = (1 - fx) * act[image_index, y0, x0].float() + fx * act[image_index, y0, x1].float()
        bottom = (1 - fx) * act[image_index, y1, x0].float() + fx * act[image_index, y1, x1].float()
        parts.append((1 - fy) * top + fy * bottom)
    return torch.cat(parts, dim=1)


class LayerGroups:
    """Activations of several images with layers of equal resolution concatenated along channels.

    Gathering a pixel's features then costs one weighted 4-row gather per resolution instead of 4 per
    layer (a plain row gather where the resolution is the image size and upsampling is the identity).
    ``runs[g]`` lists the (group column, feature column, width) runs that place group ``g``'s
    columns in the feature order of :func:`gather_features`.
    """

    def __init__(self, groups: Sequence[torch.Tensor], runs: Sequence[Sequence[tuple[int, int, int]]], image_size: int):
        self.groups = list(groups)  # (n, h, w, C_group) each
        self.runs = [list(group_runs) for group_runs in runs]
        self.image_size = image_size
        self.feature_dim = sum(group.shape[3] for group in self.groups)

    @classmethod
    def plan(cls, layers: Sequence[LayerShape]) -> tuple[list[tuple[int, int]], list[list[int]]]:
        """Resolutions in order of first appearance and, per resolution, the indices of its layers."""
        resolutions: list[tuple[int, int]] = []
        group_layers: list[list[int]] = []
        for index, layer in enumerate(layers):
            key = (layer.height, layer.width)
            if key not in resolutions:
                resolutions.append(key)
                group_layers.append([])
            group_layers[resolutions.index(key)].append(index)
        return resolutions, group_layers

    @classmethod
    def from_layers(cls, layers: Sequence[torch.Tensor], image_size: int) -> "LayerGroups":
        """Group channel-last (n, h, w, C) layer tensors given in feature order."""
        shapes = [LayerShape(t.shape[3], t.shape[1], t.shape[2]) for t in layers]
        _, group_layers = cls.plan(shapes)
        groups = [torch.cat([layers[k] for k in group], dim=3) for group in group_layers]
        return cls(groups, column_runs(shapes, group_layers), image_size)

    def __len__(self) -> int:
        return self.groups[0].shape[0]

    def features(self, image_index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Upsampled features (P, D) float32, as :func:`gather_features` up to float16 rounding.

        Each resolution's 4 weighted neighbours are summed by one ``embedding_bag`` over the flattened
        activations; the sum is rounded once to the activations' dtype (float16: the precision they
        are stored in), which makes a batch's gather 4x cheaper than float32 arithmetic. The sums are
        converted and placed in feature order by a few column-run copies into the output (a column
        permutation of the whole output cost 5x the gather itself).
        """
        out = torch.empty((len(ys), self.feature_dim), dtype=torch.float32)
        for act, runs in zip(self.groups, self.runs):
            images, height, width, channels = act.shape
            table = act.view(images * height * width, channels)
            base = image_index * (height * width)
            if height == width == self.image_size:
                summed = table.index_select(0, base + ys * width + xs)
            else:
                y0, y1, fy = bilinear_taps(ys, height, self.image_size)
                x0, x1, fx = bilinear_taps(xs, width, self.image_size)
                rows = torch.stack(
                    [base + y0 * width + x0, base + y0 * width + x1, base + y1 * width + x0, base + y1 * width + x1], 1
                )
                weights = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1)
                summed = torch.nn.functional.embedding_bag(rows, table, per_sample_weights=weights.to(table.dtype), mode="sum")
            for source, target, run in runs:
                out[:, target : target + run].copy_(summed[:, source : source + run])
        return out


def column_runs(layers: Sequence[LayerShape], group_layers: Sequence[Sequence[int]]) -> list[list[tuple[int, int, int]]]:
    """Per group, the (group column, feature column, width) runs of its layers, adjacent runs merged."""
    starts = [0]
    for layer in layers:
        starts.append(starts[-1] + layer.channels)
    runs: list[list[tuple[int, int, int]]] = []
    for group in group_layers:
        merged: list[tuple[int, int, int]] = []
        source = 0
        for k in group:
            width = layers[k].channels
            if merged and merged[-1][0] + merged[-1][2] == source and merged[-1][1] + merged[-1][2] == starts[k]:
                first_source, first_target, first_width = merged[-1]
                merged[-1] = (first_source, first_target, first_width + width)
            else:
                merged.append((source, starts[k], width))
            source += width
        runs.append(merged)
    return runs



def upsampling_taps(
    sizes: Sequence[tuple[int, int]], rows: torch.Tensor, out_height: int, out_width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of the bilinear upsampling to ``out_height`` x ``out_width`` (by :func:`bilinear_taps`, as
    ``F.interpolate``) of several channel-last maps of native ``sizes`` (h, w), summed, at the output pixels
    of ``rows`` (every column, row-major).

    The maps are taken flattened to (h * w, C) and stacked one after another (map g's rows start after
    those of maps 0 .. g-1). Returns (indices (P, 4 G) into the stacked rows, weights (P, 4 G) float32):
    ``embedding_bag(indices, stacked, per_sample_weights=weights, mode="sum")`` is the sum of the
    upsampled maps at those pixels, each output row written once. Native-resolution prediction
    (:mod:`ddpmseg.prediction.predict`) upsamples its first-layer products this way.
    """
    columns = torch.arange(out_width, device=rows.device)
    indices, weights = [], []
    offset = 0
    for height, width in sizes:
        y0, y1, fy = bilinear_taps(rows, height, out_height)
        x0, x1, fx = bilinear_taps(columns, width, out_width)
        y0, y1, fy = (offset + y0 * width)[:, None], (offset + y1 * width)[:, None], fy[:, None]
        indices += [y0 + x0, y0 + x1, y1 + x0, y1 + x1]
        weights += [(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]
        offset += height * width
    return torch.stack(indices, dim=2).reshape(-1, len(indices)), torch.stack(weights, dim=2).reshape(-1, len(weights))
