"""Cross-checks of a config that its schema cannot express, and checks that the files and folders it names
exist; each failure is one line naming the setting. No torch: the Snakefile runs them at every parse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..classifier.settings import TrainSettings
from ..data.datasets import split_folder
from ..data.listing import IMAGE_SUFFIXES, check_unique_stems, files_with_suffixes
from ..diffusion.diffusers_folder import require_diffusers
from ..diffusion.flags import check_feature_settings, model_flags, model_order
from ..diffusion.training.settings import DdpmTrainingSettings
from .ddpms import (
    _SOURCE_KEYS,
    DIFFUSERS,
    TRAINED,
    ddpm_init,
    ddpm_training_gpus,
    ddpm_training_nodes,
    ddpm_training_processes,
    ddpm_training_settings,
    generated_dataset_of,
)
from .imagesets import SPLIT_COUNTS
from .variants import tta_views, variant_settings


def check_config(config: dict[str, Any]) -> None:
    """Cross-field checks the schema cannot express; raises :class:`DdpmsegError` naming the setting."""
    for name, dataset in config["datasets"].items():
        ddpm = dataset["ddpm"]
        if ddpm not in config["ddpms"]:
            raise DdpmsegError(f"datasets.{name}.ddpm: '{ddpm}' is not a key of ddpms")
        for key, what in (("class_names", "names"), ("palette", "colours")):
            values = dataset.get(key)
            if values is not None and len(values) != dataset["number_class"]:
                raise DdpmsegError(
                    f"datasets.{name}.{key}: {len(values)} {what} for number_class {dataset['number_class']}"
                )
    for name, ddpm in config["ddpms"].items():
        if ddpm["source"] == DIFFUSERS:
            require_diffusers(f"ddpms.{name}.source")
        if ddpm["source"] == TRAINED:
            check_ddpm_init(config, name)
        check_ddpm_source_keys(name, ddpm)
        if ddpm["source"] == TRAINED:
            check_ddpm_training(name, ddpm)
            check_ddpm_processes(config, name)
        try:
            flags = model_flags(ddpm["flags"])
        except DdpmsegError as error:
            raise DdpmsegError(f"ddpms.{name}.flags: {error}") from None
        try:
            check_feature_settings(flags, config["features"]["steps"], config["features"]["blocks"])
        except DdpmsegError as error:
            raise DdpmsegError(f"{error}, of DDPM {name} (python -m ddpmseg.blocks CONFIG {name} lists its blocks)") from None
    model_order(config["features"]["blocks"])
    for variant in config["variants"]:
        TrainSettings.of(variant_settings(config, variant))
        tta_views(config, variant)
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise DdpmsegError("seeds: a seed is listed twice")
    check_apply_runs(config)


def check_apply_runs(config: dict[str, Any]) -> None:
    """Every ``apply`` entry names a run of this config: a dataset, a variant and one of the seeds."""
    for name, entry in config.get("apply", {}).items():
        check_run(config, dataset=entry["dataset"], variant=entry["variant"], seed=entry["seed"],
                  setting=lambda key, name=name: f"apply.{name}.{key}")


def check_run(config: dict[str, Any], *, dataset: str, variant: str, seed: int, setting: Callable[[str], str]) -> None:
    """(dataset, variant, seed) is a run of this config; ``setting(key)`` names where each was given
    (``apply.<entry>.dataset``, ``--dataset``) in the one-line error."""
    for key, value, section in (("dataset", dataset, "datasets"), ("variant", variant, "variants")):
        if value not in config[section]:
            raise DdpmsegError(f"{setting(key)}: '{value}' is not a key of {section} ({', '.join(config[section])})")
    if seed not in config["seeds"]:
        raise DdpmsegError(f"{setting('seed')}: {seed} is not one of seeds {config['seeds']}")


def check_ddpm_source_keys(name: str, ddpm: dict[str, Any]) -> None:
    """A key of another source is a mistake (an ``images`` list on a file checkpoint would be ignored)."""
    for key, source in _SOURCE_KEYS.items():
        if key in ddpm and ddpm["source"] != source:
            raise DdpmsegError(f"ddpms.{name}.{key}: only a DDPM with source {source} has it (this one is {ddpm['source']})")
    if "flags" not in ddpm:
        raise DdpmsegError(f"ddpms.{name}.flags: required (or an init naming a DDPM of this config or the registry)")


def check_ddpm_init(config: dict[str, Any], name: str) -> None:
    """A trained DDPM fine-tunes a guided-diffusion UNet: not a diffusers one."""
    init = ddpm_init(config, name)
    if init is not None and init[0] == "ddpm" and config["ddpms"][init[1]]["source"] == DIFFUSERS:
        raise DdpmsegError(
            f"ddpms.{name}.init: '{init[1]}' is a diffusers DDPM; the workflow trains and fine-tunes guided-diffusion UNets only"
        )


def check_ddpm_training(name: str, ddpm: dict[str, Any]) -> None:
    """The training settings of a trained DDPM that the schema cannot check alone."""
    training = ddpm["training"]
    microbatch, batch_size = training["microbatch"], training["batch_size"]
    if microbatch > batch_size:
        raise DdpmsegError(
            f"ddpms.{name}.training.microbatch: {microbatch} is more than batch_size {batch_size} (0: the whole batch)"
        )
    if ddpm.get("init") == name:
        raise DdpmsegError(f"ddpms.{name}.init: a DDPM cannot fine-tune from itself")
    try:
        DdpmTrainingSettings.of(ddpm_training_settings(ddpm))
    except DdpmsegError as error:
        raise DdpmsegError(f"ddpms.{name}.training: {error}") from None


def check_ddpm_processes(config: dict[str, Any], name: str) -> None:
    """Several nodes have GPUs on each (a SLURM job of several nodes asks for them per node), and the
    global batch splits evenly over the training's processes."""
    nodes, gpus = ddpm_training_nodes(config, name), ddpm_training_gpus(config, name)
    if nodes > 1 and gpus == 0:
        raise DdpmsegError(f"ddpms.{name}.training.nodes: {nodes} nodes need GPUs on each (training.gpus or gpu_per_job, now 0)")
    batch_size, processes = config["ddpms"][name]["training"]["batch_size"], ddpm_training_processes(config, name)
    if batch_size % processes:
        raise DdpmsegError(
            f"ddpms.{name}.training.batch_size: {batch_size} is not a multiple of the {processes} training processes "
            f"(nodes {nodes} x gpus {gpus})"
        )


