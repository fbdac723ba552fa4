"""The RGB control (a variant with ``features: rgb``): its runs train on rgb stores of their own image sets
and predict from rgb features in memory, made without any DDPM, beside the DDPM variants (real snakemake, dry
runs and one small run)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import TINY_CONFIG, dry_run, planned_jobs, snakemake

from ddpmseg.features.store import FeatureStore

pytestmark = pytest.mark.workflow

DDPM_JOBS = {"train_ddpm", "validate_ddpm", "extract_features"}


def _with_control(**control) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["variants"]["rgb_control"] = {"features": "rgb", **control}
    return config


def test_the_control_schedules_rgb_stores_of_its_image_sets_and_no_ddpm_job_for_itself(tmp_path) -> None:
    # tiny: 5 training images (2 shards of 4), 3 test images (1 shard); the control augments and flips
    # as the final variant does, so it shares final's copies and view
    config = _with_control(augmentation_scale=2, tta_views=[["HorizontalFlip"]])
    jobs = dry_run(tmp_path, config)
    assert jobs["extract_rgb_features"] == 2 + 2  # stores of train and the augmented copies
    assert jobs["extract_features"] == 2 * (2 + 2)  # the DDPM variants' training stores only, per noise seed
    assert jobs["augment_training_set"] == 1 and jobs["make_tta_view"] == 2  # shared with final
    assert jobs["train_members"] == 3 * 2 * 2 and jobs["collect_predictions"] == 3 * 2
    assert jobs["predict_test_shard"] == 2 + 1  # one test shard per noise seed, and the control's rgb one

    result = snakemake(tmp_path, config, "-n", "results/predictions/tiny/rgb_control/seed1", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    control_only = planned_jobs(result.stdout + result.stderr)
    assert not DDPM_JOBS & set(control_only), control_only
    # the rgb test shard predicts for every run of its folder, so it waits for both seeds' members
    assert control_only["extract_rgb_features"] == 4 and control_only["train_members"] == 2 * 2
    assert control_only["predict_test_shard"] == 1


def test_a_config_of_only_the_control_runs_without_a_ddpm(tmp_path) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    config["variants"] = {"rgb_control": {"features": "rgb", "tta_views": [["HorizontalFlip"]]}}
    config["seeds"], config["ensemble_size"] = [0], 1
    jobs = dry_run(tmp_path, config)  # the default target: tables and report
    assert not DDPM_JOBS & set(jobs), jobs

    result = snakemake(tmp_path, config, "results/scores/tiny/rgb_control/seed0/summary.csv", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (tmp_path / "resources" / "checkpoints").exists() and not (tmp_path / "results" / "ddpm").exists()
    store = FeatureStore(tmp_path / "results/features/tiny/train/rgb/shard0.zarr")
    assert store.feature_dim == 3 and store.attrs["feature_source"] == "rgb"
    for index in range(len(store)):
        np.testing.assert_allclose(store.activations(index)[0].float().numpy(), store.image(index) / 127.5 - 1,
                                   atol=1e-3, rtol=0)
    predictions = tmp_path / "results/predictions/tiny/rgb_control/seed0"
    test_names = sorted(p.stem for p in (tmp_path / "resources/datasets/tiny/real/test").glob("*.png"))
    assert sorted(p.stem for p in (predictions / "labels").iterdir()) == test_names
    assert (predictions / "labels_plain").is_dir()  # the flipped view voted
