"""End to end: the real snakemake on tiny configs in temporary working directories."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_FLAGS, make_dataset

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY_CONFIG = {
    "datasets": {
        "tiny": {
            "source": "demo",
            "ddpm": "tiny_ddpm",
            "number_class": 5,
            "ignore_label": 255,
            "training_number": 4,
            "testing_number": 3,
            "class_names": ["background", "disc", "square", "triangle", "ring"],
        }
    },
    "ddpms": {"tiny_ddpm": {"source": "demo", "flags": TINY_FLAGS}},
    "demo": {
        "seed": 0,
        "image_size": 32,
        "train_images": 4,
        "test_images": 3,
        "unlabelled_images": 6,
        "ddpm_training": {"iterations": 2, "batch_size": 2, "lr": 0.0001, "seed": 0},
    },
    "features": {"steps": [50, 300], "blocks": [1, 2], "noise_seed": 0, "batch_size": 2, "shard_size": 2},
    "variant_defaults": {"max_epochs": 2, "epochs_before_stopping": 1, "patience": 5},
    "variants": {
        "baseline": {},
        "final": {
            "dropout": 0.2,
            "optimizer": "adamw",
            "weight_decay": 0.0001,
            "augmentation_scale": 2,
            "tta_views": [["HorizontalFlip"], ["ToGray", "CoarseDropout"]],
        },
    },
    "seeds": [0, 1],
    "ensemble_size": 2,
}


def snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    config_path = workdir / "test-config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo_run")
    result = snakemake(workdir, TINY_CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result


def test_pipeline_produces_tables(demo_run) -> None:
    workdir, _ = demo_run
    tables = workdir / "results" / "tables"
    summary = pd.read_csv(tables / "miou.csv")
    assert sorted(summary["variant"]) == ["baseline", "final"]
    assert (summary["seeds"] == 2).all()
    assert summary["mean"].between(0, 100).all()
    per_seed = pd.read_csv(tables / "per_seed.csv")
    assert len(per_seed) == 4 and per_seed["miou"].between(0, 100).all()
    markdown = (tables / "miou.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split("|")[1].strip() for row in rows] == ["baseline", "final"]
    assert all("±" in row for row in rows)
    assert "(Δ " in rows[1]
    per_class = pd.read_csv(tables / "per_class.csv")
    assert len(per_class) == 2 * 2 * 5
    per_image = pd.read_csv(tables / "per_image.csv", dtype={"image": str})
    assert set(per_image["image"]) == {"0000", "0001", "0002"}
    assert per_image["uncertainty"].ge(0).all()
    assert {"miou", "miou_plain"} <= set(per_image.columns)
    baseline = per_image[per_image.variant == "baseline"]
    assert (baseline["miou"] == baseline["miou_plain"]).all()  # no TTA: the plain ensemble is the result


def test_pipeline_outputs_per_stage(demo_run) -> None:
    workdir, _ = demo_run
    import torch

    state = torch.load(workdir / "resources/checkpoints/tiny_ddpm.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    stores = sorted((workdir / "results/features/tiny/train").glob("shard*.zarr"))
    assert [s.name for s in stores] == ["shard0.zarr", "shard1.zarr"]
    log = yaml.safe_load((workdir / "results/models/tiny/final/seed1/member1.json").read_text())
    assert {"steps", "epochs", "final_loss", "wall_time_s"} <= set(log)
    assert log["settings"]["optimizer"] == "adamw" and log["settings"]["dropout"] == 0.2
    assert log["training_views"] == 8  # 4 originals + 4 augmented copies
    augmented = sorted((workdir / "results/augmented/tiny").iterdir())
    assert [p.name for p in augmented] == ["aug-x2-p0.4-s0"]
    tta = sorted(p.name for p in (workdir / "results/features/tiny").iterdir() if p.name.startswith("tta-"))
    assert tta == ["tta-s0-horizontalflip", "tta-s0-togray+coarsedropout"]
    final = workdir / "results/predictions/tiny/final/seed0"
    assert (final / "labels_plain/0001.npy").is_file()
    predictions = workdir / "results/predictions/tiny/baseline/seed0"
    labels = np.load(predictions / "labels/0001.npy")
    assert labels.shape == (32, 32) and labels.min() >= 0 and labels.max() < 5
    assert (predictions / "masks/0001.png").is_file() and (predictions / "panels/0001.png").is_file()
    assert (workdir / "logs/extract_features/tiny/test/shard1.log").is_file()


def test_second_run_does_nothing(demo_run) -> None:
    workdir, _ = demo_run
    again = snakemake(workdir, TINY_CONFIG)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stderr + again.stdout


def folder_config(dataset_root: Path, checkpoint: Path, flags: dict | None = None) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {
        "mine": {"source": "folder", "path": str(dataset_root), "ddpm": "tiny", "number_class": 3,
                 "ignore_label": 255, "training_number": 3, "testing_number": 2}
    }
    config["ddpms"] = {"tiny": {"source": "file", "checkpoint": str(checkpoint), "flags": flags or TINY_FLAGS}}
    return config


def test_bad_dataset_stops_before_extraction(tmp_path, tiny_checkpoint) -> None:
    root = make_dataset(tmp_path / "data")
    (root / "real/train/001.npy").unlink()
    result = snakemake(tmp_path, folder_config(root, tiny_checkpoint))
    assert result.returncode != 0
    assert f"ddpmseg error: {root}/real/train/001.png: missing mask 001.npy" in result.stderr
    assert not (tmp_path / "results/features").exists()


def test_checkpoint_not_fitting_flags_stops_before_extraction(tmp_path, tiny_checkpoint) -> None:
    root = make_dataset(tmp_path / "data")
    result = snakemake(tmp_path, folder_config(root, tiny_checkpoint, {**TINY_FLAGS, "learn_sigma": False}))
    assert result.returncode != 0
    assert "does not fit the model flags: parameter 'out.2.weight'" in result.stderr
    assert "check flag learn_sigma" in result.stderr
    assert not (tmp_path / "results/features").exists()


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
    ],
)
def test_config_errors_stop_at_parse_time(tmp_path, edit, message) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    edit(config)
    result = snakemake(tmp_path, config, "-n", timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_lint_and_format_are_clean() -> None:
    lint = subprocess.run([SNAKEMAKE, "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    fmt = subprocess.run([snakefmt, "--check", "."], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert fmt.returncode == 0, fmt.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    lines = output.split("Job stats:")[-1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def dry_run(workdir: Path, config: dict) -> dict[str, int]:
    result = snakemake(workdir, config, "-n", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


def test_changing_a_tta_setting_plans_no_training(demo_run) -> None:
    workdir, _ = demo_run
    config = copy.deepcopy(TINY_CONFIG)
    config["variants"]["final"]["tta_views"] = [["HorizontalFlip"], ["ColorJitter"]]
    jobs = dry_run(workdir, config)
    assert "train_member" not in jobs and "augment_training_set" not in jobs
    assert jobs["make_tta_view"] == 1  # only the new view
    assert jobs["extract_features"] == 2  # its 2 shards (3 test images, shard size 2)
    assert jobs["predict_ensemble"] == 2 and jobs["score_predictions"] == 2  # final, two seeds
    assert jobs["make_tables"] == 1


def test_changing_a_regularisation_setting_plans_no_extraction(demo_run) -> None:
    workdir, _ = demo_run
    config = copy.deepcopy(TINY_CONFIG)
    config["variants"]["final"]["dropout"] = 0.3
    jobs = dry_run(workdir, config)
    assert "extract_features" not in jobs and "augment_training_set" not in jobs and "make_tta_view" not in jobs
    assert jobs["train_member"] == 2 * 2  # final only: 2 seeds x 2 members
    assert jobs["predict_ensemble"] == 2


def test_variants_sharing_augmentation_settings_share_copies(demo_run) -> None:
    workdir, _ = demo_run
    config = copy.deepcopy(TINY_CONFIG)
    config["variants"]["augment_only"] = {"augmentation_scale": 2}
    jobs = dry_run(workdir, config)
    assert "augment_training_set" not in jobs and "extract_features" not in jobs  # the copies are cached
    assert jobs["train_member"] == 2 * 2


def test_fused_ensemble_plans_one_training_job_per_run(tmp_path) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    config["training"] = {"fused_ensemble": True, "memory_budget_mb": 64}
    jobs = dry_run(tmp_path, config)
    assert jobs["train_ensemble"] == 2 * 2  # variants x seeds
    assert "train_member" not in jobs
