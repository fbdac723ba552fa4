"""The DDPMs of a config: where a trained one's images and initial weights come from, its training settings
and GPUs; the files a DDPM's rules read, and a diffusers folder's description filled in as its flags."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..diffusion.diffusers_folder import folder_files, read_flags
from ..diffusion.training.settings import DdpmTrainingSettings
from . import paths


TRAINED = "train"
DIFFUSERS = "diffusers"
# Keys of a ddpms entry that only one source has.
_SOURCE_KEYS = {"checkpoint": "file", "url": "registry", "registry_name": "registry", "images": TRAINED,
                "init": TRAINED, "training": TRAINED, "path": DIFFUSERS}


def ddpm_training_settings(ddpm: dict[str, Any]) -> dict[str, Any]:
    """The settings of a trained DDPM's training, in a fixed order (``gpus``, ``nodes`` and ``non_square``
    are not among them: the first two do not change the result, the last is the images' policy)."""
    return {field.name: ddpm["training"][field.name] for field in fields(DdpmTrainingSettings)}


def ddpm_training_gpus(config: dict[str, Any], name: str) -> int:
    """GPUs on each node of a trained DDPM's training job: ``training.gpus``, default ``gpu_per_job``."""
    return int(config["ddpms"][name]["training"].get("gpus", config["gpu_per_job"]))


def ddpm_training_nodes(config: dict[str, Any], name: str) -> int:
    """Nodes of a trained DDPM's training job: ``training.nodes``."""
    return int(config["ddpms"][name]["training"]["nodes"])


def ddpm_training_processes(config: dict[str, Any], name: str) -> int:
    """Training processes of a trained DDPM: one per GPU, or one per node without GPUs, on every node."""
    return ddpm_training_nodes(config, name) * max(ddpm_training_gpus(config, name), 1)


def generated_dataset_of(config: dict[str, Any], folder: str | Path) -> str | None:
    """The demo or registry dataset whose rule makes ``folder`` (``resources/datasets/<dataset>/...``),
    or None for a folder of the user's."""
    parts = Path(os.path.normpath(folder)).parts
    if len(parts) < 3 or parts[:2] != ("resources", "datasets"):
        return None
    dataset = config["datasets"].get(parts[2])
    return parts[2] if dataset is not None and dataset["source"] in ("demo", "registry") else None


def ddpm_image_inputs(config: dict[str, Any], name: str) -> list[str]:
    """The inputs of a trained DDPM's training: every image file of its user folders (adding, removing
    or changing one reruns the training) and the dataset folder that a rule makes for a folder in a
    generated dataset."""
    from ..data.listing import IMAGE_SUFFIXES, files_with_suffixes

    inputs: list[str] = []
    for folder in config["ddpms"][name]["images"]:
        dataset = generated_dataset_of(config, folder)
        if dataset is not None:
            inputs.append(paths.DATASET.format(dataset=dataset))
        else:
            inputs += [str(path) for path in files_with_suffixes(Path(folder), IMAGE_SUFFIXES)]
    return list(dict.fromkeys(inputs))


def ddpm_init(config: dict[str, Any], name: str) -> tuple[str, str] | None:
    """Where a trained DDPM's initial weights come from: ("ddpm", key of ``ddpms``) or ("file", path);
    None without ``init``. (Registry names are ``ddpms`` keys once :func:`resolve_registry` ran.)"""
    init = config["ddpms"][name].get("init")
    if init is None:
        return None
    return ("ddpm", init) if init in config["ddpms"] else ("file", init)


def checkpoint_path(config: dict[str, Any], name: str) -> str:
    """Where the workflow reads a DDPM's checkpoint: a file DDPM's own path, a diffusers DDPM's folder,
    else ``resources/checkpoints/`` (downloaded or trained there)."""
    entry = config["ddpms"][name]
    if entry["source"] == DIFFUSERS:
        return entry["path"]
    return entry["checkpoint"] if entry["source"] == "file" else paths.CHECKPOINT.format(ddpm=name)


def ddpm_inputs(config: dict[str, Any], name: str) -> list[str]:
    """The files of a DDPM that its rules read (their input): its checkpoint, or the files of a diffusers
    folder that count (:data:`ddpmseg.diffusion.diffusers_folder.FOLDER_FILES`), so that changing one
    reruns its validation and what follows."""
    entry = config["ddpms"][name]
    if entry["source"] == DIFFUSERS:
        return [str(path) for path in folder_files(entry["path"])]
    return [checkpoint_path(config, name)]


def resolve_diffusers(config: dict[str, Any], workdir: str | Path = ".") -> dict[str, Any]:
    """The config with each diffusers DDPM's description, read from its folder's configs (relative paths
    from ``workdir``), as its ``flags`` (a new dict; no torch, no diffusers). A ``flags`` of its own is an
    error: the folder says what the model is."""
    resolved = {**config, "ddpms": dict(config.get("ddpms", {}))}
    for name, entry in resolved["ddpms"].items():
        if entry["source"] != DIFFUSERS:
            continue
        if "flags" in entry:
            raise DdpmsegError(f"ddpms.{name}.flags: a diffusers DDPM's model is described by its folder's unet/config.json; remove flags")
        try:
            flags = read_flags(Path(workdir) / entry["path"])
        except DdpmsegError as error:
            raise DdpmsegError(f"ddpms.{name}.path: {error}") from None
        resolved["ddpms"][name] = {**entry, "flags": flags}
    return resolved


def trained_ddpms(config: dict[str, Any]) -> list[str]:
    """The trained DDPMs that the datasets' features need (their own and those they fine-tune from), in
    config order."""
    needed: list[str] = []
    pending = [entry["ddpm"] for entry in config["datasets"].values()]
    while pending:
        name = pending.pop(0)
        if name in needed or config["ddpms"][name]["source"] != TRAINED:
            continue
        needed.append(name)
        init = ddpm_init(config, name)
        pending += [init[1]] if init and init[0] == "ddpm" else []
    return [name for name in config["ddpms"] if name in needed]
