"""Checks and derived values of the workflow configuration (after JSON-schema validation).

A method variant is a set of settings: the classifier's (:class:`ddpmseg.classifier.training.TrainSettings`),
training-time augmentation (``augmentation_scale``, ``augmentation_p``, ``augmentation_seed``) and
test-time augmentation (``tta_views``, ``tta_seed``). ``variant_defaults`` gives every setting; a
variant overrides some of them.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..diffusion.model import check_feature_settings, model_flags
from ..base.errors import DdpmsegError
from ..diffusion.activations import model_order
from ..classifier.training import TrainSettings

SPLIT_COUNTS = {"train": "training_number", "test": "testing_number"}


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
        check_ddpm_source_keys(name, ddpm)
        if ddpm["source"] == TRAINED:
            check_ddpm_training(name, ddpm)
        try:
            flags = model_flags(ddpm["flags"])
        except DdpmsegError as error:
            raise DdpmsegError(f"ddpms.{name}.flags: {error}") from None
        check_feature_settings(flags, config["features"]["steps"], config["features"]["blocks"])
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
        for key, section in (("dataset", "datasets"), ("variant", "variants")):
            if entry[key] not in config[section]:
                raise DdpmsegError(f"apply.{name}.{key}: '{entry[key]}' is not a key of {section}")
        if entry["seed"] not in config["seeds"]:
            raise DdpmsegError(f"apply.{name}.seed: {entry['seed']} is not one of seeds {config['seeds']}")


TRAINED = "train"
# Keys of a ddpms entry that only one source has.
_SOURCE_KEYS = {"checkpoint": "file", "url": "registry", "registry_name": "registry", "images": TRAINED,
                "init": TRAINED, "training": TRAINED}
# The training settings in the order of :class:`ddpmseg.diffusion.training.loop.DdpmTrainingSettings` (a rule's
# params: a fixed order, so that listing them in another order in the config reruns nothing).
DDPM_TRAINING_SETTINGS = ("iterations", "batch_size", "microbatch", "lr", "weight_decay", "ema_rate", "save_every",
                          "log_every", "fp16", "schedule_sampler", "seed", "sample_count", "sample_steps")


def check_ddpm_source_keys(name: str, ddpm: dict[str, Any]) -> None:
    """A key of another source is a mistake (an ``images`` list on a file checkpoint would be ignored)."""
    for key, source in _SOURCE_KEYS.items():
        if key in ddpm and ddpm["source"] != source:
            raise DdpmsegError(f"ddpms.{name}.{key}: only a DDPM with source {source} has it (this one is {ddpm['source']})")
    if "flags" not in ddpm:
        raise DdpmsegError(f"ddpms.{name}.flags: required (or an init naming a DDPM of this config or the registry)")


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


def ddpm_training_settings(ddpm: dict[str, Any]) -> dict[str, Any]:
    """The settings of a trained DDPM's training, in a fixed order (``gpus`` and ``non_square`` are not
    among them: the first does not change the result, the second is the images' policy)."""
    return {key: ddpm["training"][key] for key in DDPM_TRAINING_SETTINGS}


def ddpm_training_gpus(config: dict[str, Any], name: str) -> int:
    """GPUs of a trained DDPM's training job: ``training.gpus``, default ``gpu_per_job``."""
    return int(config["ddpms"][name]["training"].get("gpus", config["gpu_per_job"]))


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
    from ..data.datasets import IMAGE_SUFFIXES, files_with_suffixes

    inputs: list[str] = []
    for folder in config["ddpms"][name]["images"]:
        dataset = generated_dataset_of(config, folder)
        if dataset is not None:
            inputs.append(f"resources/datasets/{dataset}")
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


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """Every setting of a variant: ``variant_defaults`` overridden by the variant's own keys."""
    defaults = config["variant_defaults"]
    overrides = config["variants"][variant]
    return {key: overrides.get(key, value) for key, value in defaults.items()}


