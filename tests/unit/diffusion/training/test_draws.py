"""The seeded draws of DDPM training: every image once per epoch, in an order of (seed, epoch) alone."""

from __future__ import annotations

import numpy as np

from ddpmseg.diffusion.training.draws import batch_indices, epoch_order


def test_every_image_is_seen_once_per_epoch_in_a_seeded_order():
    count, batch = 5, 2
    seen = np.concatenate([batch_indices(3, step, batch, count) for step in range(5)])  # 10 = two epochs
    assert sorted(seen[:5]) == list(range(5)) and sorted(seen[5:]) == list(range(5))
    assert seen[:5].tolist() == epoch_order(3, 0, count).tolist()
    assert batch_indices(3, 2, batch, count).tolist() == seen[4:6].tolist()  # a batch across epochs
    assert not np.array_equal(epoch_order(3, 0, 50), epoch_order(3, 1, 50))
    assert not np.array_equal(epoch_order(3, 0, 50), epoch_order(4, 0, 50))
