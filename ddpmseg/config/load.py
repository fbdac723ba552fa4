"""Reading a config: the YAML validated against the workflow's schema (workflow/schemas/config.schema.yaml,
the one home of every default), registry entries filled in, cross-checked. No torch: the Snakefile runs
this at every parse."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from .paths import REPO_ROOT


SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
_LONGEST_MESSAGE = 300


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


def load_config(
    path: str | Path, schema: str | Path = SCHEMA, *, workdir: str | Path = ".", cross_check: bool = True
) -> dict[str, Any]:
    """A config file validated against the workflow's schema with its defaults filled in, registry
    entries and diffusers folders resolved (a relative folder from ``workdir``, the workflow's working
    directory) and cross-checked (unless ``cross_check`` is false): what the Snakefile works with, for use
    outside Snakemake."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    try:
        validate_config(config, schema)
    except DdpmsegError as error:
        raise DdpmsegError(f"{path}: {error}") from None
    from .checks import check_config
    from .ddpms import resolve_diffusers
    from .registry import load_registry, resolve_registry

    config = resolve_diffusers(resolve_registry(config, load_registry()), workdir)
    if cross_check:
        check_config(config)
    return config
