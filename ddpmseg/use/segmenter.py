"""A trained segmenter: what labelling new images with one run (dataset, variant, seed) needs.

:class:`Segmenter` holds the members' weights files, the DDPM checkpoint and the run's
:class:`~ddpmseg.use.settings.SegmenterSettings`. Its ``identity`` is a digest of everything the labels
depend on (file contents, not paths), so that a labelling folder can tell whether its outputs came from
the same segmenter (:mod:`ddpmseg.use.labelling` resumes on it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base.errors import DdpmsegError
from ..base.files import sha256_file
from ..classifier.mlp import load_member
from ..diffusion.diffusers_folder import ddpm_digest as ddpm_file_digest
from ..diffusion.model import feature_width, load_ddpm, select_device
from .settings import SegmenterSettings

IDENTITY_VERSION = 1  # bump when the labelling's outputs change for the same settings


@dataclass(frozen=True)
class Segmenter:
    """Everything needed to label new images with one trained run (dataset, variant, seed)."""

    member_paths: tuple[Path, ...]  # the members' weights files (classifier.mlp.save_member format)
    # guided-diffusion state_dict or diffusers folder (diffusion.model.load_ddpm); None: an RGB control's
    ddpm_checkpoint: Path | None
    settings: SegmenterSettings
    member_digests: tuple[str, ...]  # sha256 of each member's file
    ddpm_digest: str  # sha256 of the checkpoint, digest of a diffusers folder ("unused" for an RGB control)
    identity: str  # stable digest of what the outputs depend on (resume key)


def segmenter_identity(*, member_digests: Sequence[str], ddpm_digest: str, settings: SegmenterSettings) -> str:
    """sha256 over the members' file digests (in order), the DDPM checkpoint's digest and the settings."""
    payload = json.dumps(
        {"members": list(member_digests), "ddpm": ddpm_digest,
         "settings": {"identity_version": IDENTITY_VERSION, **settings.plain()}},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def make_segmenter(
    *,
    member_paths: Sequence[str | Path],
    ddpm_checkpoint: str | Path | None,
    settings: SegmenterSettings,
    member_digests: Sequence[str] | None = None,
    ddpm_digest: str | None = None,
) -> Segmenter:
    """A checked :class:`Segmenter` with its identity. The files' sha256 digests are computed unless given
    (a bundle's manifest already holds them, checked). An RGB control's segmenter has no DDPM."""
    members = tuple(Path(p) for p in member_paths)
    if not members:
        raise DdpmsegError("a segmenter needs at least one member")
    digests = list(member_digests) if member_digests is not None else [_file_digest(p, "member") for p in members]
    if len(digests) != len(members):
        raise DdpmsegError(f"{len(digests)} member digests for {len(members)} members")
    if settings.feature_source == "rgb":
        ddpm_digest = "unused"  # the RGB control's features do not come from the DDPM
    elif ddpm_checkpoint is None:
        raise DdpmsegError("a segmenter with DDPM features needs the DDPM checkpoint")
    ddpm_digest = ddpm_digest or ddpm_file_digest(Path(ddpm_checkpoint))
    return Segmenter(
        member_paths=members,
        ddpm_checkpoint=None if ddpm_checkpoint is None else Path(ddpm_checkpoint),
        settings=settings,
        member_digests=tuple(digests),
        ddpm_digest=ddpm_digest,
        identity=segmenter_identity(member_digests=digests, ddpm_digest=ddpm_digest, settings=settings),
    )


def check_members_fit(segmenter: Segmenter) -> None:
    """Each member takes the features the settings give (their count, from the DDPM's block shapes) and
    predicts the settings' classes: settings edited to another feature layout or other classes are
    refused, whatever identity they carry."""
    settings = segmenter.settings
    width = 3 if settings.feature_source == "rgb" else feature_width(settings.ddpm_flags, settings.steps, settings.blocks)
    for path in segmenter.member_paths:
        member = load_member(path)
        if member[0].in_features != width or member[-1].out_features != settings.number_class:
            raise DdpmsegError(
                f"{path}: the member takes {member[0].in_features} features and predicts {member[-1].out_features} "
                f"classes, the settings give {width} features and {settings.number_class} classes"
            )


def with_non_square(segmenter: Segmenter, policy: str | None) -> Segmenter:
    """The segmenter under another non-square policy (``None``: its own); labels under it are another
    segmenter's, so the identity follows."""
    if policy is None or policy == segmenter.settings.non_square:
        return segmenter
    settings = dataclasses.replace(segmenter.settings, non_square=policy)
    return dataclasses.replace(
        segmenter, settings=settings,
        identity=segmenter_identity(member_digests=segmenter.member_digests, ddpm_digest=segmenter.ddpm_digest,
                                    settings=settings),
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
    key = (str(segmenter.ddpm_checkpoint), json.dumps(segmenter.settings.ddpm_flags, sort_keys=True), str(device))
    if key not in _DDPM_CACHE:
        _DDPM_CACHE.clear()  # one model at a time: a paper-size UNet is large
        _DDPM_CACHE[key] = load_ddpm(segmenter.ddpm_checkpoint, segmenter.settings.ddpm_flags, device)
    return _DDPM_CACHE[key]
