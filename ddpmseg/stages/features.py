"""Rules of ``features.smk``: one shard of an image set's pixel features, as a zarr store: the DDPM's
(``extract_features``) or the RGB control's (``extract_rgb_features``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.datasets import Split, load_split
from ..diffusion.model import load_ddpm
from ..diffusion.flags import model_flags
from ..features.extract import extract_to_store
from ..base.files import load_json
from ..features.rgb import write_rgb_store


def extract_features(
    *,
    checkpoint: str | Path,
    check: str | Path,
    store: str | Path,
    split: Split | dict,
    split_size: int,
    shard: Sequence[int],
    flags: dict[str, Any],
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int,
    batch_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Extract one shard, images ``shard = [start, stop)`` of the split's first ``split_size``, into
    the ``store`` (``check``: the checkpoint's validation record, whose sha256 the store keeps)."""
    start, stop = shard
    flags = model_flags(flags)
    names, images, masks = load_split(
        split, split_size, start, stop, image_size=flags["image_size"], number_class=number_class, ignore_label=ignore_label
    )
    model, diffusion = load_ddpm(checkpoint, flags)
    print(f"device: {next(model.parameters()).device}, model dtype: {model.dtype}")
    attrs = {
        "model_flags": flags,
        "checkpoint_sha256": load_json(check)["sha256"],
        "source": Split.of(split).as_dict(),
        "number_class": number_class,
        "ignore_label": ignore_label,
    }
    extract_to_store(
        model, diffusion, images, masks, names, steps=steps, blocks=blocks, noise_seed=noise_seed, batch_size=batch_size,
        out=store, attrs=attrs,
    )


def extract_rgb_features(
    *,
    store: str | Path,
    split: Split | dict,
    split_size: int,
    shard: Sequence[int],
    image_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Write the RGB control's features of one shard, images ``shard = [start, stop)`` of the split's
    first ``split_size`` preprocessed to ``image_size`` as for the DDPM, into the ``store``."""
    start, stop = shard
    names, images, masks = load_split(
        split, split_size, start, stop, image_size=image_size, number_class=number_class, ignore_label=ignore_label
    )
    attrs = {"source": Split.of(split).as_dict(), "number_class": number_class, "ignore_label": ignore_label}
    write_rgb_store(images, masks, names, out=store, attrs=attrs)
