"""Guided-diffusion DDPMs: build from model flags, load checkpoints, train the small demo model.

Only ``guided_diffusion.script_util``/``unet``/``gaussian_diffusion``/``resample`` are imported:
``dist_util`` needs MPI.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DdpmsegError

with warnings.catch_warnings():
    # guided-diffusion decorates with the deprecated torch.cuda.amp.custom_fwd at import time
    warnings.simplefilter("ignore", FutureWarning)
    from guided_diffusion import script_util
    from guided_diffusion.resample import UniformSampler

# Flags of the paper's checkpoints (docs/method.md §2); other flags keep guided-diffusion's defaults.
PAPER_MODEL_FLAGS: dict[str, Any] = {
    "attention_resolutions": "32,16,8",
    "class_cond": False,
    "diffusion_steps": 1000,
    "dropout": 0.1,
    "image_size": 256,
    "learn_sigma": True,
    "noise_schedule": "linear",
    "num_channels": 256,
    "num_head_channels": 64,
    "num_res_blocks": 2,
    "resblock_updown": True,
    "use_fp16": True,
    "use_scale_shift_norm": True,
}

_DEFAULT_CHANNEL_MULT = {512: 7, 256: 6, 128: 5, 64: 4}


def model_flags(overrides: dict[str, Any]) -> dict[str, Any]:
    """guided-diffusion's ``model_and_diffusion_defaults()`` updated with ``overrides``; unknown flags fail."""
    flags = script_util.model_and_diffusion_defaults()
    unknown = sorted(set(overrides) - set(flags))
    if unknown:
        raise DdpmsegError(
            f"model flag '{unknown[0]}' is not a guided-diffusion create_model_and_diffusion argument"
        )
    flags.update(overrides)
    return flags


def decoder_block_count(flags: dict[str, Any]) -> int:
    """Number of ``model.output_blocks`` the flags give, without building the model."""
    flags = model_flags(flags)
    if flags["channel_mult"]:
        levels = len(str(flags["channel_mult"]).split(","))
    elif flags["image_size"] in _DEFAULT_CHANNEL_MULT:
        levels = _DEFAULT_CHANNEL_MULT[flags["image_size"]]
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


def select_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model_and_diffusion(flags: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """A float32 UNet and its diffusion, from model flags (fp16 conversion is left to :func:`load_ddpm`)."""
    flags = dict(model_flags(flags), use_fp16=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return script_util.create_model_and_diffusion(**flags)


# Single-flag changes tried when a checkpoint does not fit, to name the flag that differs.
_FLAG_CANDIDATES: dict[str, list[Any]] = {
    "learn_sigma": [True, False],
    "class_cond": [True, False],
    "use_scale_shift_norm": [True, False],
    "resblock_updown": [True, False],
    "num_res_blocks": [1, 2, 3, 4],
    "num_channels": [32, 64, 96, 128, 192, 224, 256, 320, 384],
    "image_size": [64, 128, 256, 512],
    "attention_resolutions": ["32,16,8", "16,8", "32,16", "16", "8", "32", "64,32,16,8"],
    "channel_mult": ["", "1,1,2,2,4,4", "0.5,1,1,2,2,4,4", "1,1,2,3,4", "1,2,3,4", "1,2,2,4", "1,2,2", "1,2"],
}


def _parameter_shapes(flags: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model the flags build, on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def fitting_flag_change(state: dict[str, torch.Tensor], flags: dict[str, Any]) -> str | None:
    """The one flag change (``name=value``) under which ``state`` fits, if there is one."""
    target = {key: tuple(value.shape) for key, value in state.items()}
    flags = model_flags(flags)
    for name, values in _FLAG_CANDIDATES.items():
        for value in values:
            if value == flags[name]:
                continue
            try:
                if _parameter_shapes({**flags, name: value}) == target:
                    return f"{name}={value!r}"
            except (ValueError, AssertionError, KeyError, ZeroDivisionError):
                continue
    return None


def check_state_dict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], checkpoint: str | Path, flags: dict[str, Any] | None = None
) -> None:
    """Raise a one-line error naming the first parameter where ``state`` does not fit ``model``.

    With ``flags``, the message also names the flag whose change would make the checkpoint fit.
    """
    expected = model.state_dict()
    problem = None
    for key, tensor in expected.items():
        if key not in state:
            problem = f"parameter '{key}' is missing from the checkpoint"
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problem = (
                f"parameter '{key}' has shape {tuple(state[key].shape)} in the checkpoint "
                f"but {tuple(tensor.shape)} in the model"
            )
        if problem:
            break
    if problem is None:
        extra = [key for key in state if key not in expected]
        if not extra:
            return
        problem = f"the checkpoint has parameter '{extra[0]}' that the model lacks"
    change = fitting_flag_change(state, flags) if flags is not None else None
    hint = f"check flag {change.split('=')[0]} (the checkpoint fits {change})" if change else (
        "check the model flags (no single flag change makes it fit)"
    )
    raise DdpmsegError(f"{checkpoint}: does not fit the model flags: {problem}; {hint}")


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
    checkpoint: str | Path, flags: dict[str, Any], device: torch.device | str | None = None
) -> tuple[torch.nn.Module, Any]:
    """Load a guided-diffusion checkpoint into a UNet built from ``flags``; return (model, diffusion).

    The model is in eval mode on ``device`` (default: CUDA when present). On CUDA, a model whose flags
    say ``use_fp16`` runs its torso in float16, as guided-diffusion does; on CPU it stays float32.
    """
    device = torch.device(device) if device is not None else select_device()
    model, diffusion = build_model_and_diffusion(flags)
    state = read_checkpoint(checkpoint)
    check_state_dict(model, state, checkpoint, flags)
    model.load_state_dict(state)
    if device.type == "cuda" and model_flags(flags)["use_fp16"]:
        model.convert_to_fp16()
        model.dtype = torch.float16
    model.to(device).eval()
    return model, diffusion


def train_ddpm(
    model: torch.nn.Module,
    diffusion: Any,
    images: np.ndarray,
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` on (N, 3, H, W) images in [-1, 1] with guided-diffusion's losses; return the losses.

    Timesteps are drawn uniformly (guided-diffusion's ``UniformSampler``), images with replacement,
    optimiser AdamW as in guided-diffusion's training script.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the timestep sampler draws from numpy, the loss noise from torch
    np_state = np.random.get_state()
    np.random.seed(seed)
    sampler = UniformSampler(diffusion)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    data = torch.from_numpy(images)
    model.train()
    losses = []
    try:
        for iteration in range(iterations):
            index = torch.randint(len(data), (batch_size,), generator=generator)
            batch = data[index].to(device)
            timesteps, weights = sampler.sample(batch_size, device)
            terms = diffusion.training_losses(model, batch, timesteps)
            loss = (terms["loss"] * weights).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if progress is not None:
                progress(iteration, losses[-1])
    finally:
        np.random.set_state(np_state)
    model.eval()
    return losses
