"""Checkpoints, model flags and their errors."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY_FLAGS

from ddpmseg.config.checks import SCHEMA
from ddpmseg.diffusion.model import (
    build_model_and_diffusion,
    check_feature_settings,
    decoder_block_count,
    load_ddpm,
    model_flags,
    read_checkpoint,
)
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.config.registry import paper_model_flags


def test_decoder_block_count_matches_built_model() -> None:
    assert decoder_block_count(TINY_FLAGS) == len(build_model_and_diffusion(TINY_FLAGS)[0].output_blocks)
    assert decoder_block_count(paper_model_flags()) == 18  # docs/method.md §2


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


@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("num_res_blocks", "1", "an integer"),
        ("num_channels", True, "an integer"),
        ("learn_sigma", "yes", "true or false"),
        ("learn_sigma", "false", "true or false"),
        ("use_fp16", 1, "true or false"),
        ("dropout", "0.1", "a number"),
        ("attention_resolutions", 16, "a quoted string of comma-separated integers"),
        ("channel_mult", "0.5,1,2", "a quoted string of comma-separated integers"),
        ("noise_schedule", "cos", "one of linear, cosine"),
        ("timestep_respacing", 250, "a string"),
    ],
)
def test_flags_of_the_wrong_type_are_refused(flag, value, expected) -> None:
    with pytest.raises(DdpmsegError) as info:
        model_flags({**TINY_FLAGS, flag: value})
    assert str(info.value) == f"model flag '{flag}' must be {expected}" + str(info.value).split(expected, 1)[1]
    assert str(info.value).endswith(f"not {value!r}")


def test_every_guided_diffusion_flag_is_typed_here_and_in_the_schema() -> None:
    import jsonschema
    import yaml
    from guided_diffusion import script_util

    from ddpmseg.diffusion.model import flag_type_problem

    defaults = script_util.model_and_diffusion_defaults()
    schema = yaml.safe_load(SCHEMA.read_text())["$defs"]["model_flags"]
    assert set(schema["properties"]) == set(defaults)
    jsonschema.Draft202012Validator(schema).validate(defaults)
    for flags in (defaults, TINY_FLAGS, paper_model_flags()):
        model_flags(flags)
    unlike = object()
    assert all(flag_type_problem(name, unlike) for name in defaults)  # each flag has a type
