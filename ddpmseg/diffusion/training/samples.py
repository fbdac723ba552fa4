"""Samples from the trained (EMA) model, drawn at the end of training, as a grid for the report."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from ...base.progress import progress_bar

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # guided-diffusion uses deprecated torch.cuda.amp names
    from guided_diffusion import script_util


def sampling_diffusion(flags: dict[str, Any], steps: int) -> Any:
    """The flags' diffusion respaced to ``steps`` steps (guided-diffusion's SpacedDiffusion)."""
    return script_util.create_gaussian_diffusion(
        steps=flags["diffusion_steps"],
        learn_sigma=flags["learn_sigma"],
        noise_schedule=flags["noise_schedule"],
        use_kl=flags["use_kl"],
        predict_xstart=flags["predict_xstart"],
        rescale_timesteps=flags["rescale_timesteps"],
        rescale_learned_sigmas=flags["rescale_learned_sigmas"],
        timestep_respacing=str(steps),
    )


@torch.no_grad()
def draw_samples(
    model: torch.nn.Module, flags: dict[str, Any], *, count: int, steps: int, seed: int, progress: bool = False
) -> np.ndarray:
    """(count, S, S, 3) uint8 samples of ``model`` by ancestral sampling over ``steps`` respaced steps
    (guided-diffusion's ``p_sample_loop``, step by step for a progress bar)."""
    device = next(model.parameters()).device
    size = flags["image_size"]
    torch.manual_seed(seed)  # the sampling loop's own noise
    noise = torch.randn((count, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    diffusion = sampling_diffusion(flags, steps)
    with progress_bar(total=diffusion.num_timesteps, desc="draw DDPM samples", unit="step", disable=not progress) as bar:
        for sampled in diffusion.p_sample_loop_progressive(model, noise.shape, noise=noise, device=device):
            bar.update(1)
    images = sampled["sample"]
    model.train(was_training)
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


SAMPLE_MIN_SIDE = 128  # px: a sample is shown at least this large (32 or 64 px samples are enlarged)


def sample_grid(samples: np.ndarray, gap: int = 4, min_side: int = SAMPLE_MIN_SIDE) -> np.ndarray:
    """The samples side by side in a near-square grid on white, each repeated pixel by pixel (nearest
    neighbour, an integer factor) until it is at least ``min_side`` px, so a 32 px sample can be seen."""
    factor = max(1, math.ceil(min_side / samples.shape[1]))
    samples = np.repeat(np.repeat(samples, factor, axis=1), factor, axis=2)
    count, size = len(samples), samples.shape[1]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * size + (rows - 1) * gap, columns * size + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    for index, sample in enumerate(samples):
        row, column = divmod(index, columns)
        top, left = row * (size + gap), column * (size + gap)
        grid[top : top + size, left : left + size] = sample
    return grid
