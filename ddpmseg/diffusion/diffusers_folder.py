"""A diffusers DDPM folder without torch: its files and their one digest, its description (the DDPM's
"flags"), its decoder blocks with their resolution and channels, and where any DDPM loads from.

A diffusers DDPM is a ``DDPMPipeline`` saved with ``save_pretrained`` (or any folder holding its ``unet/``
and ``scheduler/``): a ``UNet2DModel`` and a ``DDPMScheduler``. Only three of its files are read, and
only those count: ``unet/config.json``, ``unet/diffusion_pytorch_model.safetensors`` and
``scheduler/scheduler_config.json`` (no pickles, no code). A folder without ``unet/`` and ``scheduler/``
may hold the three at its top instead (``config.json``, ``diffusion_pytorch_model.safetensors``,
``scheduler_config.json``), as the hub's google/ddpm-* repositories do; diffusers loads both layouts,
and the files count under the same names (:data:`FOLDER_FILES`) either way. Their digest
(:func:`folder_digest`) is recorded as a guided-diffusion checkpoint's sha256 is.

Its "flags" (what the workflow's params, stores and bundles carry as a DDPM's flags) are
``{"library": "diffusers", "image_size", "diffusion_steps", "unet": <config.json>, "scheduler":
<scheduler_config.json>}`` (the two configs without their ``_``-keys), read here from the JSON files.

Decoder block ``k`` (docs/diffusers.md) is the analogue of guided-diffusion's ``output_blocks[k]``: the
up blocks' layers in forward order, ``up_blocks[i]`` layer ``j`` being the output of ``resnets[j]``,
followed by ``attentions[j]`` when the up block has attentions, followed by ``upsamplers[0]`` for the
last layer of every up block but the last. :func:`decoder_blocks` lists them without building the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..base.files import sha256_file

DIFFUSERS = "diffusers"
EXTRA = "pip install -e '.[diffusers]'"
UNET_CONFIG = "unet/config.json"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
FOLDER_FILES = (UNET_CONFIG, UNET_WEIGHTS, SCHEDULER_CONFIG)
# The same files at the top of a folder without unet/ and scheduler/ (the google/ddpm-* repositories' layout).
FLAT_FILES = tuple(name.split("/")[1] for name in FOLDER_FILES)
UNET_CLASS = "UNet2DModel"
SCHEDULER_CLASS = "DDPMScheduler"
# Up blocks whose layers are resnets[j] (then attentions[j]) and one upsampler at the end.
UP_BLOCK_TYPES = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D")
_ATTENTION_UP_BLOCKS = ("AttnUpBlock2D",)
# UNet2DModel's and DDPMScheduler's defaults of the keys read here, for a config that leaves one out
# (tests/unit/diffusion/test_diffusers_folder.py holds them equal to the installed library's).
UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": [224, 448, 672, 896],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "class_embed_type": None, "num_class_embeds": None,
}
SCHEDULER_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 1000}


def diffusers_installed() -> bool:
    """Whether the diffusers extra (diffusers and safetensors) is installed, without importing either."""
    return all(importlib.util.find_spec(name) is not None for name in ("diffusers", "safetensors"))


def require_diffusers(setting: str) -> None:
    """One line naming ``setting`` and the extra to install when diffusers is missing."""
    if not diffusers_installed():
        raise DdpmsegError(f"{setting}: a diffusers DDPM needs the diffusers extra; install it: {EXTRA}")


def is_diffusers(flags: Mapping[str, Any]) -> bool:
    """Whether a DDPM's flags describe a diffusers folder (else they are guided-diffusion's)."""
    return flags.get("library") == DIFFUSERS


# --- the folder's files ------------------------------------------------------------------------------


def folder_layout(folder: Path) -> tuple[str, ...]:
    """The names of the three files in ``folder``: :data:`FOLDER_FILES` (``unet/`` and ``scheduler/``), or
    :data:`FLAT_FILES` when the folder has neither subfolder but a ``config.json`` at its top."""
    nested = (folder / "unet").is_dir() or (folder / "scheduler").is_dir()
    return FLAT_FILES if not nested and (folder / "config.json").is_file() else FOLDER_FILES


def folder_files(folder: str | Path) -> list[Path]:
    """The folder's files that count, in :data:`FOLDER_FILES` order, in either layout; a missing one,
    pickled weights without safetensors or sharded weights are one line naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DdpmsegError(f"{folder}: not a folder (a diffusers DDPMPipeline folder: docs/diffusers.md)")
    names = folder_layout(folder)
    for logical, name in zip(FOLDER_FILES, names, strict=True):
        path = folder / name
        if path.is_file():
            continue
        weights = path.parent
        if logical == UNET_WEIGHTS and (weights / "diffusion_pytorch_model.safetensors.index.json").is_file():
            raise DdpmsegError(f"{path}: sharded weights are not supported; save the UNet as one safetensors file")
        if logical == UNET_WEIGHTS and (weights / "diffusion_pytorch_model.bin").is_file():
            raise DdpmsegError(
                f"{path}: missing; the folder has only diffusion_pytorch_model.bin (a pickle), and ddpmseg loads "
                "safetensors only (convert it once: docs/diffusers.md)"
            )
        raise DdpmsegError(
            f"{path}: missing (a diffusers DDPM folder holds {', '.join(FOLDER_FILES)}, or {', '.join(FLAT_FILES)} "
            "at its top)"
        )
    return [folder / name for name in names]


