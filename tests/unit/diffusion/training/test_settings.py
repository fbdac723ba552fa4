"""DDPM training settings: each checked, one line naming it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.flags import model_flags
from ddpmseg.diffusion.training.samples import sampling_diffusion

from .conftest import FLAGS, SETTINGS


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("batch_size", 0, "batch_size must be a whole number >= 1"), ("ema_rate", 1.5, "ema_rate must be a number in"),
     ("schedule_sampler", "importance", "schedule_sampler must be one of uniform, loss-second-moment"),
     ("fp16", "yes", "fp16 must be true or false"),
     ("sample_steps", 1, "sample_steps must be a whole number >= 2")],
)
def test_bad_settings_are_one_line_naming_the_setting(name, value, message):
    with pytest.raises(DdpmsegError, match=message):
        replace(SETTINGS, **{name: value})


def test_the_fewest_sample_steps_allowed_draw_samples():
    """Two respaced steps work; one made guided-diffusion fail, after the whole training."""
    assert sampling_diffusion(model_flags(FLAGS), 2).num_timesteps == 2
    with pytest.raises(IndexError):
        sampling_diffusion(model_flags(FLAGS), 1)
