"""After a complete run, a change reruns exactly the stages it affects (dry runs of the real snakemake)."""

from __future__ import annotations

import copy
import os
import shutil

import torch
from conftest import REPO, make_custom_dataset
from test_pipeline import dry_run


def copied_run(demo_run, tmp_path):
    """A copy of the finished demo run (timestamps and Snakemake's metadata kept) to change freely."""
    workdir, config = demo_run
    target = tmp_path / "run"
    shutil.copytree(workdir, target, symlinks=True)
    return target, copy.deepcopy(config)


def test_a_dry_run_after_a_complete_run_plans_nothing(demo_run) -> None:
    workdir, config = demo_run
    assert dry_run(workdir, config) == {}


def test_changing_steps_or_blocks_plans_extraction_onward(demo_run) -> None:
    workdir, config = demo_run
    for key, value in (("steps", [50, 200]), ("blocks", [1, 3])):
        changed = copy.deepcopy(config)
        changed["features"][key] = value
        jobs = dry_run(workdir, changed)
        upstream = {"generate_demo_dataset", "train_demo_ddpm", "validate_ddpm", "validate_dataset",
                    "augment_training_set", "make_tta_view"}
        assert not upstream & set(jobs), (key, jobs)
        # every store, once per run seed's noise: tiny 2 train + 2 augmented + 1 test + 2 TTA shards;
        # custom 1 + 1 + 1 + 2
        assert jobs["extract_features"] == 2 * (7 + 5), key
        assert jobs["train_member"] == 2 * 2 * 2 * 2 and jobs["predict_ensemble"] == 8 and jobs["make_tables"] == 1


def test_new_checkpoint_content_at_the_same_path_plans_extraction_onward(demo_run, tmp_path) -> None:
    workdir, config = copied_run(demo_run, tmp_path)
    checkpoint = workdir / "resources/checkpoints/tiny_ddpm.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["out.2.bias"] = state["out.2.bias"] + 1.0
    torch.save(state, checkpoint)
    jobs = dry_run(workdir, config)
    assert "train_demo_ddpm" not in jobs and "validate_dataset" not in jobs and "augment_training_set" not in jobs
    assert jobs["validate_ddpm"] == 1
    assert jobs["extract_features"] == 24 and jobs["train_member"] == 16 and jobs["make_tables"] == 1


def test_listing_the_blocks_in_another_order_plans_nothing(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["features"]["blocks"] = config["features"]["blocks"][::-1]  # the model's order is taken
    assert dry_run(workdir, config) == {}


def test_adding_a_seed_plans_that_seeds_extraction_jobs_and_the_tables(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["seeds"] = [0, 1, 2]
    jobs = dry_run(workdir, config)
    assert "augment_training_set" not in jobs and "make_tta_view" not in jobs
    assert jobs["extract_features"] == 7 + 5  # every store under seed 2's noise
    assert jobs["train_member"] == 2 * 2 * 2  # datasets x variants x members, seed 2 only
    assert jobs["predict_ensemble"] == 4 and jobs["score_predictions"] == 4 and jobs["make_tables"] == 1


def test_adding_a_dataset_plans_that_datasets_jobs_and_the_tables(demo_run, tmp_path) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["datasets"]["another"] = {**make_custom_dataset(tmp_path / "another", seed=1), "ddpm": "tiny_ddpm"}
    jobs = dry_run(workdir, config)
    assert jobs["validate_dataset"] == 1 and jobs["augment_training_set"] == 1 and jobs["make_tta_view"] == 2
    assert jobs["extract_features"] == 2 * 5  # the new dataset's stores only, per run seed's noise
    assert jobs["train_member"] == 8 and jobs["predict_ensemble"] == 4 and jobs["make_tables"] == 1
    assert "train_demo_ddpm" not in jobs and "validate_ddpm" not in jobs


def test_editing_the_readme_or_a_test_plans_nothing(demo_run) -> None:
    workdir, config = demo_run
    touched = [REPO / "README.md", REPO / "tests" / "unit" / "test_metrics.py"]
    times = [(p.stat().st_atime, p.stat().st_mtime) for p in touched]
    try:
        for path in touched:
            os.utime(path)  # as if just edited
        assert dry_run(workdir, config) == {}
    finally:
        for path, (atime, mtime) in zip(touched, times):
            os.utime(path, (atime, mtime))


def test_one_shared_noise_seed_extracts_nothing_new_and_retrains_the_other_seeds(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["features"]["noise_seed"] = 0  # every run on the features of noise 0: seed 0's stores exist
    jobs = dry_run(workdir, config)
    assert "extract_features" not in jobs
    assert jobs["train_member"] == 2 * 2 * 2  # datasets x variants x members of seed 1 only
    assert jobs["predict_ensemble"] == 4 and jobs["make_tables"] == 1
