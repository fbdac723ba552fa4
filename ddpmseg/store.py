"""Zarr v3 feature stores: native-resolution activations in float16, read back as exact upsampled features.

A store holds one shard of images. Group attributes carry the metadata (model flags, checkpoint sha256,
steps, blocks, noise seed, image names, ddpmseg version, layer shapes). Arrays:

- ``images``: (n, S, S, 3) uint8, the preprocessed RGB images (for panels and checks);
- ``labels``: (n, S, S) int32, the masks resized to the model's image_size (no small-annotation removal);
- ``act_t{step}_b{block}``: (n, C, h, w) float16, one chunk per image and layer, zstd-compressed.

Features are never stored upsampled. Bilinear upsampling (align_corners=False) to S x S is a fixed
linear map, so the feature of pixel (y, x) is a weighted sum of 4 native neighbours; :func:`gather_features`
computes it the way ``torch.nn.functional.interpolate`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
import zarr.codecs

from . import __version__
from .errors import DdpmsegError

STORE_FORMAT = "ddpmseg-features/1"


def layer_name(step: int, block: int) -> str:
    return f"act_t{step}_b{block}"


def _compressor() -> zarr.codecs.BloscCodec:
    return zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle=zarr.codecs.BloscShuffle.shuffle)


@dataclass(frozen=True)
class Layer:
    step: int
    block: int
    channels: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return layer_name(self.step, self.block)


class StoreWriter:
    """Writes one shard store; arrays are created when the first batch shows the layer shapes."""

    def __init__(self, path: str | Path, names: Sequence[str], image_size: int, attrs: dict[str, Any]):
        self.group = zarr.open_group(str(path), mode="w", zarr_format=3)
        self.names = list(names)
        self.image_size = image_size
        self.attrs = dict(attrs)
        self.layers: list[Layer] = []
        self.group.create_array(
            "labels",
            shape=(len(self.names), image_size, image_size),
            chunks=(1, image_size, image_size),
            dtype="int32",
            compressors=_compressor(),
        )
        self.group.create_array(
            "images",
            shape=(len(self.names), image_size, image_size, 3),
            chunks=(1, image_size, image_size, 3),
            dtype="uint8",
            compressors=_compressor(),
        )

    def write(
        self,
        start: int,
        activations: dict[tuple[int, int], torch.Tensor],
        images: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """Write images ``start .. start + len(labels)``: activations {(step, block): (B, C, h, w)}."""
        count = len(labels)
        if not self.layers:
            for (step, block), tensor in activations.items():
                _, channels, height, width = tensor.shape
                layer = Layer(step, block, channels, height, width)
                self.layers.append(layer)
                self.group.create_array(
                    layer.name,
                    shape=(len(self.names), channels, height, width),
                    chunks=(1, channels, height, width),
                    dtype="float16",
                    compressors=_compressor(),
                )
        for layer in self.layers:
            values = activations[(layer.step, layer.block)].numpy().astype(np.float16)
            self.group[layer.name][start : start + count] = values
        self.group["labels"][start : start + count] = labels.astype(np.int32)
        self.group["images"][start : start + count] = images.astype(np.uint8)

    def close(self) -> None:
        self.group.attrs.update(
            {
                **self.attrs,
                "format": STORE_FORMAT,
                "ddpmseg_version": __version__,
                "image_size": self.image_size,
                "names": self.names,
                "layers": [vars(layer) for layer in self.layers],
            }
        )


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
    def plan(cls, layers: Sequence[Layer]) -> tuple[list[tuple[int, int]], list[list[int]]]:
        """Resolutions in order of first appearance and, per resolution, the indices of its layers."""
        resolutions: list[tuple[int, int]] = []
        members: list[list[int]] = []
        for index, layer in enumerate(layers):
            key = (layer.height, layer.width)
            if key not in resolutions:
                resolutions.append(key)
                members.append([])
            members[resolutions.index(key)].append(index)
        return resolutions, members

    @classmethod
    def from_layers(cls, layers: Sequence[torch.Tensor], image_size: int) -> "LayerGroups":
        """Group channel-last (n, h, w, C) layer tensors given in feature order."""
        specs = [Layer(0, 0, t.shape[3], t.shape[1], t.shape[2]) for t in layers]
        _, members = cls.plan(specs)
        groups = [torch.cat([layers[k] for k in group], dim=3) for group in members]
        return cls(groups, column_runs(specs, members), image_size)

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


def column_runs(layers: Sequence[Layer], members: Sequence[Sequence[int]]) -> list[list[tuple[int, int, int]]]:
    """Per group, the (group column, feature column, width) runs of its layers, adjacent runs merged."""
    starts = [0]
    for layer in layers:
        starts.append(starts[-1] + layer.channels)
    runs: list[list[tuple[int, int, int]]] = []
    for group in members:
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


class FeatureStore:
    """Read access to one or more shard stores of the same image set, as one sequence of images."""

    def __init__(self, paths: str | Path | Sequence[str | Path]):
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DdpmsegError("no feature store given")
        self.groups = []
        for path in self.paths:
            try:
                group = zarr.open_group(str(path), mode="r")
            except (FileNotFoundError, zarr.errors.GroupNotFoundError):
                raise DdpmsegError(f"{path}: not a feature store") from None
            if group.attrs.get("format") != STORE_FORMAT:
                raise DdpmsegError(f"{path}: not a {STORE_FORMAT} store (incomplete or foreign)")
            self.groups.append(group)
        first = self.groups[0].attrs
        self.attrs: dict[str, Any] = dict(first)
        self.layers = [Layer(**layer) for layer in first["layers"]]
        self.image_size = int(first["image_size"])
        for path, group in zip(self.paths[1:], self.groups[1:]):
            for key in ("layers", "steps", "blocks", "noise_seed", "checkpoint_sha256", "image_size"):
                if group.attrs.get(key) != first.get(key):
                    raise DdpmsegError(f"{path}: '{key}' differs from that of {self.paths[0]}")
        # (group, index within the group) of every image, in order
        self._locations = [(g, i) for g in self.groups for i in range(len(g.attrs["names"]))]
        self.names: list[str] = [name for g in self.groups for name in g.attrs["names"]]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def feature_dim(self) -> int:
        return sum(layer.channels for layer in self.layers)

    def labels(self, index: int) -> np.ndarray:
        group, local = self._locations[index]
        return np.asarray(group["labels"][local])

    def image(self, index: int) -> np.ndarray:
        """The preprocessed (S, S, 3) uint8 RGB image."""
        group, local = self._locations[index]
        return np.asarray(group["images"][local])

    def all_labels(self) -> np.ndarray:
        return np.concatenate([np.asarray(g["labels"][:]) for g in self.groups])

    def activations(self, index: int) -> list[torch.Tensor]:
        """Channel-last float16 activations (h, w, C) of one image, one tensor per layer."""
        group, local = self._locations[index]
        return [
            torch.from_numpy(np.ascontiguousarray(np.asarray(group[layer.name][local]).transpose(1, 2, 0)))
            for layer in self.layers
        ]

    def load_all(self, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Channel-last float16 activations (n, h, w, C) of the given images (default all), per layer."""
        indices = range(len(self)) if indices is None else indices
        per_image = [self.activations(i) for i in indices]
        return [torch.stack([image[k] for image in per_image]) for k in range(len(self.layers))]

    def group_buffers(self, views: int) -> list[torch.Tensor]:
        """Empty float16 tensors that :meth:`load_groups` can fill with up to ``views`` views."""
        resolutions, members = LayerGroups.plan(self.layers)
        return [
            torch.empty((views, h, w, sum(self.layers[k].channels for k in group)), dtype=torch.float16)
            for (h, w), group in zip(resolutions, members)
        ]

    def load_groups(self, indices: Sequence[int] | None = None, out: list[torch.Tensor] | None = None) -> LayerGroups:
        """Activations of the given images (default all) as :class:`LayerGroups`, filled in place
        (into the first rows of ``out``, from :meth:`group_buffers`, when given)."""
        indices = list(range(len(self))) if indices is None else list(indices)
        _, members = LayerGroups.plan(self.layers)
        buffers = out if out is not None else self.group_buffers(len(indices))
        groups = [buffer[: len(indices)] for buffer in buffers]
        for row, index in enumerate(indices):
            storage, local = self._locations[index]
            for target, group in zip(groups, members):
                offset = 0
                for k in group:
                    layer = self.layers[k]
                    values = torch.from_numpy(np.asarray(storage[layer.name][local]))
                    target[row, :, :, offset : offset + layer.channels].copy_(values.permute(1, 2, 0))
                    offset += layer.channels
        return LayerGroups(groups, column_runs(self.layers, members), self.image_size)

    def pixel_features(self, index: int, ys: np.ndarray | torch.Tensor, xs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Exact upsampled features (P, D) float32 of pixels (ys, xs) of image ``index``."""
        ys, xs = torch.as_tensor(ys, dtype=torch.long), torch.as_tensor(xs, dtype=torch.long)
        layers = [act[None] for act in self.activations(index)]
        zeros = torch.zeros_like(ys)
        return gather_features(layers, zeros, ys, xs, self.image_size)
