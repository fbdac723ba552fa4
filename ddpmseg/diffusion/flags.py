"""guided-diffusion's model flags (``create_model_and_diffusion`` arguments) and what follows from them
without building the model: their defaults, their types, the number of decoder blocks, the feature steps
and blocks they allow.

No torch here: reading a config (every parse of the Snakefile) checks its flags with this module alone.
The defaults are guided-diffusion's ``script_util.model_and_diffusion_defaults()`` written out, in its
order (tests/unit/diffusion/test_flags.py holds them equal to the installed library's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..base.errors import DdpmsegError
from .diffusers_folder import decoder_blocks, diffusers_flags, is_diffusers

GUIDED_DIFFUSION_DEFAULTS: dict[str, Any] = {
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4, "num_heads_upsample": -1,
    "num_head_channels": -1, "attention_resolutions": "16,8", "channel_mult": "", "dropout": 0.0,
    "class_cond": False, "use_checkpoint": False, "use_scale_shift_norm": True, "resblock_updown": False,
    "use_fp16": False, "use_new_attention_order": False, "learn_sigma": False, "diffusion_steps": 1000,
    "noise_schedule": "linear", "timestep_respacing": "", "use_kl": False, "predict_xstart": False,
    "rescale_timesteps": False, "rescale_learned_sigmas": False,
}

DEFAULT_CHANNEL_MULT = {512: 7, 256: 6, 128: 5, 64: 4}


# The type of every create_model_and_diffusion argument (workflow/schemas/config.schema.yaml types the
# same flags for the config; this check covers uses outside Snakemake).
_BOOLEAN_FLAGS = (
    "class_cond", "learn_sigma", "predict_xstart", "rescale_learned_sigmas", "rescale_timesteps", "resblock_updown",
    "use_checkpoint", "use_fp16", "use_kl", "use_new_attention_order", "use_scale_shift_norm",
)
_INTEGER_FLAGS = (
    "diffusion_steps", "image_size", "num_channels", "num_head_channels", "num_heads", "num_heads_upsample",
    "num_res_blocks",
)
_NUMBER_FLAGS = ("dropout",)
# Comma lists of integers, as guided-diffusion parses them; channel_mult may be "" (the image size's default).
_INTEGER_LIST_FLAGS = {"attention_resolutions": (r"\d+(,\d+)*", "32,16,8"), "channel_mult": (r"(\d+(,\d+)*)?", "1,1,2,2,4,4")}
_CHOICE_FLAGS = {"noise_schedule": ("linear", "cosine")}
_STRING_FLAGS = {"timestep_respacing": r"(ddim\d+|\d+(,\d+)*)?"}


def flag_type_problem(name: str, value: Any) -> str | None:
    """What is wrong with the type of model flag ``name`` = ``value`` (None when it is right)."""
    if name in _BOOLEAN_FLAGS:
        return None if isinstance(value, bool) else "true or false"
    if name in _INTEGER_FLAGS:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if name in _NUMBER_FLAGS:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if name in _INTEGER_LIST_FLAGS:
        pattern, example = _INTEGER_LIST_FLAGS[name]
        fits = isinstance(value, str) and re.fullmatch(pattern, value)
        return None if fits else f'a quoted string of comma-separated integers (e.g. "{example}")'
    if name in _CHOICE_FLAGS:
        return None if value in _CHOICE_FLAGS[name] else f"one of {', '.join(_CHOICE_FLAGS[name])}"
    if name in _STRING_FLAGS:
        fits = isinstance(value, str) and re.fullmatch(_STRING_FLAGS[name], value)
        return None if fits else 'a string: "", "ddimN" or comma-separated integers'
    return None


def model_flags(overrides: dict[str, Any]) -> dict[str, Any]:
    """guided-diffusion's ``model_and_diffusion_defaults()`` updated with ``overrides``; unknown flags
    and flags of the wrong type fail with one line naming the flag. A diffusers DDPM's description
    (:mod:`ddpmseg.diffusion.diffusers_folder`) is checked and completed instead."""
    if is_diffusers(overrides):
        return diffusers_flags(overrides)
    flags = dict(GUIDED_DIFFUSION_DEFAULTS)
    unknown = sorted(set(overrides) - set(flags))
    if unknown:
        raise DdpmsegError(
            f"model flag '{unknown[0]}' is not a guided-diffusion create_model_and_diffusion argument"
        )
    for name, value in overrides.items():
        expected = flag_type_problem(name, value)
        if expected:
            raise DdpmsegError(f"model flag '{name}' must be {expected}, not {value!r}")
    flags.update(overrides)
    return flags


def decoder_block_count(flags: dict[str, Any]) -> int:
    """Number of ``model.output_blocks`` the flags give (of a diffusers UNet's decoder blocks), without
    building the model."""
    flags = model_flags(flags)
    if is_diffusers(flags):
        return len(decoder_blocks(flags))
    if flags["channel_mult"]:
        levels = len(str(flags["channel_mult"]).split(","))
    elif flags["image_size"] in DEFAULT_CHANNEL_MULT:
        levels = DEFAULT_CHANNEL_MULT[flags["image_size"]]
    else:
        raise DdpmsegError(
            f"model flag image_size={flags['image_size']} needs an explicit channel_mult"
        )
    return levels * (flags["num_res_blocks"] + 1)


def check_feature_settings(flags: dict[str, Any], steps: Sequence[int], blocks: Sequence[int]) -> None:
    """Steps must lie in [0, diffusion_steps) and blocks among the model's decoder blocks."""
    flags = model_flags(flags)
    for step in steps:
        if not 0 <= step < flags["diffusion_steps"]:
            raise DdpmsegError(
                f"features.steps: step {step} is outside [0, diffusion_steps={flags['diffusion_steps']})"
            )
    count = decoder_block_count(flags)
    for block in blocks:
        if not 0 <= block < count:
            raise DdpmsegError(
                f"features.blocks: block {block} is beyond the model's {count} decoder blocks (0..{count - 1})"
            )


def model_order(blocks: Sequence[int]) -> list[int]:
    """Decoder blocks in the model's order (the reference concatenates them so, whatever the config's
    order); a block listed twice is an error."""
    ordered = sorted(int(b) for b in blocks)
    repeated = sorted({b for b in ordered if ordered.count(b) > 1})
    if repeated:
        raise DdpmsegError(f"features.blocks: block {repeated[0]} is listed twice")
    return ordered
