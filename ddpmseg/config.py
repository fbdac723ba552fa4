"""Checks and derived values of the workflow configuration (after JSON-schema validation).

A method variant is a set of settings: the classifier's (:class:`ddpmseg.classifier.TrainSettings`),
training-time augmentation (``augmentation_scale``, ``augmentation_p``, ``augmentation_seed``) and
test-time augmentation (``tta_views``, ``tta_seed``). ``variant_defaults`` gives every setting; a
variant overrides some of them.
"""

from __future__ import annotations

import math
from typing import Any

from .classifier import TrainSettings
from .ddpm import check_feature_settings, model_flags
from .errors import DdpmsegError

CLASSIFIER_KEYS = tuple(TrainSettings.__dataclass_fields__)
# Named sets of test-time augmentation views (method.md §6).
NAMED_TTA_VIEWS = {
    "study": [["ToGray", "CoarseDropout"], ["ToGray"], ["ColorJitter", "HorizontalFlip"], ["ColorJitter", "HorizontalFlip", "ChannelShuffle"]],
    "study_code": [
        ["ToGray", "CoarseDropout"],
        ["ColorJitter", "HorizontalFlip"],
        ["CoarseDropout", "ColorJitter"],
        ["ColorJitter", "HorizontalFlip", "ChannelShuffle"],
    ],
}
SPLIT_COUNTS = {"train": "training_number", "test": "testing_number"}


def check_config(config: dict[str, Any]) -> None:
    """Cross-field checks the schema cannot express; raises :class:`DdpmsegError` naming the setting."""
    for name, dataset in config["datasets"].items():
        ddpm = dataset["ddpm"]
        if ddpm not in config["ddpms"]:
            raise DdpmsegError(f"datasets.{name}.ddpm: '{ddpm}' is not a key of ddpms")
        for key, what in (("class_names", "names"), ("palette", "colours")):
            values = dataset.get(key)
            if values is not None and len(values) != dataset["number_class"]:
                raise DdpmsegError(
                    f"datasets.{name}.{key}: {len(values)} {what} for number_class {dataset['number_class']}"
                )
    for name, ddpm in config["ddpms"].items():
        try:
            flags = model_flags(ddpm["flags"])
        except DdpmsegError as error:
            raise DdpmsegError(f"ddpms.{name}.flags: {error}") from None
        check_feature_settings(flags, config["features"]["steps"], config["features"]["blocks"])
    for variant in config["variants"]:
        TrainSettings(**classifier_settings(variant_settings(config, variant)))
        tta_views(config, variant)
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise DdpmsegError("seeds: a seed is listed twice")


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """Every setting of a variant: ``variant_defaults`` overridden by the variant's own keys."""
    defaults = config["variant_defaults"]
    overrides = config["variants"][variant]
    return {key: overrides.get(key, value) for key, value in defaults.items()}


def classifier_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: settings[key] for key in CLASSIFIER_KEYS}


def augmentation_scale(config: dict[str, Any], dataset: str, variant: str) -> int:
    """Training-set enlargement of a variant on a dataset (a dataset's own scale wins when augmenting)."""
    scale = variant_settings(config, variant)["augmentation_scale"]
    if scale > 1:
        scale = config["datasets"][dataset].get("augmentation_scale", scale)
    return int(scale)


def augmentation_set(config: dict[str, Any], dataset: str, variant: str) -> str | None:
    """Name of the image set of augmented training copies (shared by variants with equal settings)."""
    scale = augmentation_scale(config, dataset, variant)
    if scale <= 1:
        return None
    settings = variant_settings(config, variant)
    return f"aug-x{scale}-p{settings['augmentation_p']:g}-s{settings['augmentation_seed']}"


def parse_augmentation_set(name: str) -> dict[str, Any]:
    """Settings encoded in an augmentation set name."""
    scale, p, seed = name.removeprefix("aug-").split("-")
    return {"scale": int(scale[1:]), "p": float(p[1:]), "seed": int(seed[1:])}


def tta_views(config: dict[str, Any], variant: str) -> list[list[str]]:
    """The test-time augmentation views of a variant ([] = no TTA)."""
    views = variant_settings(config, variant)["tta_views"]
    if isinstance(views, str):
        if views not in NAMED_TTA_VIEWS:
            raise DdpmsegError(
                f"variants.{variant}.tta_views: '{views}' is not one of {', '.join(NAMED_TTA_VIEWS)} or a list of views"
            )
        return [list(view) for view in NAMED_TTA_VIEWS[views]]
    return [list(view) for view in views]


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of the shards of an image set of ``count`` images."""
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def shard_count(count: int, shard_size: int) -> int:
    return math.ceil(count / shard_size)


def tta_set(view: list[str], seed: int) -> str:
    """Name of the image set of one test-time augmentation view."""
    from .augment import view_key

    return f"tta-s{seed}-{view_key(view)}"


def variant_tta_sets(config: dict[str, Any], variant: str) -> list[str]:
    seed = variant_settings(config, variant)["tta_seed"]
    return [tta_set(view, seed) for view in tta_views(config, variant)]


def imageset_split(imageset: str) -> str:
    """Split folder (``real/<split>``) an image set is read from."""
    return "train" if imageset == "train" or imageset.startswith("aug-") else "test"


def imageset_count(config: dict[str, Any], dataset: str, imageset: str) -> int:
    """Number of images of an image set: a split, augmented training copies or a TTA view of the test split."""
    entry = config["datasets"][dataset]
    if imageset.startswith("aug-"):
        return entry["training_number"] * (parse_augmentation_set(imageset)["scale"] - 1)
    return entry[SPLIT_COUNTS[imageset_split(imageset)]]
