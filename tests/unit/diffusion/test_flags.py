"""Model flags without torch: guided-diffusion's defaults, the flags' types, decoder blocks, feature settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, TINY_FLAGS

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config.load import SCHEMA
from ddpmseg.config.registry import paper_model_flags
from ddpmseg.diffusion.flags import (
    GUIDED_DIFFUSION_DEFAULTS,
    check_feature_settings,
    flag_type_problem,
    model_flags,
    model_order,
)


def test_defaults_are_the_installed_guided_diffusion_defaults_in_its_order() -> None:
    from guided_diffusion import script_util

    assert list(GUIDED_DIFFUSION_DEFAULTS.items()) == list(script_util.model_and_diffusion_defaults().items())
    assert list(model_flags({}).items()) == list(GUIDED_DIFFUSION_DEFAULTS.items())
    assert model_flags({"image_size": 32})["image_size"] == 32


def test_reading_flags_imports_no_torch() -> None:
    code = (
        "import sys; from ddpmseg.diffusion.flags import model_flags, check_feature_settings; "
        "check_feature_settings(model_flags({}), [50], [3]); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_feature_settings_are_checked() -> None:
    check_feature_settings(TINY_FLAGS, [0, 999], [0, 3])
    with pytest.raises(DdpmsegError, match=r"features.steps: step 1000 is outside \[0, diffusion_steps=1000\)"):
        check_feature_settings(TINY_FLAGS, [50, 1000], [0])
    with pytest.raises(DdpmsegError, match=r"features.blocks: block 4 is beyond the model's 4 decoder blocks"):
        check_feature_settings(TINY_FLAGS, [50], [1, 4])


def test_blocks_are_taken_in_model_order_and_once() -> None:
    assert model_order([12, 5, 8]) == [5, 8, 12]
    with pytest.raises(DdpmsegError, match=r"^features.blocks: block 5 is listed twice$"):
        model_order([5, 6, 5])


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(DdpmsegError, match="model flag 'num_chanels'"):
        model_flags({"num_chanels": 3})


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

    schema = yaml.safe_load(SCHEMA.read_text())["$defs"]["model_flags"]
    assert set(schema["properties"]) == set(GUIDED_DIFFUSION_DEFAULTS)
    jsonschema.Draft202012Validator(schema).validate(GUIDED_DIFFUSION_DEFAULTS)
    for flags in (GUIDED_DIFFUSION_DEFAULTS, TINY_FLAGS, paper_model_flags()):
        model_flags(flags)
    unlike = object()
    assert all(flag_type_problem(name, unlike) for name in GUIDED_DIFFUSION_DEFAULTS)  # each flag has a type
