"""Decoder activations: the shared noise of a seed, the order of the layers, the forward pass cut after
the last block asked for."""

from __future__ import annotations

import torch
from conftest import TINY_FLAGS

from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.diffusion.model import build_model_and_diffusion


def test_the_noise_of_a_seed_is_one_cpu_draw_shared_by_every_image() -> None:
    noise = shared_noise(3, 32)
    assert noise.shape == (1, 3, 32, 32) and noise.device.type == "cpu"
    assert torch.equal(noise, shared_noise(3, 32))
    assert torch.equal(noise, torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(noise, shared_noise(4, 32))


def test_layers_come_steps_outer_blocks_inner_and_later_blocks_never_run() -> None:
    torch.manual_seed(0)
    model, diffusion = build_model_and_diffusion(TINY_FLAGS)
    model.eval()
    ran = []
    last = len(model.output_blocks) - 1
    model.output_blocks[last].register_forward_hook(lambda *_: ran.append(last))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    activations = extract_activations(model, diffusion, images, steps=[10, 400], blocks=[2, 0], noise=shared_noise(0, 32))
    assert list(activations) == [(10, 0), (10, 2), (400, 0), (400, 2)]
    assert ran == []  # the pass stopped after block 2
    for (step, block), value in activations.items():
        assert value.dtype == torch.float32 and value.shape[0] == 2
    # the same images through the whole model give the same block outputs
    captured = {}
    handle = model.output_blocks[2].register_forward_hook(lambda _m, _i, out: captured.setdefault("b2", out))
    t = torch.full((2,), 400, dtype=torch.long)
    with torch.no_grad():
        model(diffusion.q_sample(images, t, noise=shared_noise(0, 32).expand_as(images)), diffusion._scale_timesteps(t))
    handle.remove()
    torch.testing.assert_close(activations[(400, 2)], captured["b2"], rtol=0, atol=0)
