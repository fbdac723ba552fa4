"""Image sets: the images a store holds features of. A dataset's splits (``train``, ``test``), its augmented
training copies (``aug-x<scale>-p<p>-s<seed>``) and the views of its test split (``tta-s<seed>-<view>``);
how many images each has, its shards, and the noise seed a run's features are drawn with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..data.datasets import Split, split_folder
from ..prediction.views import TTA_TRANSFORMS, view_key
from . import paths
from .variants import augmentation_scale, feature_source, tta_views, variant_settings


SPLIT_COUNTS = {"train": "training_number", "test": "testing_number"}


@dataclass(frozen=True)
class AugmentationSettings:
    """Settings of a set of augmented training copies, as its name encodes them (``aug-x5-p0.4-s0``)."""

    scale: int
    p: float
    seed: int

    @property
    def name(self) -> str:
        """The image set's name, which :func:`parse_augmentation_set` reads back."""
        return f"aug-x{self.scale}-p{self.p:g}-s{self.seed}"

    @property
    def copies(self) -> int:
        """Augmented copies of each training image (the original is not one of them)."""
        return self.scale - 1


def augmentation_set(config: dict[str, Any], dataset: str, variant: str) -> str | None:
    """Name of the image set of augmented training copies (shared by variants with equal settings)."""
    scale = augmentation_scale(config, dataset, variant)
    if scale <= 1:
        return None
    settings = variant_settings(config, variant)
    return AugmentationSettings(scale=scale, p=settings["augmentation_p"], seed=settings["augmentation_seed"]).name


def parse_augmentation_set(name: str) -> AugmentationSettings:
    """Settings encoded in an augmentation set name (see :func:`augmentation_set`)."""
    scale, p, seed = name.removeprefix("aug-").split("-")
    return AugmentationSettings(scale=int(scale[1:]), p=float(p[1:]), seed=int(seed[1:]))


@dataclass(frozen=True)
class TtaViewSettings:
    """Settings of the image set of one test-time augmentation view, as its name encodes them
    (``tta-s0-togray+coarsedropout``): the view (transform names, applied in order) and the TTA seed."""

    view: tuple[str, ...]
    seed: int

    @property
    def name(self) -> str:
        """The image set's name, which :func:`parse_tta_set` reads back."""
        return f"tta-s{self.seed}-{view_key(self.view)}"


def parse_tta_set(name: str) -> TtaViewSettings:
    """Settings encoded in a TTA image-set name (see :attr:`TtaViewSettings.name`)."""
    seed, _, key = name.removeprefix("tta-").partition("-")
    by_key = {transform.lower(): transform for transform in TTA_TRANSFORMS}
    keys = [] if key == "original" else key.split("+")
    if not (name.startswith("tta-s") and seed[1:].isdigit() and key and all(k in by_key for k in keys)):
        raise DdpmsegError(f"{name}: not the name of a TTA view's image set (tta-s<seed>-<transform>+...)")
    return TtaViewSettings(view=tuple(by_key[k] for k in keys), seed=int(seed[1:]))


def tta_set(view: list[str], seed: int) -> str:
    """Name of the image set of one test-time augmentation view."""
    return TtaViewSettings(view=tuple(view), seed=seed).name


def variant_tta_sets(config: dict[str, Any], variant: str) -> list[str]:
    seed = variant_settings(config, variant)["tta_seed"]
    return [tta_set(view, seed) for view in tta_views(config, variant)]


PER_RUN_NOISE = "per_run"


def noise_seed_of_run(config: dict[str, Any], seed: int) -> int:
    """Seed of the noise behind a run's features: the run's own seed (``features.noise_seed: per_run``,
    as the reference does) or the one shared noise seed."""
    noise_seed = config["features"].get("noise_seed", PER_RUN_NOISE)
    return int(seed) if noise_seed == PER_RUN_NOISE else int(noise_seed)


def noise_seeds(config: dict[str, Any]) -> list[int]:
    """Every noise seed some run uses, in the order of ``seeds`` (one feature extraction each)."""
    return list(dict.fromkeys(noise_seed_of_run(config, seed) for seed in config["seeds"]))


def features_folder(config: dict[str, Any], variant: str, seed: int) -> str:
    """The folder, under each image set's, of the stores a run (variant, seed) trains and predicts on:
    ``rgb`` for the RGB control (no noise: one set of stores for every seed), else ``noise<n>`` of the
    run's noise seed."""
    if feature_source(config, variant) == "rgb":
        return paths.RGB_FOLDER
    return paths.NOISE_FOLDER.format(noise=noise_seed_of_run(config, seed))


def variant_imagesets(config: dict[str, Any], dataset: str, variant: str) -> list[str]:
    """The image sets whose features a variant uses on a dataset: the splits, then its augmented
    training copies and its TTA views, if it has them."""
    augmented = augmentation_set(config, dataset, variant)
    return ["train", "test", *([augmented] if augmented else []), *variant_tta_sets(config, variant)]


def feature_imagesets(config: dict[str, Any], dataset: str, source: str) -> list[str]:
    """Every image set whose ``source`` features (``ddpm`` or ``rgb``) some variant uses on a dataset,
    in the order of first use; none when no variant uses that source."""
    imagesets = [
        imageset
        for variant in config["variants"]
        if feature_source(config, variant) == source
        for imageset in variant_imagesets(config, dataset, variant)
    ]
    return list(dict.fromkeys(imagesets))


