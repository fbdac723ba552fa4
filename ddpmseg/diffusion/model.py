"""Guided-diffusion DDPMs: build from model flags, load checkpoints (training: :mod:`ddpmseg.diffusion.training.loop`).

Only ``guided_diffusion.script_util``/``unet``/``gaussian_diffusion``/``resample`` are imported:
``dist_util`` needs MPI.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..base.errors import DdpmsegError
from .diffusers_folder import ddpm_location, is_diffusers
from .flags import decoder_block_count, model_flags

with warnings.catch_warnings():
    # guided-diffusion decorates with the deprecated torch.cuda.amp.custom_fwd at import time
    warnings.simplefilter("ignore", FutureWarning)
    from guided_diffusion import script_util


def select_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model_and_diffusion(flags: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """A float32 UNet and its diffusion, from model flags (fp16 conversion is left to :func:`load_ddpm`); a
    diffusers description gives its UNet and scheduler (:mod:`ddpmseg.diffusion.diffusers_model`)."""
    if is_diffusers(flags):
        from .diffusers_model import build_diffusers_ddpm

        return build_diffusers_ddpm(flags)
    flags = dict(model_flags(flags), use_fp16=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return script_util.create_model_and_diffusion(**flags)


# Single-flag changes tried when a checkpoint does not fit, to name the flag that differs (image_size,
# attention_resolutions and num_channels get more values from the flags and the checkpoint, see
# _candidate_values).
_FLAG_CANDIDATES: dict[str, list[Any]] = {
    "learn_sigma": [True, False],
    "class_cond": [True, False],
    "use_scale_shift_norm": [True, False],
    "resblock_updown": [True, False],
    "num_res_blocks": [1, 2, 3, 4],
    "num_channels": [32, 64, 96, 128, 192, 224, 256, 320, 384],
    "image_size": [8, 16, 32, 64, 128, 256, 512, 1024],
    "attention_resolutions": [],
    "channel_mult": ["", "1,1,2,2,4,4", "1,1,2,3,4", "1,2,3,4", "1,2,2,4", "1,2,2,2", "1,2,2", "1,2"],
}
_SHOWN_MISMATCHES = 3


def _parameter_shapes(flags: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model the flags build, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _attention_candidates(flags: dict[str, Any]) -> list[str]:
    """Every non-empty set of the resolutions the model passes through, as attention_resolutions values.

    Attention goes where ``image_size // resolution`` is a downsampling factor the model reaches, so
    these sets give every attention placement the flags' other values allow.
    """
    size = flags["image_size"]
    resolutions = [size // 2**level for level in range(decoder_block_count(flags) // (flags["num_res_blocks"] + 1))]
    return [
        ",".join(str(r) for r in subset)
        for count in range(1, len(resolutions) + 1)
        for subset in itertools.combinations(resolutions, count)
    ]


def _candidate_values(flags: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, list[Any]]:
    values = {name: list(options) for name, options in _FLAG_CANDIDATES.items()}
    values["image_size"] += [flags["image_size"] // 2, flags["image_size"] * 2]
    try:
        values["attention_resolutions"] = _attention_candidates(flags)
    except DdpmsegError:
        pass  # an image size without a default channel_mult: no placement to try
    stem = state.get("input_blocks.0.0.weight")
    if stem is not None and stem.dim() == 4:
        values["num_channels"].append(int(stem.shape[0]))
    return {name: list(dict.fromkeys(options)) for name, options in values.items()}


def fitting_flag_changes(state: dict[str, torch.Tensor], flags: dict[str, Any]) -> dict[str, list[Any]]:
    """Every single-flag change under which ``state`` has exactly the model's parameter names and shapes,
    as {flag: [values]}."""
    target = {key: tuple(value.shape) for key, value in state.items()}
    flags = model_flags(flags)
    fits: dict[str, list[Any]] = {}
    for name, values in _candidate_values(flags, state).items():
        for value in values:
            if value == flags[name]:
                continue
            try:
                if _parameter_shapes({**flags, name: value}) == target:
                    fits.setdefault(name, []).append(value)
            except (ValueError, AssertionError, KeyError, ZeroDivisionError, DdpmsegError):
                continue
    return fits


def _flag_hint(fits: dict[str, list[Any]]) -> str:
    """Name a flag only when changing it alone is the one way to make the checkpoint fit."""
    if not fits:
        return "check the model flags (no single flag change makes it fit)"
    if len(fits) == 1:
        (name, values), = fits.items()
        shown = " or ".join(f"{name}={value!r}" for value in values[:3])
        return f"check flag {name} (the checkpoint fits {shown})"
    changes = ", ".join(f"{name}={values[0]!r}" for name, values in fits.items())
    return (
        f"check the model flags: several single-flag changes make it fit ({changes}), "
        "so the checkpoint alone does not tell which flag is wrong"
    )


def parameter_mismatches(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> list[str]:
    """One phrase per parameter whose name or shape differs between the model and the checkpoint."""
    problems = []
    for key, shape in expected.items():
        if key not in found:
            problems.append(f"parameter '{key}' is missing from the checkpoint")
        elif found[key] != shape:
            problems.append(f"parameter '{key}' has shape {found[key]} in the checkpoint but {shape} in the model")
    problems += [f"the checkpoint has parameter '{key}' that the model lacks" for key in found if key not in expected]
    return problems


def check_state_dict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], checkpoint: str | Path, flags: dict[str, Any] | None = None
) -> None:
    """Raise a one-line error listing (a few of) the parameters where ``state`` does not fit ``model``.

    With ``flags``, the message names the flag whose change alone would make the checkpoint fit, when
    exactly one flag does; when several do, it names them all without choosing.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problems = parameter_mismatches(expected, {key: tuple(value.shape) for key, value in state.items()})
    if not problems:
        return
    listed = "; ".join(problems[:_SHOWN_MISMATCHES])
    if len(problems) > _SHOWN_MISMATCHES:
        listed += f"; and {len(problems) - _SHOWN_MISMATCHES} more parameters differ"
    hint = _flag_hint(fitting_flag_changes(state, flags)) if flags is not None else "check the model flags"
    raise DdpmsegError(f"{checkpoint}: does not fit the model flags: {listed}; {hint}")


