"""Checks and derived values of the workflow configuration (after JSON-schema validation)."""

from __future__ import annotations

import math
from typing import Any

from .classifier import TrainSettings
from .ddpm import check_feature_settings, model_flags
from .errors import DdpmsegError

CLASSIFIER_KEYS = tuple(TrainSettings.__dataclass_fields__)


def check_config(config: dict[str, Any]) -> None:
    """Cross-field checks the schema cannot express; raises :class:`DdpmsegError` naming the setting."""
    for name, dataset in config["datasets"].items():
        ddpm = dataset["ddpm"]
        if ddpm not in config["ddpms"]:
            raise DdpmsegError(f"datasets.{name}.ddpm: '{ddpm}' is not a key of ddpms")
        names = dataset.get("class_names")
        if names is not None and len(names) != dataset["number_class"]:
            raise DdpmsegError(
                f"datasets.{name}.class_names: {len(names)} names for number_class {dataset['number_class']}"
            )
        palette = dataset.get("palette")
        if palette is not None and len(palette) != dataset["number_class"]:
            raise DdpmsegError(
                f"datasets.{name}.palette: {len(palette)} colours for number_class {dataset['number_class']}"
            )
    for name, ddpm in config["ddpms"].items():
        try:
            flags = model_flags(ddpm["flags"])
        except DdpmsegError as error:
            raise DdpmsegError(f"ddpms.{name}.flags: {error}") from None
        check_feature_settings(flags, config["features"]["steps"], config["features"]["blocks"])
    for variant in config["variants"]:
        settings = variant_settings(config, variant)
        TrainSettings(**settings)
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise DdpmsegError("seeds: a seed is listed twice")


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """Classifier settings of a variant: ``classifier`` defaults overridden by the variant's own keys."""
    overrides = config["variants"][variant]
    return {key: overrides.get(key, config["classifier"][key]) for key in CLASSIFIER_KEYS}


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of the shards of a split of ``count`` images."""
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def shard_count(count: int, shard_size: int) -> int:
    return math.ceil(count / shard_size)