def check_paths(config: dict[str, Any]) -> None:
    """Every file or folder the config names exists (paths relative to the working directory).

    Snakemake takes a job whose outputs exist as done even when an input has gone, so without this a
    typo in a path, or a deleted split folder, would leave the old results standing with no word.
    """
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "folder":
            _require_path(f"datasets.{name}.path", Path(dataset["path"]))
            for split in SPLIT_COUNTS:
                _require_path(f"datasets.{name}.path", split_folder(dataset["path"], split))
        elif dataset["source"] == "folders":
            for key in ("train_images", "train_masks", "test_images", "test_masks"):
                _require_path(f"datasets.{name}.{key}", Path(dataset[key]))
    for name, ddpm in config["ddpms"].items():
        if ddpm["source"] == "file":
            _require_path(f"ddpms.{name}.checkpoint", Path(ddpm["checkpoint"]), folder=False)
        if ddpm["source"] == DIFFUSERS:
            _require_path(f"ddpms.{name}.path", Path(ddpm["path"]))
        if ddpm["source"] == TRAINED:
            _check_training_paths(config, name)
    for name, entry in config.get("apply", {}).items():
        _check_apply_images(f"apply.{name}.images", Path(entry["images"]))


def _check_apply_images(key: str, folder: Path) -> None:
    """An apply: entry's folder holds images, no two of them with one name (their outputs' name)."""
    _require_path(key, folder)
    images = files_with_suffixes(folder, IMAGE_SUFFIXES)
    if not images:
        raise DdpmsegError(f"{key}: {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    try:
        check_unique_stems(images)
    except DdpmsegError as error:
        raise DdpmsegError(f"{key}: {error}") from None


def _check_training_paths(config: dict[str, Any], name: str) -> None:
    """A trained DDPM's image folders hold images (those a rule makes are checked when made) and its
    init is a DDPM of the config, of the registry or an existing file."""
    ddpm = config["ddpms"][name]
    for folder in ddpm["images"]:
        if generated_dataset_of(config, folder) is None:
            _require_path(f"ddpms.{name}.images", Path(folder))
            if not files_with_suffixes(Path(folder), IMAGE_SUFFIXES):
                raise DdpmsegError(f"ddpms.{name}.images: {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    init = ddpm_init(config, name)
    if init is not None and init[0] == "file" and not Path(init[1]).is_file():
        raise DdpmsegError(
            f"ddpms.{name}.init: '{init[1]}' is neither a DDPM of this config, a checkpoint of the registry "
            "(workflow/registry.yaml) nor an existing checkpoint file"
        )


def _require_path(key: str, path: Path, folder: bool = True) -> None:
    if not path.exists():
        raise DdpmsegError(f"{key}: {path} does not exist")
    if folder and not path.is_dir():
        raise DdpmsegError(f"{key}: {path} is not a folder")
    if not folder and not path.is_file():
        raise DdpmsegError(f"{key}: {path} is not a file")