def read_checkpoint(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """A plain state_dict, loaded safely (``weights_only=True``) onto the CPU."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DdpmsegError(f"{checkpoint}: checkpoint file does not exist") from None
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DdpmsegError(f"{checkpoint}: not a loadable state_dict ({first_line})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DdpmsegError(f"{checkpoint}: not a plain state_dict of tensors")
    return state


def load_ddpm(
    checkpoint: str | Path | Sequence[str | Path], flags: dict[str, Any], device: torch.device | str | None = None
) -> tuple[torch.nn.Module, Any]:
    """Load a guided-diffusion checkpoint into a UNet built from ``flags``; return (model, diffusion).

    The model is in eval mode on ``device`` (default: CUDA when present). On CUDA, a model whose flags
    say ``use_fp16`` runs its torso in float16, as guided-diffusion does; on CPU it stays float32.
    With a diffusers description as ``flags``, ``checkpoint`` is its folder (or a rule's list of the
    folder's files) and the UNet runs in float16 on CUDA (:mod:`ddpmseg.diffusion.diffusers_model`).
    """
    device = torch.device(device) if device is not None else select_device()
    checkpoint = ddpm_location(checkpoint)
    if is_diffusers(flags):
        from .diffusers_model import load_diffusers_ddpm

        return load_diffusers_ddpm(checkpoint, flags, device)
    model, diffusion = build_model_and_diffusion(flags)
    state = read_checkpoint(checkpoint)
    check_state_dict(model, state, checkpoint, flags)
    model.load_state_dict(state)
    if device.type == "cuda" and model_flags(flags)["use_fp16"]:
        model.convert_to_fp16()
        model.dtype = torch.float16
    model.to(device).eval()
    return model, diffusion


class _StopProfile(Exception):
    """Raised after the last chosen block, as the extraction stops there."""


def forward_profile(flags: dict[str, Any], blocks: list[int]) -> tuple[dict[int, tuple[int, ...]], int]:
    """Output shapes of the chosen decoder blocks and the FLOPs of one image's forward pass up to the
    last of them (what the extraction runs), from a pass on the meta device (for guided-diffusion's flags
    and diffusers descriptions alike)."""
    flags = model_flags(flags)
    last = max(blocks)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(block: int):
        def hook(_module, _inputs, output):
            shapes[block] = tuple(output.shape)
            if block == last:
                raise _StopProfile

        return hook

    counter = FlopCounterMode(display=False)
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
        hooks = [model.output_blocks[b].register_forward_hook(record(b)) for b in sorted(set(blocks))]
        size = flags["image_size"]
        with counter:
            try:
                model(torch.empty(1, 3, size, size), torch.zeros(1, dtype=torch.long))
            except _StopProfile:
                pass
        for hook in hooks:
            hook.remove()
    return shapes, counter.get_total_flops()


def feature_width(flags: dict[str, Any], steps: Sequence[int], blocks: Sequence[int]) -> int:
    """Features per pixel of the DDPM's activations at ``steps`` and ``blocks`` (channels summed), from a
    pass on the meta device."""
    shapes, _ = forward_profile(flags, list(blocks))
    return len(steps) * sum(shapes[block][1] for block in blocks)