def classifier_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The classifier's training settings among a variant's settings, as a plain dict (a rule's params)."""
    return asdict(TrainSettings.of(settings))


def augmentation_scale(config: dict[str, Any], dataset: str, variant: str) -> int:
    """Training-set enlargement of a variant on a dataset (a dataset's own scale wins when augmenting)."""
    scale = variant_settings(config, variant)["augmentation_scale"]
    if scale > 1:
        scale = config["datasets"][dataset].get("augmentation_scale", scale)
    return int(scale)


def augmentation_set(config: dict[str, Any], dataset: str, variant: str) -> str | None:
    """Name of the image set of augmented training copies (shared by variants with equal settings)."""
    scale = augmentation_scale(config, dataset, variant)
    if scale <= 1:
        return None
    settings = variant_settings(config, variant)
    return AugmentationSettings(scale=scale, p=settings["augmentation_p"], seed=settings["augmentation_seed"]).name


@dataclass(frozen=True)
class AugmentationSettings:
    """Settings of a set of augmented training copies, as its name encodes them (``aug-x5-p0.4-s0``)."""

    scale: int
    p: float
    seed: int

    @property
    def name(self) -> str:
        """The image set's name, which :func:`parse_augmentation_set` reads back."""
        return f"aug-x{self.scale}-p{self.p:g}-s{self.seed}"

    @property
    def copies(self) -> int:
        """Augmented copies of each training image (the original is not one of them)."""
        return self.scale - 1


def parse_augmentation_set(name: str) -> AugmentationSettings:
    """Settings encoded in an augmentation set name (see :func:`augmentation_set`)."""
    scale, p, seed = name.removeprefix("aug-").split("-")
    return AugmentationSettings(scale=int(scale[1:]), p=float(p[1:]), seed=int(seed[1:]))


def tta_views(config: dict[str, Any], variant: str) -> list[list[str]]:
    """The test-time augmentation views of a variant ([] = no TTA); a name stands for one of
    :data:`ddpmseg.prediction.tta.NAMED_TTA_VIEWS`."""
    # albumentations is imported when views are read, not with the config
    from ..prediction.tta import NAMED_TTA_VIEWS

    views = variant_settings(config, variant)["tta_views"]
    if isinstance(views, str):
        if views not in NAMED_TTA_VIEWS:
            raise DdpmsegError(
                f"variants.{variant}.tta_views: '{views}' is not one of {', '.join(NAMED_TTA_VIEWS)} or a list of views"
            )
        return [list(view) for view in NAMED_TTA_VIEWS[views]]
    return [list(view) for view in views]


PER_RUN_NOISE = "per_run"


def noise_seed_of_run(config: dict[str, Any], seed: int) -> int:
    """Seed of the noise behind a run's features: the run's own seed (``features.noise_seed: per_run``,
    as the reference does) or the one shared noise seed."""
    noise_seed = config["features"].get("noise_seed", PER_RUN_NOISE)
    return int(seed) if noise_seed == PER_RUN_NOISE else int(noise_seed)


def noise_seeds(config: dict[str, Any]) -> list[int]:
    """Every noise seed some run uses, in the order of ``seeds`` (one feature extraction each)."""
    return list(dict.fromkeys(noise_seed_of_run(config, seed) for seed in config["seeds"]))


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges of the shards of an image set of ``count`` images."""
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def shard_count(count: int, shard_size: int) -> int:
    return math.ceil(count / shard_size)


@dataclass(frozen=True)
class TtaViewSettings:
    """Settings of the image set of one test-time augmentation view, as its name encodes them
    (``tta-s0-togray+coarsedropout``): the view (transform names, applied in order) and the TTA seed."""

    view: tuple[str, ...]
    seed: int

    @property
    def name(self) -> str:
        """The image set's name, which :func:`parse_tta_set` reads back."""
        from ..prediction.tta import view_key

        return f"tta-s{self.seed}-{view_key(self.view)}"


def parse_tta_set(name: str) -> TtaViewSettings:
    """Settings encoded in a TTA image-set name (see :attr:`TtaViewSettings.name`)."""
    from ..prediction.tta import TTA_TRANSFORMS

    seed, _, key = name.removeprefix("tta-").partition("-")
    by_key = {transform.lower(): transform for transform in TTA_TRANSFORMS}
    keys = [] if key == "original" else key.split("+")
    if not (name.startswith("tta-s") and seed[1:].isdigit() and key and all(k in by_key for k in keys)):
        raise DdpmsegError(f"{name}: not the name of a TTA view's image set (tta-s<seed>-<transform>+...)")
    return TtaViewSettings(view=tuple(by_key[k] for k in keys), seed=int(seed[1:]))


def tta_set(view: list[str], seed: int) -> str:
    """Name of the image set of one test-time augmentation view."""
    return TtaViewSettings(view=tuple(view), seed=seed).name


def variant_tta_sets(config: dict[str, Any], variant: str) -> list[str]:
    seed = variant_settings(config, variant)["tta_seed"]
    return [tta_set(view, seed) for view in tta_views(config, variant)]


def feature_source(config: dict[str, Any], variant: str) -> str:
    """What a variant classifies each pixel from: ``ddpm`` (the method's DDPM features) or ``rgb``
    (the RGB control: the pixel's own values, :mod:`ddpmseg.features.rgb`)."""
    return variant_settings(config, variant)["features"]


def features_folder(config: dict[str, Any], variant: str, seed: int) -> str:
    """The folder, under each image set's, of the stores a run (variant, seed) trains and predicts on:
    ``rgb`` for the RGB control (no noise: one set of stores for every seed), else ``noise<n>`` of the
    run's noise seed."""
    if feature_source(config, variant) == "rgb":
        return "rgb"
    return f"noise{noise_seed_of_run(config, seed)}"


def variant_imagesets(config: dict[str, Any], dataset: str, variant: str) -> list[str]:
    """The image sets whose features a variant uses on a dataset: the splits, then its augmented
    training copies and its TTA views, if it has them."""
    augmented = augmentation_set(config, dataset, variant)
    return ["train", "test", *([augmented] if augmented else []), *variant_tta_sets(config, variant)]


def feature_imagesets(config: dict[str, Any], dataset: str, source: str) -> list[str]:
    """Every image set whose ``source`` features (``ddpm`` or ``rgb``) some variant uses on a dataset,
    in the order of first use; none when no variant uses that source."""
    imagesets = [
        imageset
        for variant in config["variants"]
        if feature_source(config, variant) == source
        for imageset in variant_imagesets(config, dataset, variant)
    ]
    return list(dict.fromkeys(imagesets))


def imageset_split(imageset: str) -> str:
    """Split folder (``real/<split>``) an image set is read from."""
    return "train" if imageset == "train" or imageset.startswith("aug-") else "test"


def imageset_count(config: dict[str, Any], dataset: str, imageset: str) -> int:
    """Number of images of an image set: a split, augmented training copies or a TTA view of the test split."""
    entry = config["datasets"][dataset]
    if imageset.startswith("aug-"):
        return entry["training_number"] * parse_augmentation_set(imageset).copies
    return entry[SPLIT_COUNTS[imageset_split(imageset)]]


REGISTRY_DATASET_FIELDS = (
    "ddpm", "number_class", "ignore_label", "training_number", "testing_number", "class_names", "palette",
)


def resolve_registry(config: dict[str, Any], registry: dict[str, Any]) -> dict[str, Any]:
    """The config with registry entries filled in (a new dict; ``config`` is left as it is).

    A dataset or DDPM with ``source: registry`` takes every field of its registry entry (named by
    ``registry_name``, default its own key) that it does not set itself; its ``url`` overrides the
    registry's (a mirror, a cache, a ``file://`` path) and the registry's sha256 still applies. A DDPM
    that a registry dataset names but the config lacks is added from the registry.
    """
    import copy

    resolved = copy.deepcopy(config)
    resolved.setdefault("ddpms", {})
    for name, dataset in resolved["datasets"].items():
        if dataset["source"] != "registry":
            continue
        key = dataset.get("registry_name", name)
        if key not in registry["datasets"]:
            raise DdpmsegError(f"datasets.{name}: '{key}' is not a dataset of the registry ({', '.join(registry['datasets'])})")
        entry = registry["datasets"][key]
        for field in REGISTRY_DATASET_FIELDS:
            dataset.setdefault(field, copy.deepcopy(entry[field]))
        dataset.setdefault("url", entry["archive"]["url"])
        dataset.setdefault("sha256", entry["archive"]["sha256"])
        dataset.setdefault("archive_prefix", entry["archive"]["prefix"])
        if dataset["ddpm"] not in resolved["ddpms"] and dataset["ddpm"] in registry["checkpoints"]:
            resolved["ddpms"][dataset["ddpm"]] = {"source": "registry"}
    for ddpm in list(resolved["ddpms"].values()):
        init = ddpm.get("init") if ddpm["source"] == TRAINED else None
        if init is not None and init not in resolved["ddpms"] and init in registry["checkpoints"]:
            resolved["ddpms"][init] = {"source": "registry"}
    for name, ddpm in resolved["ddpms"].items():
        if ddpm["source"] != "registry":
            continue
        key = ddpm.get("registry_name", name)
        if key not in registry["checkpoints"]:
            raise DdpmsegError(f"ddpms.{name}: '{key}' is not a checkpoint of the registry ({', '.join(registry['checkpoints'])})")
        entry = registry["checkpoints"][key]
        ddpm["flags"] = {**entry["flags"], **ddpm.get("flags", {})}
        ddpm.setdefault("url", entry["url"])
        ddpm.setdefault("sha256", entry["sha256"])
    inherited: set[str] = set()
    for name in resolved["ddpms"]:
        _inherit_init_flags(resolved["ddpms"], name, inherited=inherited, chain=())
    return resolved


def _inherit_init_flags(ddpms: dict[str, Any], name: str, *, inherited: set[str], chain: tuple[str, ...]) -> None:
    """A trained DDPM whose init names another DDPM takes that DDPM's flags as the defaults of its own
    (the initial weights must fit them), along a chain of such inits (``inherited``: names done)."""
    ddpm = ddpms[name]
    init = ddpm.get("init") if ddpm["source"] == TRAINED else None
    if init not in ddpms or name in inherited:
        return
    if init in chain + (name,):
        raise DdpmsegError(f"ddpms.{name}.init: '{init}' fine-tunes from {name} itself (a cycle of inits)")
    _inherit_init_flags(ddpms, init, inherited=inherited, chain=chain + (name,))
    ddpm["flags"] = {**ddpms[init].get("flags", {}), **ddpm.get("flags", {})}
    inherited.add(name)


def archive_name(url: str) -> str:
    """File name an archive is stored under in ``resources/archives/``: the last part of its URL."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise DdpmsegError(f"{url}: cannot name the archive after this URL")
    return name


SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
_LONGEST_MESSAGE = 300


def name_constraint(names: list[str]) -> str:
    """A wildcard regex matching exactly the given names (regex characters in them taken literally)."""
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


@functools.cache
def _schema_variant_defaults(schema: Path) -> dict[str, Any]:
    import yaml

    properties = yaml.safe_load(schema.read_text())["properties"]["variant_defaults"]["properties"]
    return {key: prop["default"] for key, prop in properties.items()}


def default_variant_settings(schema: str | Path = SCHEMA) -> dict[str, Any]:
    """The schema's ``variant_defaults`` (the paper's method): every variant setting's one default,
    for code outside a config (tests, benchmarks). A fresh copy each call."""
    return copy.deepcopy(_schema_variant_defaults(Path(schema).resolve()))


def _defaults_filling_validator(schema_doc: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator that fills in each property's schema default (a copy) before
    validating it, so defaults nested in defaulted objects are filled too, as Snakemake's
    ``validate(set_default=True)`` does."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema_doc)


def _error_line(error: Any) -> str:
    """One line for a schema error: the key path, then the problem (never the schema itself)."""
    path = [str(part) for part in error.absolute_path]
    if "propertyNames" in error.absolute_schema_path:
        rule = error.schema.get("description", f"it must match {error.schema.get('pattern')}")
        problem = f"name {error.instance!r} is not allowed: {rule}"
    else:
        problem = error.message
    if len(problem) > _LONGEST_MESSAGE:
        problem = problem[: _LONGEST_MESSAGE - 3] + "..."
    return f"{'.'.join(path)}: {problem}" if path else problem


def validate_config(config: dict[str, Any], schema: str | Path = SCHEMA) -> None:
    """Validate ``config`` against the workflow's schema, filling its defaults in (in place).

    Raises :class:`DdpmsegError` with one line naming the key path and the problem (the Snakefile and
    :func:`load_config` share this).
    """
    import jsonschema
    import yaml

    validator = _defaults_filling_validator(yaml.safe_load(Path(schema).read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise DdpmsegError(_error_line(error))


def load_config(path: str | Path, schema: str | Path = SCHEMA) -> dict[str, Any]:
    """A config file validated against the workflow's schema with its defaults filled in, registry
    entries resolved and cross-checked: what the Snakefile works with, for use outside Snakemake."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    try:
        validate_config(config, schema)
    except DdpmsegError as error:
        raise DdpmsegError(f"{path}: {error}") from None
    from .registry import load_registry

    config = resolve_registry(config, load_registry())
    check_config(config)
    return config


