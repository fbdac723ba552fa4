"""DDPM training settings: each checked, one line naming it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ddpmseg.base.errors import DdpmsegError

from .conftest import SETTINGS


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("batch_size", 0, "batch_size must be a whole number >= 1"), ("ema_rate", 1.5, "ema_rate must be a number in"),
     ("schedule_sampler", "importance", "schedule_sampler must be one of uniform, loss-second-moment"),
     ("fp16", "yes", "fp16 must be true or false")],
)
def test_bad_settings_are_one_line_naming_the_setting(name, value, message):
    with pytest.raises(DdpmsegError, match=message):
        replace(SETTINGS, **{name: value})
