"""The registry of the paper's datasets and DDPM checkpoints (``workflow/registry.yaml``, docs/method.md §1-2).

``load_registry`` validates the YAML against ``workflow/schemas/registry.schema.yaml`` (JSON Schema
draft 2020-12) and checks what the schema cannot express: one class name and one colour per class, and
every dataset's ``ddpm`` among the checkpoints. Dataset entries carry the keys of a dataset in the
workflow config (``ddpm``, ``number_class``, ``ignore_label``, ``training_number``, ``testing_number``,
``class_names``, ``palette``) plus ``archive`` (``url``, ``sha256``, ``prefix``); checkpoint entries carry
``url``, ``sha256`` and the model ``flags``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..base.errors import DdpmsegError
from .ddpms import TRAINED
from .paths import REPO_ROOT

DEFAULT_REGISTRY = REPO_ROOT / "workflow" / "registry.yaml"
REGISTRY_SCHEMA = REPO_ROOT / "workflow" / "schemas" / "registry.schema.yaml"
_MAX_MESSAGE = 200


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DdpmsegError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "invalid YAML"
        raise DdpmsegError(f"{path}: unreadable {what} ({first})") from None


def _key(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def load_registry(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The validated registry (default ``workflow/registry.yaml``); :class:`DdpmsegError` names a bad key."""
    path = Path(path) if path is not None else DEFAULT_REGISTRY
    registry = _read_yaml(path, "registry")
    schema = _read_yaml(REGISTRY_SCHEMA, "registry schema")
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(registry))
    if error is not None:
        message = " ".join(error.message.split())
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        raise DdpmsegError(f"{path}: {_key(error.absolute_path)}: {message}")
    _check(path, registry)
    return registry


def _check(path: Path, registry: dict[str, Any]) -> None:
    checkpoints = registry["checkpoints"]
    archive_digests: dict[str, Any] = {}
    for name, dataset in registry["datasets"].items():
        number_class = dataset["number_class"]
        for key, what in (("class_names", "names"), ("palette", "colours")):
            if len(dataset[key]) != number_class:
                raise DdpmsegError(
                    f"{path}: datasets.{name}.{key}: {len(dataset[key])} {what} for number_class {number_class}"
                )
        if dataset["ddpm"] not in checkpoints:
            raise DdpmsegError(f"{path}: datasets.{name}.ddpm: '{dataset['ddpm']}' is not a key of checkpoints")
        archive = dataset["archive"]
        known = archive_digests.setdefault(archive["url"], archive["sha256"])
        if known != archive["sha256"]:
            raise DdpmsegError(
                f"{path}: datasets.{name}.archive.sha256: differs from another dataset's for {archive['url']}"
            )


def checkpoint_entry(name: str, registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the registry entry of DDPM checkpoint ``name``."""
    return _entry("checkpoints", name, registry)


def _entry(section: str, name: str, registry: dict[str, Any] | None) -> dict[str, Any]:
    registry = load_registry() if registry is None else registry
    entries = registry[section]
    if name not in entries:
        raise DdpmsegError(f"registry: unknown {section[:-1]} '{name}' (known: {', '.join(entries)})")
    return copy.deepcopy(entries[name])


def paper_model_flags(registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model flags shared by the paper's checkpoints (docs/method.md §2), as the registry writes them
    once (other flags keep guided-diffusion's defaults)."""
    return dict(checkpoint_entry("lsun_horse", registry)["flags"])


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
    resolved = copy.deepcopy(config)
    resolved.setdefault("ddpms", {})
    for name, dataset in resolved["datasets"].items():
        if dataset["source"] != "registry":
            continue
        entry = _registry_entry(registry, "datasets", name, dataset)
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
        entry = _registry_entry(registry, "checkpoints", name, ddpm)
        ddpm["flags"] = {**entry["flags"], **ddpm.get("flags", {})}
        ddpm.setdefault("url", entry["url"])
        ddpm.setdefault("sha256", entry["sha256"])
    inherited: set[str] = set()
    for name in resolved["ddpms"]:
        _inherit_init_flags(resolved["ddpms"], name, inherited=inherited, chain=())
    return resolved


def _registry_entry(registry: dict[str, Any], part: str, name: str, item: dict[str, Any]) -> dict[str, Any]:
    """The registry's entry for a config item: its ``registry_name``, default its own key."""
    key = item.get("registry_name", name)
    if key not in registry[part]:
        section, kind = ("datasets", "dataset") if part == "datasets" else ("ddpms", "checkpoint")
        raise DdpmsegError(f"{section}.{name}: '{key}' is not a {kind} of the registry ({', '.join(registry[part])})")
    return registry[part][key]


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
