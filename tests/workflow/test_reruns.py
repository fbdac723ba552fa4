"""After a complete run, a change reruns exactly the stages it affects, and a missing or changed input
is not ignored (dry runs of the real snakemake)."""

from __future__ import annotations

import copy
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import (
    REPO,
    TINY_FLAGS,
    dry_run,
    folder_config,
    make_custom_dataset,
    make_dataset,
    planned_jobs,
    resolved_config,
    snakemake,
    validate_dataset_run,
)
from PIL import Image

from ddpmseg.config import paths

pytestmark = pytest.mark.workflow


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
        upstream = {"generate_demo_dataset", "train_ddpm", "validate_ddpm", "validate_dataset",
                    "augment_training_set", "make_tta_view"}
        assert not upstream & set(jobs), (key, jobs)
        # every store, once per run seed's noise: tiny 2 train + 2 augmented shards; custom 1 + 1; the test
        # split is predicted from features in memory, one shard per dataset and noise seed
        assert jobs["extract_features"] == 2 * (4 + 2), key
        assert jobs["train_members"] == 2 * 2 * 2 * 2 and jobs["predict_test_shard"] == 2 * 2
        assert jobs["collect_predictions"] == 8 and jobs["make_tables"] == 1


def test_new_checkpoint_content_at_the_same_path_plans_extraction_onward(demo_run, tmp_path) -> None:
    workdir, config = copied_run(demo_run, tmp_path)
    checkpoint = workdir / "resources/checkpoints/tiny_ddpm.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["out.2.bias"] = state["out.2.bias"] + 1.0
    torch.save(state, checkpoint)
    jobs = dry_run(workdir, config)
    assert "train_ddpm" not in jobs and "validate_dataset" not in jobs and "augment_training_set" not in jobs
    assert jobs["validate_ddpm"] == 1
    assert jobs["extract_features"] == 12 and jobs["train_members"] == 16 and jobs["predict_test_shard"] == 4
    assert jobs["make_tables"] == 1


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
    assert jobs["extract_features"] == 4 + 2  # every store under seed 2's noise
    assert jobs["train_members"] == 2 * 2 * 2  # datasets x variants x members, seed 2 only
    assert jobs["predict_test_shard"] == 2  # one test shard of each dataset under seed 2's noise
    assert jobs["collect_predictions"] == 4 and jobs["score_predictions"] == 4 and jobs["make_tables"] == 1


def test_adding_a_dataset_plans_that_datasets_jobs_and_the_tables(demo_run, tmp_path) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["datasets"]["another"] = {**make_custom_dataset(tmp_path / "another", seed=1), "ddpm": "tiny_ddpm"}
    jobs = dry_run(workdir, config)
    assert jobs["validate_dataset"] == 1 and jobs["augment_training_set"] == 1 and jobs["make_tta_view"] == 2
    assert jobs["extract_features"] == 2 * 2  # the new dataset's stores only, per run seed's noise
    assert jobs["train_members"] == 8 and jobs["predict_test_shard"] == 2 and jobs["collect_predictions"] == 4
    assert jobs["make_tables"] == 1
    assert "train_ddpm" not in jobs and "validate_ddpm" not in jobs


def test_editing_the_readme_or_a_test_plans_nothing(demo_run) -> None:
    workdir, config = demo_run
    touched = [REPO / "README.md", REPO / "tests" / "unit" / "prediction" / "test_metrics.py"]
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
    assert jobs["train_members"] == 2 * 2 * 2  # datasets x variants x members of seed 1 only
    # noise 0's test shards now serve seed 1's runs too: one pass per dataset predicts all four runs again
    assert jobs["predict_test_shard"] == 2 and jobs["collect_predictions"] == 8 and jobs["make_tables"] == 1


