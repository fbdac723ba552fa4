"""One source of truth for the configuration: the schema holds every key's meaning and
default, config/README.md's key reference is generated from it, and the shipped configs set only what
differs from those defaults."""

from __future__ import annotations

from typing import Any

import copy

import pytest
import yaml
from conftest import REPO

from ddpmseg.config.load import validate_config
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config.schema_doc import (
    BEGIN,
    END,
    NAME,
    NO_DEFAULT,
    load_schema,
    main,
    render,
    replace_block,
    schema_keys,
    undescribed,
)

CONFIG_README = REPO / "config" / "README.md"


def test_config_readme_is_generated_from_the_schema() -> None:
    text = CONFIG_README.read_text()
    assert replace_block(text, render(load_schema())) == text, (
        "config/README.md is out of date with workflow/schemas/config.schema.yaml: "
        "run python -m ddpmseg.config.schema_doc config/README.md"
    )


def test_every_key_has_a_description_and_appears_in_the_reference() -> None:
    keys = schema_keys(load_schema())
    assert undescribed(keys) == []
    text = CONFIG_README.read_text()
    for key in keys:
        assert f"`{key.path}`" in text, key.path
    assert "`variant_defaults.tta_views`" in text and "`ddpms.<name>.flags.learn_sigma`" in text


def test_every_schema_default_validates() -> None:
    schema = load_schema()
    assert invalid_defaults(schema) == []
    assert sum(key.default is not NO_DEFAULT for key in schema_keys(schema)) >= 30


JSON_SCHEMA_KEYWORDS = {
    "$schema", "$defs", "$ref", "title", "description", "default", "type", "enum", "const", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems", "maxItems",
    "uniqueItems", "properties", "additionalProperties", "required", "propertyNames", "minProperties",
    "oneOf", "allOf", "if", "then", "not",
}  # fmt: skip


def _unknown_keywords(node, path=""):
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _unknown_keywords(item, f"{path}/{index}")
    elif isinstance(node, dict):
        names_not_keywords = path.endswith(("/properties", "/$defs"))
        for key, value in node.items():
            if not names_not_keywords and key not in JSON_SCHEMA_KEYWORDS:
                yield f"{path}/{key}"
            yield from _unknown_keywords(value, f"{path}/{key}")


def test_schema_uses_only_json_schema_keywords() -> None:
    """An unquoted comma in a flow mapping's description cuts it and makes its tail a key that JSON
    Schema ignores (download.backoff_s said only "First wait before a retry")."""
    assert list(_unknown_keywords(load_schema())) == []


def test_an_invalid_default_is_found() -> None:
    schema = load_schema()
    schema["properties"]["variant_defaults"]["properties"]["optimizer"]["default"] = "sgd"
    schema["properties"]["ensemble_size"]["default"] = 0
    problems = invalid_defaults(schema)
    assert any(p.startswith("variant_defaults.optimizer: 'sgd' is not one of") for p in problems), problems
    assert any(p.startswith("ensemble_size: 0 is less than the minimum of 1") for p in problems), problems


def _settings(config: dict, prefix: str = ""):
    for key, value in config.items():
        yield f"{prefix}{key}", value
        if isinstance(value, dict):
            yield from _settings(value, f"{prefix}{key}.")


def _matches(pattern: str, path: str) -> bool:
    want, have = pattern.split("."), path.split(".")
    return len(want) == len(have) and all(w in (NAME, h) for w, h in zip(want, have))


def defaults_repeated(config: dict) -> list[str]:
    """Settings of ``config`` equal to the default they would get anyway: a key's schema default, and for
    a variant's key the (filled-in) ``variant_defaults`` value it overrides."""
    keys = [key for key in schema_keys(load_schema()) if key.default is not NO_DEFAULT and not key.is_mapping]
    filled = copy.deepcopy(config)
    validate_config(filled)
    repeated = []
    for path, value in _settings(config):
        parts = path.split(".")
        if parts[0] == "variants" and len(parts) == 3:
            if value == filled["variant_defaults"][parts[2]]:
                repeated.append(path)
        elif any(_matches(key.path, path) and value == key.default for key in keys):
            repeated.append(path)
    return repeated


