"""Cost estimates of a configuration, against the method's own numbers."""

from __future__ import annotations

import copy
import re

import pytest
from conftest import REPO

from ddpmseg.config.load import load_config
from ddpmseg.estimate import (
    activation_values,
    format_size,
    forward_seconds,
    main,
    noise_note,
    plan,
)
from ddpmseg.config.registry import paper_model_flags

PAPER_BLOCKS = [5, 6, 7, 8, 12]


def test_paper_activations_per_image_match_method_md() -> None:
    # docs/method.md §3: 1024, 512, 512, 512, 256 channels at 32, 32, 32, 64, 128 px per step
    per_step = 1024 * 32**2 + 2 * 512 * 32**2 + 512 * 64**2 + 256 * 128**2
    assert activation_values(paper_model_flags(), PAPER_BLOCKS) == per_step
    assert 3 * per_step / 1e6 == 25.165824  # "25.2 M values"


def test_paper_plan_counts_views_per_dataset() -> None:
    config = load_config(REPO / "config" / "paper.yaml")
    config["features"]["noise_seed"] = 0  # one shared noise: every image set extracted once
    rows = {row["dataset"]: row for row in plan(config)}
    horse = rows["horse_21"]
    assert horse["train_views"] == 30 + 30 * 4  # originals + augmented copies
    assert horse["test_views"] == 30 * 5  # the test images and their 4 TTA views
    assert horse["forward_passes"] == 3 * (150 + 150)
    assert rows["bedroom_28"]["train_views"] == 40 + 40 * 3  # enlarged four-fold
    # only the training views are stored by default; all 300 with features.store_test
    assert horse["stored_views"] == 150 and horse["store_bytes"] == 150 * 3 * 8_388_608 * 2
    assert horse["store_test_bytes"] == 300 * 3 * 8_388_608 * 2
    assert horse["prediction_jobs"] == 3 and horse["extraction_jobs"] == 15  # test shards of 10; train shards
    config["features"]["store_test"] = True
    kept = {row["dataset"]: row for row in plan(config)}["horse_21"]
    assert kept["store_bytes"] == horse["store_test_bytes"] and kept["prediction_jobs"] == 0
    assert kept["forward_passes"] == horse["forward_passes"] and kept["extraction_jobs"] == 30


def test_the_paper_config_fits_a_tenth_of_the_disk_with_no_more_forward_passes(capsys) -> None:
    config = load_config(REPO / "config" / "paper.yaml")
    rows = plan(config)
    stores, kept_all = sum(r["store_bytes"] for r in rows), sum(r["store_test_bytes"] for r in rows)
    assert stores <= 150e9 and sum(r["peak_bytes"] for r in rows) <= 150e9
    assert stores < kept_all / 7
    config["features"]["store_test"] = True
    assert sum(r["forward_passes"] for r in rows) == sum(r["forward_passes"] for r in plan(config))


def test_forward_cost_is_anchored_at_the_paper_model_and_scales_with_flops() -> None:
    # docs/method.md §2: about 8 s per forward pass of the 552.8 M-parameter model at 256 px on 2 CPU cores
    assert forward_seconds(paper_model_flags(), PAPER_BLOCKS) == pytest.approx(8.0, rel=0.05)
    demo = load_config(REPO / "config.yaml")
    demo_seconds = forward_seconds(demo["ddpms"]["demo_ddpm"]["flags"], demo["features"]["blocks"])
    assert demo_seconds < 0.1  # the demo's small UNet at 64 px: tens of milliseconds, not 8 s


@pytest.mark.parametrize("noise_seed,runs", [("per_run", 2), (None, 2), (0, 1)])
def test_demo_extraction_time_is_near_the_measured_one(noise_seed, runs) -> None:
    """The demo's DDPM jobs (extraction and test prediction) take about 51 s of job time per noise seed on 2
    cores; the estimate is within a factor of 2 of that."""
    config = load_config(REPO / "config.yaml")
    assert len(config["seeds"]) == 2
    config["features"].pop("noise_seed", None)  # missing key: per_run
    if noise_seed is not None:
        config["features"]["noise_seed"] = noise_seed
    (row,) = plan(config)
    # stores of train (1 shard) and its 4 copies (4 shards); the test split's 5 views in one shard per noise seed
    assert row["extraction_runs"] == runs and row["extraction_jobs"] == 5 * runs
    assert row["prediction_jobs"] == runs + 1  # and one for the RGB control's features
    demo = config["demo"]  # views: train, test, 4 augmented copies of train, 4 TTA views of test
    views = demo["train_images"] * 5 + demo["test_images"] * 5
    assert row["forward_passes"] == runs * views * 3  # x 3 steps
    per_noise_seed = row["extraction_s"] / runs
    assert 51 / 2 <= per_noise_seed <= 51 * 2, per_noise_seed


def test_small_sizes_are_printed_in_mb() -> None:
    assert format_size(377e6) == "377 MB"
    assert format_size(0.4e6) == "400 kB"
    assert format_size(2.5e9) == "2.5 GB" and format_size(358e9) == "358 GB"


def test_output_says_how_the_noise_seed_counts_extractions(capsys) -> None:
    main([str(REPO / "config.yaml")])
    out = capsys.readouterr().out
    demo = load_config(REPO / "config.yaml")
    assert f"features.noise_seed {demo['features']['noise_seed']}" in out  # as the demo config sets it
    assert "| 0 |" not in out and re.search(r"\| [\d.]+ (kB|MB|GB) \|", out)  # the demo's stores, not "0" GB
    per_run = copy.deepcopy(demo)
    per_run["features"]["noise_seed"] = "per_run"
    assert "every image set is extracted 2 times" in noise_note(per_run)
    per_run["features"].pop("noise_seed")
    assert "every image set is extracted 2 times" in noise_note(per_run)
    assert "every image set extracted once" in noise_note({**demo, "features": {"noise_seed": 7}})


def test_the_rgb_control_adds_no_forward_pass_and_its_small_stores_apart(capsys) -> None:
    config = load_config(REPO / "config.yaml")
    assert config["variants"]["rgb_control"] == {"features": "rgb"}
    without_control = copy.deepcopy(config)
    del without_control["variants"]["rgb_control"]
    config["variants"]["rgb_control"]["augmentation_scale"] = 3  # copies only the control uses
    (row,), (reference,) = plan(config), plan(without_control)
    for key in ("views", "train_views", "test_views", "forward_passes", "extraction_jobs", "extraction_s"):
        assert row[key] == reference[key], key  # the DDPM's work is the DDPM variants' only
    size = config["ddpms"]["demo_ddpm"]["flags"]["image_size"]
    train, test = config["demo"]["train_images"], config["demo"]["test_images"]
    assert row["rgb_views"] == train + test + train * 2 and row["rgb_jobs"] == 1 + 2  # stores: train, 2 copies each
    assert row["store_bytes"] - reference["store_bytes"] == (train + train * 2) * size * size * 3 * 2  # float16
    assert reference["rgb_views"] == 0
    main([str(REPO / "config.yaml")])
    assert f"RGB control (features: rgb): {train + test} views, 1 small store (counted in stores)" in capsys.readouterr().out
