"""Segmenter settings: one object built from a config or from plain values, normalised, and bad values
refused with one line."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import FEATURE_BLOCKS, TINY_CONFIG, TINY_FLAGS, resolved_tiny_config, segmenter_settings

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.flags import model_flags
from ddpmseg.use.settings import SegmenterSettings


def test_values_are_normalised_and_plain_values_give_them_back() -> None:
    made = SegmenterSettings(**segmenter_settings())
    assert made.ddpm_flags == model_flags(TINY_FLAGS)
    assert made.blocks == tuple(sorted(FEATURE_BLOCKS)) and made.palette == ((0, 0, 0), (255, 0, 0))
    plain = made.plain()
    assert json.loads(json.dumps(plain)) == plain  # JSON values: a rule's params, a manifest
    assert plain["blocks"] == sorted(FEATURE_BLOCKS) and plain["tta_views"] == [["HorizontalFlip"]]
    assert SegmenterSettings.from_plain(plain) == made


def test_a_run_of_the_config_gives_its_settings() -> None:
    config = resolved_tiny_config()
    run = SegmenterSettings.of_run(config, dataset="tiny", variant="final", seed=1)
    assert run.noise_seed == 1 and run.feature_source == "ddpm"
    assert run.steps == tuple(TINY_CONFIG["features"]["steps"]) and run.blocks == tuple(TINY_CONFIG["features"]["blocks"])
    assert run.tta_views == (("HorizontalFlip",), ("ToGray", "CoarseDropout"))
    assert run.class_names == tuple(TINY_CONFIG["datasets"]["tiny"]["class_names"])
    reordered = copy.deepcopy(config)
    reordered["features"]["blocks"] = list(reversed(config["features"]["blocks"]))
    assert SegmenterSettings.of_run(reordered, dataset="tiny", variant="final", seed=1) == run


def test_plain_values_with_a_missing_or_unknown_key_are_refused() -> None:
    plain = SegmenterSettings(**segmenter_settings()).plain()
    with pytest.raises(DdpmsegError, match="^segmenter setting 'tta_seed' is missing$"):
        SegmenterSettings.from_plain({k: v for k, v in plain.items() if k != "tta_seed"})
    with pytest.raises(DdpmsegError, match="^segmenter setting 'colour' is unknown"):
        SegmenterSettings.from_plain({**plain, "colour": "RGB"})


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"class_names": ["only one"]}, "1 class names for number_class 2"),
        ({"non_square": "stretch"}, "non_square 'stretch'"),
        ({"image_size": 64}, "image_size 64 differs"),
        ({"feature_source": "clip"}, "feature_source 'clip'"),
        ({"tta_views": [["Rotate"]]}, "unknown transform 'Rotate'"),
        ({"palette": [(0, 0, 0)]}, "palette"),
        ({"ignore_label": 300}, "8-bit label PNGs"),
        ({"blocks": [2, 2]}, "block 2 is listed twice"),
        ({"steps": []}, "DDPM features needs at least one feature step"),
    ],
)
def test_bad_settings_are_one_line_errors(change, pattern) -> None:
    with pytest.raises(DdpmsegError, match=pattern) as error:
        SegmenterSettings(**segmenter_settings(**change))
    assert "\n" not in str(error.value)
