"""Diffusers DDPMs: loading a folder, its noising against guided-diffusion's, and its decoder activations
against a forward pass of the UNet written out here."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from conftest import make_diffusers_folder

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.diffusion.diffusers_folder import decoder_blocks, folder_files, read_flags
from ddpmseg.diffusion.model import feature_width, forward_profile, load_ddpm

pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install -e '.[diffusers]'")


def _gaussian_diffusion(betas):
    from guided_diffusion.gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType

    return GaussianDiffusion(betas=betas, model_mean_type=ModelMeanType.EPSILON,
                             model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)


def test_add_noise_is_guided_diffusions_q_sample(diffusers_folder) -> None:
    from guided_diffusion.gaussian_diffusion import get_named_beta_schedule

    _, noising = load_ddpm(diffusers_folder, read_flags(diffusers_folder), "cpu")
    scheduler_betas = noising.scheduler.betas.double().numpy()
    paper_betas = get_named_beta_schedule("linear", 1000)  # the paper's diffusion: linear, 1000 steps
    assert (abs(scheduler_betas - paper_betas) / paper_betas).max() < 1e-6  # float32 rounding of the same schedule
    x0 = torch.rand(4, 3, 32, 32) * 2 - 1
    noise = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 50, 400, 999])
    ours = noising.q_sample(x0, t, noise=noise)
    for betas in (scheduler_betas, paper_betas):
        theirs = _gaussian_diffusion(betas).q_sample(x0, t, noise=noise)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-5)
    assert not torch.allclose(ours[1], x0[1])  # the noise is added
    assert torch.equal(noising._scale_timesteps(t), t)  # the UNet takes the step itself


def _manual_decoder_outputs(unet, x: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
    """The UNet2DModel's forward pass written out module by module (as its blocks compose their
    resnets, attentions and resamplers), returning the output of each decoder layer: the up blocks'
    resnet, then its attention, then (the last layer of a level) its upsampler."""
    emb = unet.time_embedding(unet.time_proj(t).to(x.dtype))
    h = unet.conv_in(x)
    skips = [h]
    for down in unet.down_blocks:
        for j, resnet in enumerate(down.resnets):
            h = resnet(h, emb)
            if getattr(down, "attentions", None) is not None:
                h = down.attentions[j](h)
            skips.append(h)
        for downsampler in down.downsamplers or []:
            h = downsampler(h)
            skips.append(h)
    mid = unet.mid_block
    h = mid.resnets[0](h, emb)
    for attention, resnet in zip(mid.attentions, mid.resnets[1:], strict=True):
        h = resnet(attention(h, temb=emb), emb)
    outputs = []
    for up in unet.up_blocks:
        for j, resnet in enumerate(up.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if getattr(up, "attentions", None) is not None:
                h = up.attentions[j](h)
            if j == len(up.resnets) - 1:
                for upsampler in up.upsamplers or []:
                    h = upsampler(h)
            outputs.append(h)
    assert not skips
    return outputs


def test_hooked_activations_are_the_decoder_layers_of_a_forward_pass(diffusers_folder) -> None:
    flags = read_flags(diffusers_folder)
    model, noising = load_ddpm(diffusers_folder, flags, "cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = shared_noise(5, 32)
    activations = extract_activations(model, noising, images, steps=[10, 700], blocks=[3, 0, 1, 2], noise=noise)
    assert list(activations) == [(s, b) for s in (10, 700) for b in range(4)]  # steps outer, blocks in model order
    for step in (10, 700):
        t = torch.full((2,), step)
        x_t = noising.scheduler.add_noise(images, noise.expand_as(images), t)
        with torch.no_grad():
            expected = _manual_decoder_outputs(model.unet, x_t, t)
        for block, value in enumerate(expected):
            torch.testing.assert_close(activations[(step, block)], value, rtol=1e-5, atol=1e-5)
    for (_, block), value in activations.items():  # the guided-diffusion path's format
        layer = decoder_blocks(flags)[block]
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        assert tuple(value.shape) == (2, layer.channels, layer.resolution, layer.resolution)


def test_the_forward_pass_stops_after_the_last_block_asked_for(diffusers_folder) -> None:
    model, noising = load_ddpm(diffusers_folder, read_flags(diffusers_folder), "cpu")
    ran = []
    later = [model.unet.up_blocks[1].resnets[1], model.unet.conv_norm_out, model.unet.conv_out]
    handles = [module.register_forward_hook(lambda *_, m=module: ran.append(m)) for module in later]
    activations = extract_activations(model, noising, torch.zeros(1, 3, 32, 32), steps=[5], blocks=[2, 0],
                                      noise=shared_noise(0, 32))
    assert list(activations) == [(5, 0), (5, 2)] and ran == []
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32), torch.tensor([5]))  # the hooks of extraction are gone: a whole pass
    assert ran == later
    for handle in handles:
        handle.remove()


def test_shapes_and_width_from_a_meta_pass_match_the_block_table(diffusers_folder) -> None:
    flags = read_flags(diffusers_folder)
    shapes, flops = forward_profile(flags, [0, 1, 2, 3])
    assert {b: shape[1:] for b, shape in shapes.items()} == {
        b.index: (b.channels, b.resolution, b.resolution) for b in decoder_blocks(flags)
    }
    assert flops > forward_profile(flags, [0])[1] > 0  # a pass stopped earlier costs less
    assert feature_width(flags, [10, 20], [1, 3]) == 2 * (64 + 32)


def test_a_rules_list_of_the_folders_files_loads_the_folder(diffusers_folder) -> None:
    files = [str(path) for path in folder_files(diffusers_folder)]
    model, _ = load_ddpm(files, read_flags(diffusers_folder), "cpu")
    assert model.dtype == torch.float32 and not model.training and len(model.output_blocks) == 4


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, diffusers_folder) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(diffusers_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("conv_out.weight")  # diffusers would initialise it at random and only warn
    save_file(state, weights)
    with pytest.raises(DdpmsegError, match=r"unet: the weights lack conv_out.weight"):
        load_ddpm(folder, read_flags(folder), "cpu")


def test_a_folder_that_is_not_the_recorded_ddpm_is_refused(tmp_path, diffusers_folder) -> None:
    folder = tmp_path / "wider"
    shutil.copytree(diffusers_folder, folder)
    config = folder / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "norm_eps": 1e-6}))
    with pytest.raises(DdpmsegError, match=r"its configs differ from the DDPM's recorded description \(unet norm_eps\)"):
        load_ddpm(folder, read_flags(diffusers_folder), "cpu")


def test_a_flat_folder_loads_the_same_model(tmp_path, diffusers_folder) -> None:
    """The google/ddpm-* layout (the three files at the folder's top): the same weights, the same features."""
    flat = make_diffusers_folder(tmp_path / "flat", layout="flat")
    assert not (flat / "unet").exists() and (flat / "config.json").is_file()
    images, noise = torch.rand(1, 3, 32, 32) * 2 - 1, shared_noise(3, 32)
    features = []
    for folder in (diffusers_folder, flat):
        model, noising = load_ddpm(folder, read_flags(folder), "cpu")
        features.append(extract_activations(model, noising, images, steps=[100], blocks=[1, 3], noise=noise))
    assert list(features[0]) == list(features[1]) == [(100, 1), (100, 3)]
    for key, value in features[0].items():
        assert torch.equal(value, features[1][key])


def test_loading_without_the_extra_is_one_line_naming_it(diffusers_folder, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as where the extra is not installed
    with pytest.raises(DdpmsegError) as error:
        load_ddpm(diffusers_folder, read_flags(diffusers_folder), "cpu")
    assert str(error.value) == (f"{diffusers_folder}: a diffusers DDPM needs the diffusers extra; install it: "
                                "pip install -e '.[diffusers]'")