def check_paths(config: dict[str, Any]) -> None:
    """Every file or folder the config names exists (paths relative to the working directory).

    Snakemake takes a job whose outputs exist as done even when an input has gone, so without this a
    typo in a path, or a deleted split folder, would leave the old results standing with no word.
    """
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "folder":
            _require_path(f"datasets.{name}.path", Path(dataset["path"]))
            for split in SPLIT_COUNTS:
                _require_path(f"datasets.{name}.path", Path(dataset["path"]) / "real" / split)
        elif dataset["source"] == "folders":
            for key in ("train_images", "train_masks", "test_images", "test_masks"):
                _require_path(f"datasets.{name}.{key}", Path(dataset[key]))
    for name, ddpm in config["ddpms"].items():
        if ddpm["source"] == "file":
            _require_path(f"ddpms.{name}.checkpoint", Path(ddpm["checkpoint"]), folder=False)
        if ddpm["source"] == TRAINED:
            _check_training_paths(config, name)
    for name, entry in config.get("apply", {}).items():
        _check_apply_images(f"apply.{name}.images", Path(entry["images"]))


def _check_apply_images(key: str, folder: Path) -> None:
    """An apply: entry's folder holds images, no two of them with one name (their outputs' name)."""
    from ..data.datasets import IMAGE_SUFFIXES, check_unique_stems, files_with_suffixes

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
    from ..data.datasets import IMAGE_SUFFIXES, files_with_suffixes

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


