"""Diffusers DDPMs: a ``UNet2DModel`` and its ``DDPMScheduler`` loaded from a folder with diffusers' own
loaders, seen by extraction as a guided-diffusion UNet and its diffusion are.

:class:`DecoderUNet` gives the UNet guided-diffusion's interface: ``output_blocks[k]`` is the module whose
output is decoder block ``k`` (:func:`ddpmseg.diffusion.diffusers_folder.decoder_blocks`), so that
:func:`ddpmseg.diffusion.activations.extract_activations` hooks it and stops after the last block asked
for, as it does for guided-diffusion. :class:`SchedulerNoising` gives the scheduler's forward process as
``q_sample`` (``scheduler.add_noise``). Only safetensors weights are read; nothing of the folder runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import DdpmsegError
from .diffusers_folder import decoder_blocks, diffusers_flags, folder_files, read_flags, require_diffusers


class DecoderUNet(nn.Module):
    """A ``UNet2DModel`` as extraction runs a guided-diffusion UNet: ``forward(x, t)`` (``x`` cast to the
    UNet's dtype), ``dtype``, and ``output_blocks``, the modules whose outputs are the decoder blocks (a
    tuple, not registered twice)."""

    def __init__(self, unet: nn.Module, flags: Mapping[str, Any]) -> None:
        super().__init__()
        self.unet = unet
        self.output_blocks = tuple(unet.get_submodule(block.module) for block in decoder_blocks(flags))

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.unet(x.to(self.unet.dtype), timesteps, return_dict=False)[0]


class SchedulerNoising:
    """A ``DDPMScheduler``'s forward process with the two methods of guided-diffusion's
    ``GaussianDiffusion`` that extraction calls: ``q_sample`` and ``_scale_timesteps`` (the UNet takes the
    integer step itself)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.num_timesteps = int(scheduler.config.num_train_timesteps)

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x_start, noise, t)

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t


def build_diffusers_ddpm(flags: Mapping[str, Any]) -> tuple[DecoderUNet, SchedulerNoising]:
    """A randomly initialised UNet and its scheduler from a diffusers description (on the current default
    device: the meta device gives shapes and FLOPs without memory)."""
    require_diffusers("a diffusers DDPM")
    from diffusers import DDPMScheduler, UNet2DModel

    flags = diffusers_flags(flags)
    unet = UNet2DModel.from_config(dict(flags["unet"]))
    return DecoderUNet(unet, flags), SchedulerNoising(DDPMScheduler.from_config(dict(flags["scheduler"])))


def load_diffusers_ddpm(
    folder: str | Path, flags: Mapping[str, Any], device: torch.device
) -> tuple[DecoderUNet, SchedulerNoising]:
    """The folder's UNet (safetensors only, no remote code) and scheduler, checked against the
    description ``flags`` the workflow recorded; eval mode on ``device``, float16 on CUDA, float32 on CPU."""
    require_diffusers(str(folder))
    folder = Path(folder)
    unet_config, _, scheduler_config = folder_files(folder)  # either layout: the folders of these files load
    found, expected = read_flags(folder), diffusers_flags(flags)
    if found != expected:
        differing = sorted(key for key in set(found["unet"]) | set(expected["unet"])
                           if found["unet"].get(key) != expected["unet"].get(key))
        what = f"unet {differing[0]}" if differing else "scheduler"
        raise DdpmsegError(f"{folder}: its configs differ from the DDPM's recorded description ({what})")
    from diffusers import DDPMScheduler, UNet2DModel

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        unet, loading = UNet2DModel.from_pretrained(
            unet_config.parent, use_safetensors=True, local_files_only=True, torch_dtype=dtype,
            low_cpu_mem_usage=False, output_loading_info=True,
        )
        scheduler = DDPMScheduler.from_pretrained(scheduler_config.parent, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DdpmsegError(f"{folder}: diffusers cannot load it ({first})") from None
    _check_loading(unet_config.parent, loading)
    unet = unet.to(device).eval()
    return DecoderUNet(unet, expected).eval(), SchedulerNoising(scheduler)


def _check_loading(unet_folder: Path, loading: Mapping[str, Any]) -> None:
    """diffusers initialises the parameters the weights lack at random and only warns: refused here, as
    are weights the UNet has no place for."""
    for key, what in (("missing_keys", "lack"), ("unexpected_keys", "have parameters the UNet lacks:"),
                      ("mismatched_keys", "have parameters of other shapes:")):
        names = [str(name[0] if isinstance(name, tuple) else name) for name in loading.get(key) or []]
        if names:
            shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise DdpmsegError(f"{unet_folder}: the weights {what} {shown} (its config.json does not fit them)")
