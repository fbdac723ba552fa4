"""Samples of the trained model, as a grid."""

from __future__ import annotations

import numpy as np

from ddpmseg.diffusion.training.samples import sample_grid


def test_sample_grid_places_samples_row_by_row():
    samples = np.stack([np.full((4, 4, 3), value, dtype=np.uint8) for value in (10, 20, 30)])
    grid = sample_grid(samples, gap=1)
    assert grid.shape == (9, 9, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 5, 0] == 20 and grid[5, 0, 0] == 30 and grid[5, 5, 0] == 255
