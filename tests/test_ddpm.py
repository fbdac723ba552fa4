"""Checkpoints, model flags and their errors."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FLAGS

from ddpmseg.ddpm import (
    PAPER_MODEL_FLAGS,
    build_model_and_diffusion,
    check_feature_settings,
    decoder_block_count,
    load_ddpm,
    model_flags,
    read_checkpoint,
    train_ddpm,
)
from ddpmseg.errors import DdpmsegError
from ddpmseg.features import extract_activations, shared_noise


def test_decoder_block_count_matches_built_model() -> None:
    assert decoder_block_count(TINY_FLAGS) == len(build_model_and_diffusion(TINY_FLAGS)[0].output_blocks)
    assert decoder_block_count(PAPER_MODEL_FLAGS) == 18  # docs/method.md §2


def test_feature_settings_are_checked() -> None:
    check_feature_settings(TINY_FLAGS, [0, 999], [0, 3])
    with pytest.raises(DdpmsegError, match=r"features.steps: step 1000 is outside \[0, diffusion_steps=1000\)"):
        check_feature_settings(TINY_FLAGS, [50, 1000], [0])
    with pytest.raises(DdpmsegError, match=r"features.blocks: block 4 is beyond the model's 4 decoder blocks"):
        check_feature_settings(TINY_FLAGS, [50], [1, 4])


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(DdpmsegError, match="model flag 'num_chanels'"):
        model_flags({"num_chanels": 3})


def test_trained_checkpoint_loads_weights_only_and_gives_identical_activations(tmp_path) -> None:
    torch.manual_seed(0)
    model, diffusion = build_model_and_diffusion(TINY_FLAGS)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    losses = train_ddpm(model, diffusion, images.numpy(), iterations=3, batch_size=2, lr=1e-4, seed=0)
    assert len(losses) == 3
    torch.save(model.state_dict(), tmp_path / "trained.pt")
    state = torch.load(tmp_path / "trained.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded, loaded_diffusion = load_ddpm(tmp_path / "trained.pt", TINY_FLAGS, device="cpu")
    noise = shared_noise(0, 32)
    ours = extract_activations(model.eval(), diffusion, images[:2], [50, 500], [1, 3], noise)
    theirs = extract_activations(loaded, loaded_diffusion, images[:2], [50, 500], [1, 3], noise)
    assert list(ours) == [(50, 1), (50, 3), (500, 1), (500, 3)]
    for key in ours:
        assert torch.equal(ours[key], theirs[key])


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"learn_sigma": False}, r"parameter 'out\.2\.weight' has shape \(6, 32, 3, 3\) in the checkpoint but \(3, 32, 3, 3\) in the model; check flag learn_sigma \(the checkpoint fits learn_sigma=True\)"),
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