def imageset_split(imageset: str) -> str:
    """Split folder (``real/<split>``) an image set is read from."""
    return "train" if imageset == "train" or imageset.startswith("aug-") else "test"


def imageset_count(config: dict[str, Any], dataset: str, imageset: str) -> int:
    """Number of images of an image set: a split, augmented training copies or a TTA view of the test split."""
    entry = config["datasets"][dataset]
    if imageset.startswith("aug-"):
        return entry["training_number"] * parse_augmentation_set(imageset).copies
    return entry[SPLIT_COUNTS[imageset_split(imageset)]]


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of the shards of an image set of ``count`` images."""
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def shard_count(count: int, shard_size: int) -> int:
    return math.ceil(count / shard_size)


def dataset_root(config: dict[str, Any], dataset: str) -> str:
    """The folder holding a dataset's splits in the archive layout: a rule's for demo and registry
    datasets, the user's for a ``folder`` dataset (None-like for ``folders``, whose splits have their own)."""
    entry = config["datasets"][dataset]
    return entry["path"] if entry["source"] == "folder" else paths.DATASET.format(dataset=dataset)


def split_source(config: dict[str, Any], dataset: str, split: str) -> Split:
    """Where a split's images and masks are, and the dataset's non-square policy."""
    entry = config["datasets"][dataset]
    if entry["source"] == "folders":
        return Split(Path(entry[f"{split}_images"]), Path(entry[f"{split}_masks"]), entry.get("non_square"))
    return Split(split_folder(dataset_root(config, dataset), split), None, entry.get("non_square"))


def imageset_folder(dataset: str, imageset: str) -> str | None:
    """The folder a rule writes an image set into (augmented copies, a TTA view), None for a split."""
    if imageset.startswith("aug-"):
        return paths.AUGMENTED.format(dataset=dataset, augset=imageset)
    if imageset.startswith("tta-"):
        return paths.TTA_VIEW.format(dataset=dataset, ttaset=imageset)
    return None


def imageset_source(config: dict[str, Any], dataset: str, imageset: str) -> Split:
    """Where the images of an image set are: a split, augmented copies or a TTA view (masks beside them)."""
    folder = imageset_folder(dataset, imageset)
    if folder is None:
        return split_source(config, dataset, imageset)
    return Split(split_folder(folder, imageset_split(imageset)))


def imageset_stores(config: dict[str, Any], dataset: str, imageset: str, folder: str) -> list[str]:
    """The stores of an image set's features in ``folder`` (``noise<n>``: the DDPM's under noise seed n;
    ``rgb``: the RGB control's), shard after shard."""
    count = imageset_count(config, dataset, imageset)
    shards = shard_count(count, config["features"]["shard_size"])
    return [paths.store(dataset=dataset, imageset=imageset, folder=folder, shard=k) for k in range(shards)]


def run_stores(config: dict[str, Any], dataset: str, variant: str, seed: int, split: str) -> list[str]:
    """The stores a run reads: of ``train`` (the training images, then their augmented copies if the
    variant augments), of ``test``, or of ``tta`` (every TTA view of the test split, view after view)."""
    folder = features_folder(config, variant, seed)
    if split == "train":
        augmented = augmentation_set(config, dataset, variant)
        imagesets = ["train", *([augmented] if augmented else [])]
    elif split == "test":
        imagesets = ["test"]
    else:
        imagesets = variant_tta_sets(config, variant)
    return [store for imageset in imagesets for store in imageset_stores(config, dataset, imageset, folder)]


def is_test_imageset(imageset: str) -> bool:
    """Whether an image set is the test split or one of its TTA views."""
    return imageset_split(imageset) == "test"


def stored_imagesets(config: dict[str, Any], dataset: str, source: str) -> list[str]:
    """The image sets whose ``source`` features are extracted into stores: the training images and their
    augmented copies always, the test split and its TTA views only with ``features.store_test``."""
    keep_test = config["features"]["store_test"]
    return [name for name in feature_imagesets(config, dataset, source) if keep_test or not is_test_imageset(name)]


def folder_runs(config: dict[str, Any], dataset: str, folder: str) -> list[dict[str, Any]]:
    """The runs of a dataset (variant, seed, in config order) whose features are those of ``folder``
    (``noise<n>`` or ``rgb``): one pass over the test split in that folder serves them all."""
    return [
        {"dataset": dataset, "variant": variant, "seed": int(seed)}
        for variant in config["variants"]
        for seed in config["seeds"]
        if features_folder(config, variant, int(seed)) == folder
    ]


def feature_folders(config: dict[str, Any], dataset: str) -> list[str]:
    """Every feature folder some run of a dataset uses, in order of first use."""
    folders = [features_folder(config, variant, int(seed)) for variant in config["variants"] for seed in config["seeds"]]
    return list(dict.fromkeys(folders))


def shards_of_test_split(config: dict[str, Any], dataset: str) -> list[tuple[int, int]]:
    """[start, stop) of each shard of the test split (the shards of its stores, when they are kept)."""
    return shard_ranges(config["datasets"][dataset]["testing_number"], config["features"]["shard_size"])
