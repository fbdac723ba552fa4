"""Samples of the trained model: guided-diffusion's sampling loop with a progress bar per step, as a grid."""

from __future__ import annotations

import numpy as np
import torch

from ddpmseg.diffusion.flags import model_flags
from ddpmseg.diffusion.model import build_model_and_diffusion
from ddpmseg.diffusion.training.samples import draw_samples, sample_grid, sampling_diffusion

from .conftest import FLAGS


def test_samples_are_guided_diffusions_sampling_loop_shown_step_by_step(capsys):
    flags = model_flags(FLAGS)
    torch.manual_seed(0)
    model, _ = build_model_and_diffusion(flags)
    shown = draw_samples(model, flags, count=2, steps=3, seed=4, progress=True)
    bar = capsys.readouterr().err
    assert "draw DDPM samples" in bar and "3/3" in bar
    torch.manual_seed(4)
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(4))
    model.eval()
    expected = sampling_diffusion(flags, 3).p_sample_loop(model, noise.shape, noise=noise)
    assert np.array_equal(shown, ((expected + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    quiet = draw_samples(model, flags, count=2, steps=3, seed=4)
    assert capsys.readouterr().err == "" and np.array_equal(quiet, shown)


def test_sample_grid_places_samples_row_by_row():
    samples = np.stack([np.full((4, 4, 3), value, dtype=np.uint8) for value in (10, 20, 30)])
    grid = sample_grid(samples, gap=1, min_side=4)
    assert grid.shape == (9, 9, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 5, 0] == 20 and grid[5, 0, 0] == 30 and grid[5, 5, 0] == 255


def test_small_samples_are_enlarged_pixel_by_pixel():
    sample = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    grid = sample_grid(sample)  # 32 px: 4 x 4 screen pixels per sample pixel, at least 128 px
    assert grid.shape == (128, 128, 3)
    assert np.array_equal(grid[::4, ::4], sample[0]) and np.array_equal(grid[3::4, 3::4], sample[0])
