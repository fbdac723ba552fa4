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

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def dataset_entry(name: str, registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the registry entry of dataset ``name`` (from ``registry``, default the loaded default one)."""
    return _entry("datasets", name, registry)


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
