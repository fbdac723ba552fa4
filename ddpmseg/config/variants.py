"""A method variant's settings: ``variant_defaults`` overridden by the variant's own keys. A variant is a
set of settings: the classifier's (:class:`ddpmseg.classifier.settings.TrainSettings`), its feature source,
training-time augmentation (``augmentation_scale``, ``augmentation_p``, ``augmentation_seed``) and
test-time augmentation (``tta_views``, ``tta_seed``)."""

from __future__ import annotations

from typing import Any

from ..base.errors import DdpmsegError
from ..classifier.settings import TrainSettings
from ..prediction.views import NAMED_TTA_VIEWS


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """Every setting of a variant: ``variant_defaults`` overridden by the variant's own keys."""
    defaults = config["variant_defaults"]
    overrides = config["variants"][variant]
    return {key: overrides.get(key, value) for key, value in defaults.items()}


def augmentation_scale(config: dict[str, Any], dataset: str, variant: str) -> int:
    """Training-set enlargement of a variant on a dataset (a dataset's own scale wins when augmenting)."""
    scale = variant_settings(config, variant)["augmentation_scale"]
    if scale > 1:
        scale = config["datasets"][dataset].get("augmentation_scale", scale)
    return int(scale)


def tta_views(config: dict[str, Any], variant: str) -> list[list[str]]:
    """The test-time augmentation views of a variant ([] = no TTA); a name stands for one of
    :data:`ddpmseg.prediction.views.NAMED_TTA_VIEWS`."""
    views = variant_settings(config, variant)["tta_views"]
    if isinstance(views, str):
        if views not in NAMED_TTA_VIEWS:
            raise DdpmsegError(
                f"variants.{variant}.tta_views: '{views}' is not one of {', '.join(NAMED_TTA_VIEWS)} or a list of views"
            )
        return [list(view) for view in NAMED_TTA_VIEWS[views]]
    return [list(view) for view in views]


def feature_source(config: dict[str, Any], variant: str) -> str:
    """What a variant classifies each pixel from: ``ddpm`` (the method's DDPM features) or ``rgb``
    (the RGB control: the pixel's own values, :mod:`ddpmseg.features.rgb`)."""
    return variant_settings(config, variant)["features"]


def classifier_settings(config: dict[str, Any], variant: str) -> TrainSettings:
    """The member-training settings of a variant."""
    return TrainSettings.of(variant_settings(config, variant))
