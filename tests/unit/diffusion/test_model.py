"""Building the UNet, loading checkpoints, and their errors."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY_FLAGS

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config.registry import paper_model_flags
from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.diffusion.flags import decoder_block_count
from ddpmseg.diffusion.model import build_model_and_diffusion, load_ddpm, read_checkpoint


def test_decoder_block_count_matches_built_model() -> None:
    assert decoder_block_count(TINY_FLAGS) == len(build_model_and_diffusion(TINY_FLAGS)[0].output_blocks)
    assert decoder_block_count(paper_model_flags()) == 18  # docs/method.md §2


def test_trained_checkpoint_loads_weights_only_and_gives_identical_activations(tmp_path) -> None:
    torch.manual_seed(0)
    model, diffusion = build_model_and_diffusion(TINY_FLAGS)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # weights moved away from their initialisation, as training moves them
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    torch.save(model.state_dict(), tmp_path / "trained.pt")
    state = torch.load(tmp_path / "trained.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded, loaded_diffusion = load_ddpm(tmp_path / "trained.pt", TINY_FLAGS, device="cpu")
    noise = shared_noise(0, 32)
    ours = extract_activations(model.eval(), diffusion, images[:2], steps=[50, 500], blocks=[1, 3], noise=noise)
    theirs = extract_activations(loaded, loaded_diffusion, images[:2], steps=[50, 500], blocks=[1, 3], noise=noise)
    assert list(ours) == [(50, 1), (50, 3), (500, 1), (500, 3)]
    for key in ours:
        assert torch.equal(ours[key], theirs[key])


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"learn_sigma": False}, r"parameter 'out\.2\.weight' has shape \(6, 32, 3, 3\) in the checkpoint but \(3, 32, 3, 3\) in the model; parameter 'out\.2\.bias' has shape \(6,\) in the checkpoint but \(3,\) in the model; check flag learn_sigma \(the checkpoint fits learn_sigma=True\)$"),
        ({"num_channels": 64}, r"parameter 'time_embed\.0\.weight' has shape .* check flag num_channels \(the checkpoint fits num_channels=32\)"),
        ({"use_scale_shift_norm": False}, r"emb_layers.* check flag use_scale_shift_norm \(the checkpoint fits use_scale_shift_norm=True\)"),
        ({"class_cond": True}, r"parameter 'label_emb\.weight' is missing from the checkpoint; check flag class_cond"),
        ({"num_res_blocks": 2}, r"parameter 'input_blocks\.\d+\..*' .*check flag num_res_blocks \(the checkpoint fits num_res_blocks=1\)"),
        ({"channel_mult": "1,2,2"}, r"check flag channel_mult \(the checkpoint fits channel_mult='1,2'\)"),
        ({"num_channels": 64, "learn_sigma": False}, r"no single flag change makes it fit"),
    ],
)
def test_checkpoint_that_does_not_fit_names_parameter_and_flag(tiny_checkpoint, change, pattern) -> None:
    with pytest.raises(DdpmsegError, match=pattern) as info:
        load_ddpm(tiny_checkpoint, {**TINY_FLAGS, **change}, device="cpu")
    assert str(tiny_checkpoint) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_checkpoint(tmp_path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(DdpmsegError, match="broken.pt: not a loadable state_dict"):
        read_checkpoint(path)
    with pytest.raises(DdpmsegError, match="missing.pt: checkpoint file does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"weights": torch.zeros(1), "extra": object()}, path)
    with pytest.raises(DdpmsegError, match="pickled.pt: not a loadable state_dict"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "change,candidates",
    [
        # The checkpoint was trained at 32 px: attention at 16 px is at downsampling 2. At 64 px the model
        # puts no attention there, and attention_resolutions="32" would move it back: both fit.
        ({"image_size": 64}, ("image_size=32", "attention_resolutions='32'")),
        # attention_resolutions="32" at 32 px puts attention at downsampling 1; image_size=64 moves it back.
        ({"attention_resolutions": "32"}, ("image_size=64", "attention_resolutions='16'")),
        ({"attention_resolutions": "8"}, ("image_size=16", "attention_resolutions='16'")),
    ],
)
def test_no_flag_is_named_when_several_single_changes_fit(tiny_checkpoint, change, candidates) -> None:
    with pytest.raises(DdpmsegError) as info:
        load_ddpm(tiny_checkpoint, {**TINY_FLAGS, **change}, device="cpu")
    message = str(info.value)
    assert "check flag" not in message  # the old hint claimed one of them (the wrong one for image_size)
    assert "several single-flag changes make it fit" in message
    assert all(candidate in message for candidate in candidates), message
    assert re.search(r"does not fit the model flags: parameter '[\w.]+' is missing from the checkpoint; "
                     r"parameter '[\w.]+' is missing.*; and \d+ more parameters differ;", message)
    assert "\n" not in message


def test_a_flag_is_named_when_it_alone_fits(tmp_path) -> None:
    # Without channel_mult, image_size also picks the levels: only image_size=64 makes a 64 px checkpoint fit.
    flags = {**TINY_FLAGS, "image_size": 64, "channel_mult": ""}
    model, _ = build_model_and_diffusion(flags)
    torch.save(model.state_dict(), tmp_path / "small64.pt")
    with pytest.raises(DdpmsegError, match=r"; check flag image_size \(the checkpoint fits image_size=64\)$"):
        load_ddpm(tmp_path / "small64.pt", {**flags, "image_size": 128}, device="cpu")