def visible_gpu_count(
    environ: dict[str, str] | None = None, list_gpus: Callable[[], str | None] | None = None
) -> int:
    """How many GPUs this machine offers its jobs: those ``CUDA_VISIBLE_DEVICES`` names when it is set
    (``""`` or ``-1``: none), else the ``GPU n: ...`` lines of ``nvidia-smi -L`` (none without it).

    Cheaper than importing torch (about 2 s) at every parse of the workflow.
    """
    import os

    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
        return 0 if not devices or devices[0].startswith("-") else len(devices)
    listing = (list_gpus or _nvidia_smi_listing)()
    return sum(line.startswith("GPU ") for line in (listing or "").splitlines())


def _nvidia_smi_listing() -> str | None:
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def local_gpu_limit(*, visible_gpus: int, limit_given: bool, cluster: bool) -> int | None:
    """The ``gpu`` resource limit of a run: the machine's GPU count, so that jobs asking for a GPU
    (``gpu_per_job``) run one per GPU on a GPU machine, and side by side, as many as the cores allow,
    on a machine without one. None (no limit set here): the user gave one (``--resources gpu=N``, a
    profile's ``resources:``), jobs go to a cluster (which hands out the GPUs), or there is no GPU."""
    if limit_given or cluster or visible_gpus == 0:
        return None
    return visible_gpus