@pytest.mark.parametrize("path", ["config/paper.yaml", "config.yaml"])
def test_shipped_configs_set_only_what_differs_from_the_defaults(path) -> None:
    config = yaml.safe_load((REPO / path).read_text())
    assert defaults_repeated(config) == []


def test_defaults_repeated_finds_a_repeated_default() -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["ensemble_size"] = 10
    config["features"]["noise_seed"] = "per_run"
    config["variants"]["final"]["lr"] = 0.001
    config["demo"] = {"unlabelled_images": 300, "seed": 3}
    config["ddpms"]["demo_ddpm"]["training"]["sample_steps"] = 50
    assert defaults_repeated(config) == [
        "ddpms.demo_ddpm.training.sample_steps", "features.noise_seed", "variants.final.lr", "ensemble_size",
        "demo.unlabelled_images",
    ]  # fmt: skip


SMALL_SCHEMA = {
    "$defs": {"settings": {"type": "object", "properties": {"lr": {"type": "number", "description": "Step."}}}},
    "type": "object",
    "required": ["runs"],
    "properties": {
        "runs": {"type": "array", "items": {"type": "integer", "minimum": 0}, "description": "Run seeds."},
        "defaults": {
            "$ref": "#/$defs/settings",
            "description": "Every variant's settings.",
            "default": {},
            "properties": {"lr": {"default": 0.1}},
        },
        "variants": {
            "type": "object",
            "description": "Variants | by name.",
            "additionalProperties": {"$ref": "#/$defs/settings"},
        },
        "mode": {"enum": ["a", "b"], "default": "a", "description": "A | B."},
    },
}


def test_render_merges_refs_lists_a_second_use_once_and_escapes_pipes() -> None:
    keys = schema_keys(SMALL_SCHEMA)
    assert [key.path for key in keys] == ["runs", "defaults", "defaults.lr", "variants", "mode"]
    lr = keys[2]
    assert (lr.description, lr.default) == ("Step.", 0.1)
    text = render(SMALL_SCHEMA)
    assert "list of (integer ≥ 0); **required**. Run seeds." in text
    assert "| `defaults.lr` | number | `0.1` | Step. |" in text
    assert "Variants \\| by name." not in text and "Variants | by name." in text  # prose, not a table cell
    assert "one of a, b; default `a`. A | B." in text


def test_render_refuses_a_key_without_description() -> None:
    schema = copy.deepcopy(SMALL_SCHEMA)
    del schema["$defs"]["settings"]["properties"]["lr"]["description"]
    with pytest.raises(DdpmsegError, match=r"no description for defaults\.lr$"):
        render(schema)


def test_replace_block_keeps_the_prose_and_needs_the_markers() -> None:
    text = f"# Title\n\nprose\n\n{BEGIN}\nold\n{END}\n\nmore prose\n"
    assert replace_block(text, "new\n") == f"# Title\n\nprose\n\n{BEGIN}\n\nnew\n\n{END}\n\nmore prose\n"
    with pytest.raises(DdpmsegError, match="needs one line"):
        replace_block("# no markers\n", "new")


def test_command_rewrites_and_checks_the_file(tmp_path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Configuration\n\n{BEGIN}\nstale\n{END}\n")
    assert main([str(readme), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main([str(readme)]) == 0
    assert main([str(readme), "--check"]) == 0
    assert readme.read_text().startswith("# Configuration\n\n") and "`features.steps`" in readme.read_text()


def invalid_defaults(schema: dict[str, Any]) -> list[str]:
    """``path: message`` for every key of the schema whose ``default`` fails the key's own schema."""
    import jsonschema

    problems = []
    for key in schema_keys(schema):
        if key.default is NO_DEFAULT:
            continue
        validator = jsonschema.Draft202012Validator({**key.node, "$defs": schema.get("$defs", {})})
        problems += [f"{key.path}: {error.message}" for error in validator.iter_errors(key.default)]
    return problems
