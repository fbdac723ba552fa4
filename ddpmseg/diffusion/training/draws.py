"""Every random draw of DDPM training, from (seed, iteration) alone: the order of the images, their flips,
the timesteps (guided-diffusion's samplers' importance sampling), the diffusion noise and torch's seed for
dropout. A resumed or a distributed run draws exactly what an uninterrupted single-process run draws."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # guided-diffusion uses deprecated torch.cuda.amp names
    from guided_diffusion import resample


# Tags that keep the random streams of one seed apart (see random_stream).
# Tags that keep the random streams of one seed apart (see random_stream).
EPOCH_ORDER, STEP_DRAWS, SAMPLE_NOISE, TORCH_SEED = 0, 1, 2, 3


def random_stream(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by (seed, keys) alone."""
    return np.random.default_rng([seed, *keys])


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    return random_stream(seed, EPOCH_ORDER, epoch).permutation(count)


def batch_indices(seed: int, step: int, batch_size: int, count: int) -> np.ndarray:
    """Which images form global batch ``step``: positions step*B .. step*B+B-1 of the concatenated
    per-epoch permutations (a batch may straddle two epochs)."""
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, count)
    orders = {int(epoch): epoch_order(seed, int(epoch), count) for epoch in np.unique(epochs)}
    return np.array([orders[int(epoch)][offset] for epoch, offset in zip(epochs, offsets)], dtype=np.int64)


class _LossSecondMomentSampler(resample.LossSecondMomentResampler):
    """guided-diffusion's loss-second-moment sampler; its ``__init__`` uses ``np.int``, which NumPy 1.24
    removed, so the same history arrays are made here with ``np.int64``."""

    def __init__(self, diffusion: Any, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        self.diffusion = diffusion
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self._loss_history = np.zeros([diffusion.num_timesteps, history_per_term], dtype=np.float64)
        self._loss_counts = np.zeros([diffusion.num_timesteps], dtype=np.int64)


def schedule_sampler(name: str, diffusion: Any) -> resample.ScheduleSampler:
    try:
        return resample.create_named_schedule_sampler(name, diffusion)
    except AttributeError:
        if name != "loss-second-moment":
            raise
        return _LossSecondMomentSampler(diffusion)


def sampler_state(sampler: resample.ScheduleSampler) -> dict[str, torch.Tensor]:
    if not isinstance(sampler, resample.LossSecondMomentResampler):
        return {}
    return {
        "loss_history": torch.from_numpy(sampler._loss_history.copy()),
        "loss_counts": torch.from_numpy(sampler._loss_counts.astype(np.int64)),
    }


def restore_sampler(sampler: resample.ScheduleSampler, state: Mapping[str, torch.Tensor]) -> None:
    if isinstance(sampler, resample.LossSecondMomentResampler) and state:
        sampler._loss_history = state["loss_history"].numpy().astype(np.float64)
        sampler._loss_counts = state["loss_counts"].numpy().astype(np.int64)


def step_draws(seed: int, step: int, batch_size: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iteration ``step``'s flips, timesteps and importance weights for the global batch (the sampler's
    importance sampling, as guided-diffusion's ``ScheduleSampler.sample``, from a generator of (seed, step))."""
    rng = random_stream(seed, STEP_DRAWS, step)
    flips = rng.random(batch_size) < 0.5
    probabilities = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    timesteps = rng.choice(len(probabilities), size=batch_size, p=probabilities)
    importance = 1.0 / (len(probabilities) * probabilities[timesteps])
    return flips, timesteps, importance


def sample_noise(seed: int, step: int, positions: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """The diffusion noise of the global batch's samples at ``positions`` (one generator per sample, so a
    rank draws only its share)."""
    noise = [random_stream(seed, SAMPLE_NOISE, step, int(p)).standard_normal(shape, dtype=np.float32) for p in positions]
    return torch.from_numpy(np.stack(noise))


def torch_seed(seed: int, step: int, rank: int) -> int:
    return int(random_stream(seed, TORCH_SEED, step, rank).integers(2**63))
