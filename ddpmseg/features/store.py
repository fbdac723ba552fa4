"""Zarr v3 feature stores: native-resolution activations in float16, read back as exact upsampled features.

A store holds one shard of images. Group attributes carry the metadata (model flags, checkpoint sha256,
steps, blocks, noise seed, image names, ddpmseg version, layer shapes). Arrays:

- ``images``: (n, S, S, 3) uint8, the preprocessed RGB images (for panels and checks);
- ``labels``: (n, S, S) int32, the masks resized to the model's image_size (no small-annotation removal);
- ``act_t{step}_b{block}``: (n, C, h, w) float16, one chunk per image and layer, zstd-compressed.

Features are never stored upsampled: :mod:`ddpmseg.features.upsample` computes a pixel's upsampled features
from its native neighbours.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
import zarr.codecs

from .. import __version__
from ..base.errors import DdpmsegError
from .upsample import LayerGroups, column_runs, gather_features

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
        resolutions, group_layers = LayerGroups.plan(self.layers)
        return [
            torch.empty((views, h, w, sum(self.layers[k].channels for k in group)), dtype=torch.float16)
            for (h, w), group in zip(resolutions, group_layers)
        ]

    def load_groups(
        self, indices: Sequence[int] | None = None, out: list[torch.Tensor] | None = None, workers: int | None = None
    ) -> LayerGroups:
        """Activations of the given images (default all) as :class:`LayerGroups`, filled in place
        (into the first rows of ``out``, from :meth:`group_buffers`, when given).

        ``workers`` threads (default: torch's thread count) load one image each at a time: zarr
        decompresses and numpy transposes to channel-last without holding the GIL, so every core works.
        """
        indices = list(range(len(self))) if indices is None else list(indices)
        _, group_layers = LayerGroups.plan(self.layers)
        buffers = out if out is not None else self.group_buffers(len(indices))
        groups = [buffer[: len(indices)] for buffer in buffers]
        targets = [group.numpy() for group in groups]

        def load(row: int) -> None:
            storage, local = self._locations[indices[row]]
            for target, group in zip(targets, group_layers):
                offset = 0
                for k in group:
                    layer = self.layers[k]
                    values = np.asarray(storage[layer.name][local])
                    np.copyto(target[row, :, :, offset : offset + layer.channels], values.transpose(1, 2, 0))
                    offset += layer.channels

        workers = min(workers or torch.get_num_threads(), len(indices))
        if workers > 1:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                list(pool.map(load, range(len(indices))))
        else:
            for row in range(len(indices)):
                load(row)
        return LayerGroups(groups, column_runs(self.layers, group_layers), self.image_size)

    def pixel_features(self, index: int, ys: np.ndarray | torch.Tensor, xs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Exact upsampled features (P, D) float32 of pixels (ys, xs) of image ``index``."""
        ys, xs = torch.as_tensor(ys, dtype=torch.long), torch.as_tensor(xs, dtype=torch.long)
        layers = [act[None] for act in self.activations(index)]
        zeros = torch.zeros_like(ys)
        return gather_features(layers, zeros, ys, xs, self.image_size)
