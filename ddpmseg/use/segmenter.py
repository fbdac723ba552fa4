"""A trained segmenter: what labelling new images with one run (dataset, variant, seed) needs.

:class:`Segmenter` holds the members' weights files, the DDPM checkpoint and its flags, the feature
settings, the preprocessing, the classes and the TTA views. Its ``identity`` is a digest of everything
the labels depend on (file contents, not paths), so that a labelling folder can tell whether its
outputs came from the same segmenter (:mod:`ddpmseg.use.labelling` resumes on it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import NON_SQUARE_POLICIES
from ..diffusion.model import load_ddpm, model_flags, select_device
from ..base.errors import DdpmsegError
from ..diffusion.activations import model_order
from ..base.files import sha256_file
from ..prediction.tta import view_key

FEATURE_SOURCES = ("ddpm", "rgb")
IDENTITY_VERSION = 1  # bump when the labelling's outputs change for the same settings


@dataclass(frozen=True)
class Segmenter:
    """Everything needed to label new images with one trained run (dataset, variant, seed)."""

    member_paths: tuple[Path, ...]  # the members' weights files (classifier.save_member format)
    ddpm_checkpoint: Path | None  # guided-diffusion state_dict (ddpm.load_ddpm); None: an RGB control without one
    ddpm_flags: dict[str, Any]  # full flags (ddpm.model_flags output)
    steps: tuple[int, ...]
    blocks: tuple[int, ...]  # model order
    noise_seed: int
    feature_source: str  # "ddpm" (default) or "rgb" (the RGB control: each pixel's values in [-1, 1])
    image_size: int
    non_square: str | None  # "resize" | "center_crop" | None (a non-square image is an error)
    number_class: int
    ignore_label: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    tta_views: tuple[tuple[str, ...], ...]  # () = no TTA
    tta_seed: int
    identity: str  # stable digest of what the outputs depend on (resume key)


def segmenter_settings(
    *,
    ddpm_flags: dict[str, Any],
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int,
    feature_source: str,
    image_size: int,
    non_square: str | None,
    number_class: int,
    ignore_label: int,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    tta_views: Sequence[Sequence[str]],
    tta_seed: int,
) -> dict[str, Any]:
    """The settings part of a segmenter, checked and normalised (plain JSON types, blocks in model order).

    Raises :class:`DdpmsegError` naming the setting that is wrong.
    """
    flags = model_flags(ddpm_flags)
    if feature_source not in FEATURE_SOURCES:
        raise DdpmsegError(f"feature_source '{feature_source}' must be one of {', '.join(FEATURE_SOURCES)}")
    if feature_source == "ddpm" and image_size != flags["image_size"]:
        raise DdpmsegError(f"image_size {image_size} differs from the DDPM flags' image_size {flags['image_size']}")
    if non_square is not None and non_square not in NON_SQUARE_POLICIES:
        raise DdpmsegError(f"non_square '{non_square}' must be one of {', '.join(NON_SQUARE_POLICIES)} or null")
    if not 2 <= number_class <= 256 or not 0 <= ignore_label <= 255:
        raise DdpmsegError(
            f"number_class {number_class} and ignore_label {ignore_label} must fit 8-bit label PNGs "
            "(2 to 256 classes, ignore_label 0 to 255)"
        )
    if len(class_names) != number_class:
        raise DdpmsegError(f"{len(class_names)} class names for number_class {number_class}")
    if len(palette) < number_class or any(len(colour) != 3 for colour in palette):
        raise DdpmsegError(f"palette must give an RGB colour to each of the {number_class} classes")
    if feature_source == "ddpm" and (not steps or not blocks):
        raise DdpmsegError("a segmenter with DDPM features needs at least one feature step and one block")
    for view in tta_views:
        view_key(view)  # checks the transform names
    return {
        "identity_version": IDENTITY_VERSION,
        "ddpm_flags": flags,
        "steps": [int(s) for s in steps],
        "blocks": model_order(blocks),
        "noise_seed": int(noise_seed),
        "feature_source": feature_source,
        "image_size": int(image_size),
        "non_square": non_square,
        "number_class": int(number_class),
        "ignore_label": int(ignore_label),
        "class_names": [str(name) for name in class_names],
        "palette": [[int(c) for c in colour] for colour in palette],
        "tta_views": [list(view) for view in tta_views],
        "tta_seed": int(tta_seed),
    }


def segmenter_identity(*, member_digests: Sequence[str], ddpm_digest: str, settings: dict[str, Any]) -> str:
    """sha256 over the members' file digests (in order), the DDPM checkpoint's digest and the settings."""
    payload = json.dumps(
        {"members": list(member_digests), "ddpm": ddpm_digest, "settings": settings}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def make_segmenter(
    *,
    member_paths: Sequence[str | Path],
    ddpm_checkpoint: str | Path | None,
    member_digests: Sequence[str] | None = None,
    ddpm_digest: str | None = None,
    **settings: Any,
) -> Segmenter:
    """A checked :class:`Segmenter` with its identity; ``settings`` are :func:`segmenter_settings`'s arguments.

    The files' sha256 digests are computed unless given (a bundle's manifest already holds them, checked).
    """
    members = tuple(Path(p) for p in member_paths)
    if not members:
        raise DdpmsegError("a segmenter needs at least one member")
    checked = segmenter_settings(**settings)
    digests = list(member_digests) if member_digests is not None else [_file_digest(p, "member") for p in members]
    if len(digests) != len(members):
        raise DdpmsegError(f"{len(digests)} member digests for {len(members)} members")
    if checked["feature_source"] == "rgb":
        ddpm_digest = "unused"  # the RGB control's features do not come from the DDPM
    elif ddpm_checkpoint is None:
        raise DdpmsegError("a segmenter with DDPM features needs the DDPM checkpoint")
    ddpm_digest = ddpm_digest or _file_digest(Path(ddpm_checkpoint), "DDPM checkpoint")
    return Segmenter(
        member_paths=members,
        ddpm_checkpoint=None if ddpm_checkpoint is None else Path(ddpm_checkpoint),
        ddpm_flags=checked["ddpm_flags"],
        steps=tuple(checked["steps"]),
        blocks=tuple(checked["blocks"]),
        noise_seed=checked["noise_seed"],
        feature_source=checked["feature_source"],
        image_size=checked["image_size"],
        non_square=checked["non_square"],
        number_class=checked["number_class"],
        ignore_label=checked["ignore_label"],
        class_names=tuple(checked["class_names"]),
        palette=tuple(tuple(colour) for colour in checked["palette"]),
        tta_views=tuple(tuple(view) for view in checked["tta_views"]),
        tta_seed=checked["tta_seed"],
        identity=segmenter_identity(member_digests=digests, ddpm_digest=ddpm_digest, settings=checked),
    )


def _file_digest(path: Path, what: str) -> str:
    if not path.is_file():
        raise DdpmsegError(f"{path}: {what} file does not exist")
    return sha256_file(path)


_DDPM_CACHE: dict[tuple[str, str, str], tuple[torch.nn.Module, Any]] = {}


def segmenter_ddpm(segmenter: Segmenter, device: torch.device | str | None = None) -> tuple[torch.nn.Module, Any]:
    """The segmenter's (model, diffusion), built once per checkpoint, flags and device.

    As the feature-extraction stage: CUDA when present, where a model whose flags say ``use_fp16`` runs
    in float16 (:func:`ddpmseg.diffusion.model.load_ddpm`); CPU in float32 otherwise.
    """
    device = torch.device(device) if device is not None else select_device()
    key = (str(segmenter.ddpm_checkpoint), json.dumps(segmenter.ddpm_flags, sort_keys=True), str(device))
    if key not in _DDPM_CACHE:
        _DDPM_CACHE.clear()  # one model at a time: a paper-size UNet is large
        _DDPM_CACHE[key] = load_ddpm(segmenter.ddpm_checkpoint, segmenter.ddpm_flags, device)
    return _DDPM_CACHE[key]