def test_changing_a_tta_setting_plans_no_training(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["final"]["tta_views"] = [["HorizontalFlip"], ["ColorJitter"]]
    jobs = dry_run(workdir, config)
    assert "train_members" not in jobs and "augment_training_set" not in jobs
    assert jobs["make_tta_view"] == 2  # only the new view, of each dataset
    assert "extract_features" not in jobs  # the view's features are computed in memory by the test shards
    assert jobs["predict_test_shard"] == 2 * 2  # per dataset and noise seed, serving every run of it
    assert jobs["collect_predictions"] == 8 and jobs["score_predictions"] == 8 and jobs["make_tables"] == 1


def test_changing_a_regularisation_setting_plans_no_extraction(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["final"]["dropout"] = 0.3
    jobs = dry_run(workdir, config)
    assert "extract_features" not in jobs and "augment_training_set" not in jobs and "make_tta_view" not in jobs
    assert jobs["train_members"] == 2 * 2 * 2  # final only: 2 datasets x 2 seeds x 2 members
    assert jobs["predict_test_shard"] == 4 and jobs["collect_predictions"] == 8


def test_stored_test_features_give_byte_identical_tables_and_rerun_one_variants_prediction(demo_run, tmp_path) -> None:
    """features.store_test: the test split's and its views' stores, each run predicted from them: the same
    tables and predictions, byte for byte, as the default's features computed in memory."""
    workdir, config = copied_run(demo_run, tmp_path)
    config["features"]["store_test"] = True
    jobs = dry_run(workdir, config)  # the stores of the test split and its views, then each run from them
    assert jobs["extract_features"] == 2 * (3 + 3) and jobs["predict_ensemble"] == 8 and "train_members" not in jobs
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    in_memory = demo_run[0]
    for table in sorted((in_memory / "results/tables").iterdir()):
        assert (workdir / "results/tables" / table.name).read_bytes() == table.read_bytes(), table.name
    for labels in sorted((in_memory / "results/predictions").glob("*/*/seed*/labels*/*.npy")):
        assert (workdir / labels.relative_to(in_memory)).read_bytes() == labels.read_bytes(), labels
    config["variants"]["final"]["dropout"] = 0.3
    jobs = dry_run(workdir, config)
    assert "extract_features" not in jobs and jobs["train_members"] == 8
    assert jobs["predict_ensemble"] == 4 and jobs["score_predictions"] == 4  # final only


def test_variants_sharing_augmentation_settings_share_copies(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["augment_only"] = {"augmentation_scale": 2}
    jobs = dry_run(workdir, config)
    assert "augment_training_set" not in jobs and "extract_features" not in jobs  # the copies are cached
    assert jobs["train_members"] == 2 * 2 * 2


def test_missing_or_changed_inputs_after_a_complete_run_are_not_ignored(tmp_path, tiny_checkpoint) -> None:
    # Snakemake takes a job whose outputs exist as done: a typo in a path, or a split folder deleted
    # or changed after a complete run, used to give "Nothing to be done" and keep the old results.
    root = make_dataset(tmp_path / "data")
    config = folder_config(root, tiny_checkpoint)
    first = validate_dataset_run(tmp_path, config)
    assert first.returncode == 0, first.stderr[-3000:]

    typo = copy.deepcopy(config)
    typo["datasets"]["mine"]["path"] = f"{root}-typo"
    result = validate_dataset_run(tmp_path, typo, "-n")
    assert result.returncode != 0
    assert f"config: datasets.mine.path: {root}-typo does not exist" in result.stdout + result.stderr

    typo = copy.deepcopy(config)
    typo["ddpms"]["tiny"]["checkpoint"] = f"{tiny_checkpoint}.typo"
    result = validate_dataset_run(tmp_path, typo, "-n")
    assert result.returncode != 0
    assert f"config: ddpms.tiny.checkpoint: {tiny_checkpoint}.typo does not exist" in result.stdout + result.stderr

    for name in ("000.png", "000.npy"):  # a new training image: the validation runs again
        (root / "real/train" / name.replace("000", "009")).write_bytes((root / "real/train" / name).read_bytes())
    result = validate_dataset_run(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result.stdout + result.stderr) == {"validate_dataset": 1}

    for path in (root / "real/test").iterdir():
        path.unlink()
    (root / "real/test").rmdir()
    result = validate_dataset_run(tmp_path, config, "-n")
    assert result.returncode != 0
    assert f"config: datasets.mine.path: {root}/real/test does not exist" in result.stdout + result.stderr


def test_a_file_beside_the_splits_reruns_nothing_and_a_new_image_reruns_its_readers(tmp_path, tiny_checkpoint) -> None:
    """A user's dataset in the archive layout: the jobs that read its splits (validation, the augmented
    copies) depend on the split folders, not on the dataset's root (notes.txt beside real/ used to rerun
    every extraction, training and prediction, and not the validation)."""
    from ddpmseg.config.imagesets import augmentation_set

    root = make_dataset(tmp_path / "data")
    config = folder_config(root, tiny_checkpoint)
    augmented = paths.AUGMENTED.format(dataset="mine", augset=augmentation_set(resolved_config(config), "mine", "final"))
    result = snakemake(tmp_path, config, augmented, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "notes.txt").write_text("how the images were taken")
    result = snakemake(tmp_path, config, augmented, "-n", timeout=120)
    assert planned_jobs(result.stdout + result.stderr) == {}, result.stdout[-2000:]
    for name in ("000.png", "000.npy"):
        (root / "real/train" / name.replace("000", "009")).write_bytes((root / "real/train" / name).read_bytes())
    result = snakemake(tmp_path, config, augmented, "-n", timeout=120)
    assert planned_jobs(result.stdout + result.stderr) == {"validate_dataset": 1, "augment_training_set": 1}


TRAINED_CHECKPOINT = "resources/checkpoints/cells_ddpm.pt"


def trained_ddpm_config(images, tiny_checkpoint) -> dict:
    """One dataset on a checkpoint file, and a DDPM 'cells_ddpm' trained for one iteration on ``images``."""
    config = folder_config(make_dataset(images.parent / "data"), tiny_checkpoint)
    config["ddpms"]["cells_ddpm"] = {
        "source": "train", "images": [str(images)], "flags": copy.deepcopy(TINY_FLAGS),
        "training": {"iterations": 1, "batch_size": 2, "ema_rate": 0.9, "sample_count": 1, "sample_steps": 2},
    }
    return config


def planned_training(workdir, config) -> dict[str, int]:
    """Jobs a dry run plans for the trained DDPM's checkpoint."""
    result = snakemake(workdir, config, TRAINED_CHECKPOINT, "-n", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


def write_images(folder, count: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:03d}.png")


def test_a_trained_ddpm_reruns_only_when_its_images_flags_or_settings_change(tmp_path, tiny_checkpoint) -> None:
    images = tmp_path / "unlabelled"
    write_images(images, 3, seed=0)
    config = trained_ddpm_config(images, tiny_checkpoint)
    workdir = tmp_path / "run"
    workdir.mkdir()
    first = snakemake(workdir, config, TRAINED_CHECKPOINT, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert (workdir / "results/ddpm/cells_ddpm/samples.png").is_file()
    assert (workdir / "results/ddpm/cells_ddpm/state.pt").is_file()  # kept for a rerun to resume from
    assert planned_training(workdir, config) == {}

    def changed(edit) -> dict[str, int]:
        edited = copy.deepcopy(config)
        edit(edited["ddpms"]["cells_ddpm"])
        return planned_training(workdir, edited)

    retrain = {"train_ddpm": 1}
    assert changed(lambda d: d["flags"].update(dropout=0.1)) == retrain
    assert changed(lambda d: d["training"].update(lr=0.0002)) == retrain
    assert changed(lambda d: d["training"].update(iterations=2)) == retrain
    assert changed(lambda d: d["training"].update(non_square="center_crop")) == retrain
    assert changed(lambda d: d["training"].update(gpus=2)) == {}  # GPUs do not change the weights
    assert changed(lambda d: d["training"].update(gpus=1, nodes=2)) == {}  # nor do nodes
    assert changed(lambda d: d.update(training=dict(reversed(d["training"].items())))) == {}  # key order
    edited = copy.deepcopy(config)
    edited["features"]["steps"] = [10]  # the features' settings are not the DDPM's
    assert planned_training(workdir, edited) == {}

    first_image = images / "000.png"
    os.utime(first_image)  # rewritten with the same pixels
    assert planned_training(workdir, config) == {}
    write_images(tmp_path / "other", 1, seed=1)
    first_image.write_bytes((tmp_path / "other/000.png").read_bytes())  # another image under the same name
    assert planned_training(workdir, config) == retrain
    result = snakemake(workdir, config, TRAINED_CHECKPOINT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert planned_training(workdir, config) == {}
    (images / "notes.txt").write_text("not an image")
    assert planned_training(workdir, config) == {}
    shutil.copy(first_image, images / "new.png")  # one image more
    assert planned_training(workdir, config) == retrain
    (images / "new.png").unlink()
    assert planned_training(workdir, config) == {}
    (images / "001.png").unlink()  # one image less
    assert planned_training(workdir, config) == retrain


def test_a_fine_tuned_ddpm_waits_for_its_init_checkpoint(tmp_path, tiny_checkpoint) -> None:
    images = tmp_path / "unlabelled"
    write_images(images, 2, seed=0)
    config = trained_ddpm_config(images, tiny_checkpoint)
    config["ddpms"]["cells_ddpm"]["init"] = "lsun_horse"  # a registry checkpoint: downloaded first
    (tmp_path / "run").mkdir()
    assert planned_training(tmp_path / "run", config) == {"download_checkpoint": 1, "train_ddpm": 1}
    config["ddpms"]["cells_ddpm"]["init"] = "tiny"  # the config's checkpoint file: an input, nothing to make
    assert planned_training(tmp_path / "run", config) == {"train_ddpm": 1}
