"""Pixel features (docs/method.md §3): decoder activations of the DDPM at a few noise levels.

For each step t, x_t = q_sample(x0, t, noise) with ONE noise tensor shared by every image (drawn from
the noise seed: by default a run's own seed, as the reference does), the UNet runs on (x_t, t) and the
outputs of the chosen ``model.output_blocks`` are kept at their native resolution, in the model's block
order whatever order they are listed in. The forward pass stops after the last chosen block: later
blocks cannot change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .flags import model_order


class _StopForward(Exception):
    """Raised by the last hook to skip the decoder blocks after it."""


def shared_noise(seed: int, image_size: int) -> torch.Tensor:
    """The one N(0, I) noise of shape (1, 3, S, S), drawn on the CPU so every device sees the same values.

    The reference draws it from the GPU's generator when it runs on one; drawing on the CPU is this
    project's one deliberate departure (docs/method.md §7): features are identical across machines.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((1, 3, image_size, image_size), generator=generator)


@torch.no_grad()
def extract_activations(
    model: torch.nn.Module,
    diffusion: Any,
    images: torch.Tensor,
    *,
    steps: Sequence[int],
    blocks: Sequence[int],
    noise: torch.Tensor,
) -> dict[tuple[int, int], torch.Tensor]:
    """Decoder activations of a batch of images (B, 3, S, S) in [-1, 1].

    Returns ``{(step, block): tensor (B, C, h, w)}`` on the CPU in float32, in the order steps outer,
    blocks inner in the model's order (the feature order of docs/method.md §3).
    """
    blocks = model_order(blocks)
    device = next(model.parameters()).device
    x0 = images.to(device=device, dtype=torch.float32)
    noise = noise.to(device=device, dtype=torch.float32).expand_as(x0)
    last = max(blocks)
    captured: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def record(_module, _inputs, output):
            captured[index] = output.detach().float().cpu()
            if index == last:
                raise _StopForward

        return record

    handles = [model.output_blocks[b].register_forward_hook(hook(b)) for b in blocks]
    activations: dict[tuple[int, int], torch.Tensor] = {}
    try:
        for step in steps:
            t = torch.full((x0.shape[0],), int(step), device=device, dtype=torch.long)
            x_t = diffusion.q_sample(x0, t, noise=noise)
            captured.clear()
            try:
                model(x_t, diffusion._scale_timesteps(t))
            except _StopForward:
                pass
            for block in blocks:
                activations[(int(step), int(block))] = captured[block]
    finally:
        for handle in handles:
            handle.remove()
    return activations