def file_digests(folder: str | Path) -> dict[str, str]:
    """sha256 of each file that counts, by its name in :data:`FOLDER_FILES` (``unet/config.json``, ...)
    whichever the folder's layout."""
    return {name: sha256_file(path) for name, path in zip(FOLDER_FILES, folder_files(folder), strict=True)}


def digest_of(files: Mapping[str, str]) -> str:
    """The one digest of a folder: sha256 over its files' sorted relative paths and sha256s."""
    text = "".join(f"{name}\t{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def folder_digest(folder: str | Path) -> str:
    """The digest of a diffusers folder's files that count (their names and contents, not their
    locations): what ``check.json``, stores and bundles record as its sha256."""
    return digest_of(file_digests(folder))


def ddpm_digest(path: str | Path) -> str:
    """A DDPM's sha256: a guided-diffusion checkpoint file's, or a diffusers folder's digest."""
    path = Path(path)
    if path.is_dir():
        return folder_digest(path)
    if not path.is_file():
        raise DdpmsegError(f"{path}: DDPM checkpoint file does not exist (nor a diffusers folder there)")
    return sha256_file(path)


def ddpm_location(checkpoint: str | Path | Sequence[str | Path]) -> Path:
    """Where a DDPM loads from, given a rule's input: a checkpoint file (a path, or a list of one), or the
    diffusers folder whose files (:func:`folder_files`) are listed."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return Path(checkpoint)
    files = [Path(p) for p in checkpoint]
    if len(files) == 1:
        return files[0]
    if len(files) == len(FOLDER_FILES):
        for names, folder in ((FOLDER_FILES, files[0].parent.parent), (FLAT_FILES, files[0].parent)):
            if files == [folder / name for name in names]:
                return folder
    raise DdpmsegError(f"DDPM input {[str(f) for f in files]}: neither one checkpoint nor a diffusers folder's files")


# --- the description ---------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DdpmsegError(f"{path}: unreadable JSON ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise DdpmsegError(f"{path}: not a JSON object")
    return value


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def read_flags(folder: str | Path) -> dict[str, Any]:
    """The description of a diffusers folder (its "flags"), read from its two config files."""
    unet_path, _, scheduler_path = folder_files(folder)
    unet, scheduler = _read_json(unet_path), _read_json(scheduler_path)
    for config, path, expected in ((unet, unet_path, UNET_CLASS), (scheduler, scheduler_path, SCHEDULER_CLASS)):
        found = config.get("_class_name", expected)
        if found != expected:
            raise DdpmsegError(f"{path}: _class_name is {found!r}; ddpmseg reads a {expected} here")
    try:
        return diffusers_flags({"library": DIFFUSERS, "unet": _public(unet), "scheduler": _public(scheduler)})
    except DdpmsegError as error:
        raise DdpmsegError(f"{unet_path}: {error}") from None


def _setting(section: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> Any:
    return section.get(key, defaults[key])


def diffusers_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers description checked and completed: ``image_size`` (the UNet's square sample size) and
    ``diffusion_steps`` (the scheduler's training steps) follow from the two configs; a UNet whose decoder
    ddpmseg cannot hook, or that needs more than an RGB image and a timestep, is one line."""
    unknown = sorted(set(flags) - {"library", "image_size", "diffusion_steps", "unet", "scheduler"})
    if unknown or not isinstance(flags.get("unet"), Mapping) or not isinstance(flags.get("scheduler"), Mapping):
        raise DdpmsegError(f"a diffusers DDPM's description has keys library, unet, scheduler (got {sorted(flags)})")
    unet, scheduler = dict(flags["unet"]), dict(flags["scheduler"])
    size = _setting(unet, "sample_size", UNET_DEFAULTS)
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise DdpmsegError(f"sample_size {size!r}: ddpmseg needs a square sample of at least 8 pixels")
    if _setting(unet, "in_channels", UNET_DEFAULTS) != 3:
        raise DdpmsegError(f"in_channels {unet['in_channels']}: ddpmseg runs the UNet on RGB images (3 channels)")
    if _setting(unet, "class_embed_type", UNET_DEFAULTS) is not None or _setting(unet, "num_class_embeds", UNET_DEFAULTS):
        raise DdpmsegError("the UNet is class-conditional (class_embed_type or num_class_embeds); ddpmseg runs unconditional ones")
    steps = _setting(scheduler, "num_train_timesteps", SCHEDULER_DEFAULTS)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise DdpmsegError(f"scheduler num_train_timesteps {steps!r} must be a positive integer")
    described = {"library": DIFFUSERS, "image_size": size, "diffusion_steps": steps, "unet": unet, "scheduler": scheduler}
    for key in ("image_size", "diffusion_steps"):
        if key in flags and flags[key] != described[key]:
            raise DdpmsegError(f"{key} {flags[key]!r} differs from the configs' {described[key]!r}")
    decoder_blocks(described)  # the decoder can be hooked
    return described


# --- the decoder blocks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderBlock:
    """One decoder block of a UNet2DModel: its index, where it is, the module whose output it is, and
    that output's channels and side (pixels)."""

    index: int
    up_block: int
    layer: int
    module: str  # e.g. "up_blocks.1.upsamplers.0": the hooked module (its output is the block's)
    channels: int
    resolution: int


def decoder_blocks(flags: Mapping[str, Any]) -> list[DecoderBlock]:
    """Every decoder block of the UNet a diffusers description gives, in forward order (module
    docstring), from its config alone."""
    unet = flags["unet"]
    up_types = list(_setting(unet, "up_block_types", UNET_DEFAULTS))
    channels = list(_setting(unet, "block_out_channels", UNET_DEFAULTS))
    layers = _setting(unet, "layers_per_block", UNET_DEFAULTS)
    if isinstance(layers, (list, tuple)):
        raise DdpmsegError("layers_per_block: one number for every level is supported, not a list")
    levels = len(up_types)
    if levels != len(channels) or levels != len(_setting(unet, "down_block_types", UNET_DEFAULTS)):
        raise DdpmsegError("up_block_types, down_block_types and block_out_channels differ in length")
    unsupported = [kind for kind in up_types if kind not in UP_BLOCK_TYPES]
    if unsupported:
        raise DdpmsegError(
            f"up block type {unsupported[0]} is not supported (ddpmseg hooks {', '.join(UP_BLOCK_TYPES)})"
        )
    size = flags["image_size"]
    if size % 2 ** (levels - 1):
        raise DdpmsegError(f"sample_size {size} is not divisible by 2^{levels - 1}, the UNet's downsampling")
    blocks: list[DecoderBlock] = []
    resolution = size // 2 ** (levels - 1)
    for i, (kind, width) in enumerate(zip(up_types, reversed(channels), strict=True)):
        final = i == levels - 1
        for j in range(layers + 1):
            module = f"up_blocks.{i}.attentions.{j}" if kind in _ATTENTION_UP_BLOCKS else f"up_blocks.{i}.resnets.{j}"
            if j == layers and not final:
                module, resolution = f"up_blocks.{i}.upsamplers.0", resolution * 2
            blocks.append(DecoderBlock(len(blocks), i, j, module, width, resolution))
    return blocks
