"""Bad configs stop the real snakemake at parse time with one line naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import (
    TINY_CONFIG,
    TINY_FLAGS,
    make_custom_dataset,
    snakemake,
    validate_dataset_run,
)

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["features"].update(fetures=1), "Additional properties are not allowed ('fetures' was unexpected)"),
        (lambda c: c.update(seeds="0"), "'0' is not of type 'array'"),
        (lambda c: c["datasets"]["tiny"].pop("number_class"), "'number_class' is a required property"),
        (lambda c: c["features"].update(blocks=[1, 9]), "features.blocks: block 9 is beyond the model's 4 decoder blocks"),
        (lambda c: c["features"].update(steps=[50, 1000]), "features.steps: step 1000 is outside [0, diffusion_steps=1000)"),
        (lambda c: c["datasets"]["tiny"].update(ddpm="nope"), "datasets.tiny.ddpm: 'nope' is not a key of ddpms"),
        (lambda c: c["variants"]["baseline"].update(optimiser="adamw"), "('optimiser' was unexpected)"),
        (lambda c: c["ddpms"]["tiny_ddpm"]["images"].append("/no/such/cells"),
         "config: ddpms.tiny_ddpm.images: /no/such/cells does not exist"),
        (lambda c: c["ddpms"]["tiny_ddpm"].update(init="imagenet_uncnd"),
         "config: ddpms.tiny_ddpm.init: 'imagenet_uncnd' is neither a DDPM of this config, a checkpoint of the registry"),
        (lambda c: c["ddpms"]["tiny_ddpm"]["training"].pop("iterations"),
         "config: ddpms.tiny_ddpm.training: 'iterations' is a required property"),
    ],
)
def test_config_errors_stop_at_parse_time(tmp_path, edit, message) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    edit(config)
    result = snakemake(tmp_path, config, "-n", timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_a_deleted_mask_folder_stops_at_parse_time(tmp_path, tiny_checkpoint) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {"mine": {**make_custom_dataset(tmp_path / "custom"), "ddpm": "tiny"}}
    config["ddpms"] = {"tiny": {"source": "file", "checkpoint": str(tiny_checkpoint), "flags": TINY_FLAGS}}
    masks = Path(config["datasets"]["mine"]["train_masks"])
    for path in masks.iterdir():
        path.unlink()
    masks.rmdir()
    result = validate_dataset_run(tmp_path, config, "-n")
    assert result.returncode != 0
    assert f"config: datasets.mine.train_masks: {masks} does not exist" in result.stdout + result.stderr


def test_snakemake_prints_one_line_for_a_schema_error_and_takes_odd_allowed_names(tmp_path) -> None:
    from conftest import TINY_CONFIG, snakemake

    bad = copy.deepcopy(TINY_CONFIG)
    bad["datasets"]["tiny"]["number_clas"] = 5
    (tmp_path / "bad").mkdir()
    (tmp_path / "odd").mkdir()
    result = snakemake(tmp_path / "bad", bad, "-n", timeout=120)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0
    assert len(output) < 10 and not any("$schema" in line or "additionalProperties" in line for line in output)
    errors = [line for line in output if line.startswith("config: ")]
    assert errors == ["config: datasets.tiny: Additional properties are not allowed ('number_clas' was unexpected)"]
    assert output[-1] == errors[0]  # the one line is the last thing the user sees

    odd = copy.deepcopy(TINY_CONFIG)
    odd["datasets"] = {"cells.v2": odd["datasets"]["tiny"]}
    odd["ddpms"]["tiny_ddpm"]["images"] = ["resources/datasets/cells.v2/unlabelled"]  # trained on its images
    odd["variants"] = {"aug-drop": odd["variants"]["final"], "base_line": {}}
    result = snakemake(tmp_path / "odd", odd, "-n", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "results/scores/cells.v2/aug-drop/seed1/summary.csv" in result.stdout
