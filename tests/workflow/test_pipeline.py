"""End to end: the real snakemake runs the tiny configs in temporary working directories, and plans
the paper's protocol."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    REPO,
    SNAKEMAKE,
    TINY_CONFIG,
    TINY_FLAGS,
    dry_run,
    folder_config,
    make_custom_dataset,
    make_dataset,
    planned_jobs,
    snakemake,
)

pytestmark = pytest.mark.workflow


def test_pipeline_produces_tables(demo_run) -> None:
    workdir, _ = demo_run
    tables = workdir / "results" / "tables"
    summary = pd.read_csv(tables / "miou.csv")
    assert sorted(zip(summary["dataset"], summary["variant"])) == [
        ("custom", "baseline"), ("custom", "final"), ("tiny", "baseline"), ("tiny", "final")
    ]
    assert (summary["seeds"] == 2).all()
    assert summary["mean"].between(0, 100).all()
    per_seed = pd.read_csv(tables / "per_seed.csv")
    assert len(per_seed) == 8 and per_seed["miou"].between(0, 100).all()
    markdown = (tables / "miou.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split("|")[1].strip() for row in rows[:2]] == ["baseline", "final"]
    assert "| variant | tiny | custom |" in markdown
    assert all("±" in row for row in rows)
    assert "(Δ " in rows[1]
    per_class = pd.read_csv(tables / "per_class.csv")
    assert len(per_class) == 2 * 2 * 5 + 2 * 2 * 3
    per_image = pd.read_csv(tables / "per_image.csv", dtype={"image": str})
    assert set(per_image[per_image.dataset == "tiny"]["image"]) == {"0000", "0001", "0002"}
    assert set(per_image[per_image.dataset == "custom"]["image"]) == {"img3", "img4", "img5"}
    assert per_image["uncertainty"].ge(0).all()
    assert {"miou", "miou_plain"} <= set(per_image.columns)
    baseline = per_image[per_image.variant == "baseline"]
    assert (baseline["miou"] == baseline["miou_plain"]).all()  # no TTA: the plain ensemble is the result


def test_pipeline_outputs_per_stage(demo_run) -> None:
    workdir, _ = demo_run
    import torch

    state = torch.load(workdir / "resources/checkpoints/tiny_ddpm.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    stores = sorted((workdir / "results/features/tiny/train/noise0").glob("shard*.zarr"))
    assert [s.name for s in stores] == ["shard0.zarr", "shard1.zarr"]  # 4 + 1 images
    # the test split and its TTA views are predicted from features computed in memory: no store, and the
    # test shards' folders are gone once gathered into each run's predictions
    assert not (workdir / "results/features/tiny/test").exists()
    assert not any((workdir / "results/features/tiny").glob("tta-*"))
    assert not (workdir / "results/prediction_shards").exists() or not any((workdir / "results/prediction_shards").rglob("*.npy"))
    log = yaml.safe_load((workdir / "results/models/tiny/final/seed1/member1.json").read_text())
    assert {"batches", "epochs", "final_loss", "wall_time_s"} <= set(log)
    assert log["settings"]["optimizer"] == "adamw" and log["settings"]["dropout"] == 0.2
    assert log["training_views"] == 10  # 5 originals + 5 augmented copies
    assert log["noise_seed"] == 1  # run seed 1 trains on the features of its own noise
    from ddpmseg.features.store import FeatureStore

    by_noise = [FeatureStore(workdir / f"results/features/tiny/train/noise{seed}/shard0.zarr") for seed in (0, 1)]
    assert [store.attrs["noise_seed"] for store in by_noise] == [0, 1]
    first, second = (store.activations(0)[0].float() for store in by_noise)
    assert (first - second).norm() / first.norm() > 0.05  # run seeds 0 and 1 have other features
    assert len(list((workdir / "results/features/tiny/train/noise1").glob("shard*.zarr"))) == 2  # 4 + 1 images
    augmented = sorted((workdir / "results/augmented/tiny").iterdir())
    assert [p.name for p in augmented] == ["aug-x2-p0.4-s0"]
    tta = sorted(p.name for p in (workdir / "results/tta/tiny").iterdir())
    assert tta == ["tta-s0-horizontalflip", "tta-s0-togray+coarsedropout"]
    final = workdir / "results/predictions/tiny/final/seed0"
    assert (final / "labels_plain/0001.npy").is_file()
    predictions = workdir / "results/predictions/tiny/baseline/seed0"
    labels = np.load(predictions / "labels/0001.npy")
    assert labels.shape == (32, 32) and labels.min() >= 0 and labels.max() < 5
    assert (predictions / "masks/0001.png").is_file() and (predictions / "panels/0001.png").is_file()
    assert (workdir / "logs/predict_test_shard/tiny/noise0/shard0.log").is_file()


def test_custom_dataset_was_cropped_and_resized(demo_run) -> None:
    workdir, _ = demo_run
    summary = json.loads((workdir / "results/datasets/custom/summary.json").read_text())
    assert summary["train"]["original_sizes"] == {"40x32": 1, "96x72": 1, "36x36": 1}  # img1: mask 48x36
    assert summary["test"]["class_pixels"][1] > 0 and summary["test"]["class_pixels"][2] > 0
    labels = np.load(workdir / "results/predictions/custom/baseline/seed0/labels/img4.npy")
    assert labels.shape == (32, 32)


def test_second_run_does_nothing(demo_run) -> None:
    workdir, config = demo_run
    again = snakemake(workdir, config)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stderr + again.stdout


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


def test_a_failed_run_ends_with_the_error_line(tmp_path, tiny_checkpoint) -> None:
    # The job's one line used to stand ~40 lines above the end, under Snakemake's own messages.
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {"mine": {**make_custom_dataset(tmp_path / "custom"), "ddpm": "tiny"}}
    config["ddpms"] = {"tiny": {"source": "file", "checkpoint": str(tiny_checkpoint), "flags": TINY_FLAGS}}
    bad_mask = Path(config["datasets"]["mine"]["test_masks"]) / "img4.png"
    bad_mask.write_bytes(b"not a png")
    config_path = tmp_path / "test-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(config_path),
               "--cores", "2", "results/datasets/mine/summary.json"]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if line.strip()]  # as the terminal shows them
    assert lines[-1].startswith(f"ddpmseg error: {bad_mask}: unreadable mask"), "\n".join(lines[-20:])
    assert sum(line.startswith("ddpmseg error:") for line in lines) == 2  # the job's, and the repeat


def test_fused_ensemble_plans_one_training_job_per_run(tmp_path) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    config["training"] = {"fused_ensemble": True, "memory_budget_mb": 64}
    jobs = dry_run(tmp_path, config)
    assert jobs["train_members"] == 2 * 2  # variants x seeds: one job per run


def paper_jobs(output: str) -> dict[tuple[str, str], int]:
    """(rule, dataset) -> number of jobs, from the job listing of a dry run."""
    counts: dict[tuple[str, str], int] = {}
    for block in re.split(r"\n(?=\[\w{3} \w{3} )", output):  # a job's lines follow its timestamp
        rule = re.search(r"^\s*(?:local)?rule (\w+):", block, re.M)
        dataset = re.search(r"wildcards: .*?dataset=([\w-]+)", block)
        if rule and dataset:
            key = (rule.group(1), dataset.group(1))
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_paper_config_dry_run_plans_the_published_protocol(tmp_path) -> None:
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
         str(REPO / "config" / "paper.yaml"), "--cores", "2", "-n"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    jobs = planned_jobs(output)
    assert jobs["download_archive"] == 1 and jobs["download_checkpoint"] == 4
    per_dataset = paper_jobs(output)
    # docs/method.md §1 (train, test) and the study's enlargement (x5, x4 for bedroom_28); shards of 10 images
    protocol = {"bedroom_28": (40, 20, 4), "ffhq_34": (20, 20, 5), "cat_15": (30, 20, 5),
                "horse_21": (30, 30, 5), "celeba_19": (20, 500, 5), "ade_bedroom_30": (50, 650, 5)}
    for dataset, (train, test, scale) in protocol.items():
        shards = -(-train // 10) + -(-train * (scale - 1) // 10)  # stores of the training images only
        assert per_dataset[("extract_dataset", dataset)] == 1
        assert per_dataset[("validate_dataset", dataset)] == 1
        assert per_dataset[("extract_features", dataset)] == 3 * shards, dataset  # per run seed's noise
        assert per_dataset[("train_members", dataset)] == 5 * 3  # variants x seeds, members fused
        assert per_dataset[("predict_test_shard", dataset)] == 3 * -(-test // 10)  # noise seeds x test shards
        assert per_dataset[("collect_predictions", dataset)] == 5 * 3
