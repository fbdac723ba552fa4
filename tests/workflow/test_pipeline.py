"""End to end: the real snakemake on tiny configs in temporary working directories."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
import tarfile
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
    make_custom_dataset,
    make_dataset,
    snakemake,
)


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
    stores = sorted((workdir / "results/features/tiny/test/noise0").glob("shard*.zarr"))
    assert [s.name for s in stores] == ["shard0.zarr"]
    log = yaml.safe_load((workdir / "results/models/tiny/final/seed1/member1.json").read_text())
    assert {"steps", "epochs", "final_loss", "wall_time_s"} <= set(log)
    assert log["settings"]["optimizer"] == "adamw" and log["settings"]["dropout"] == 0.2
    assert log["training_views"] == 10  # 5 originals + 5 augmented copies
    assert log["noise_seed"] == 1  # run seed 1 trains on the features of its own noise
    from ddpmseg.store import FeatureStore

    by_noise = [FeatureStore(workdir / f"results/features/tiny/test/noise{seed}/shard0.zarr") for seed in (0, 1)]
    assert [store.attrs["noise_seed"] for store in by_noise] == [0, 1]
    first, second = (store.activations(0)[0].float() for store in by_noise)
    assert (first - second).norm() / first.norm() > 0.05  # run seeds 0 and 1 have other features
    assert len(list((workdir / "results/features/tiny/train/noise1").glob("shard*.zarr"))) == 2  # 4 + 1 images
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
    assert (workdir / "logs/extract_features/tiny/test/noise0/shard0.log").is_file()


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
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["final"]["tta_views"] = [["HorizontalFlip"], ["ColorJitter"]]
    jobs = dry_run(workdir, config)
    assert "train_member" not in jobs and "augment_training_set" not in jobs
    assert jobs["make_tta_view"] == 2  # only the new view, of each dataset
    assert jobs["extract_features"] == 2 * 2  # its 1 shard (3 test images, shard size 4), per dataset and seed
    assert jobs["predict_ensemble"] == 4 and jobs["score_predictions"] == 4  # final: 2 datasets x 2 seeds
    assert jobs["make_tables"] == 1


def test_changing_a_regularisation_setting_plans_no_extraction(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["final"]["dropout"] = 0.3
    jobs = dry_run(workdir, config)
    assert "extract_features" not in jobs and "augment_training_set" not in jobs and "make_tta_view" not in jobs
    assert jobs["train_member"] == 2 * 2 * 2  # final only: 2 datasets x 2 seeds x 2 members
    assert jobs["predict_ensemble"] == 4


def test_variants_sharing_augmentation_settings_share_copies(demo_run) -> None:
    workdir, config = demo_run
    config = copy.deepcopy(config)
    config["variants"]["augment_only"] = {"augmentation_scale": 2}
    jobs = dry_run(workdir, config)
    assert "augment_training_set" not in jobs and "extract_features" not in jobs  # the copies are cached
    assert jobs["train_member"] == 2 * 2 * 2


def test_fused_ensemble_plans_one_training_job_per_run(tmp_path) -> None:
    config = copy.deepcopy(TINY_CONFIG)
    config["training"] = {"fused_ensemble": True, "memory_budget_mb": 64}
    jobs = dry_run(tmp_path, config)
    assert jobs["train_ensemble"] == 2 * 2  # variants x seeds
    assert "train_member" not in jobs


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
        shards = -(-train // 10) + -(-train * (scale - 1) // 10) + 5 * -(-test // 10)  # + 4 TTA views
        assert per_dataset[("extract_dataset", dataset)] == 1
        assert per_dataset[("validate_dataset", dataset)] == 1
        assert per_dataset[("extract_features", dataset)] == 3 * shards, dataset  # per run seed's noise
        assert per_dataset[("train_member", dataset)] == 5 * 3 * 10  # variants x seeds x members
        assert per_dataset[("predict_ensemble", dataset)] == 5 * 3


def make_archive(path: Path, name: str) -> None:
    """A datasets.tar.gz in the paper's layout holding one small dataset ``name``."""
    source = path.parent / "archive-source"
    make_dataset(source / name, train=2, test=2, number_class=3)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / name, arcname=name)


def registry_config(archive_url: str, checkpoint_url: str) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {"horse_21": {"source": "registry", "url": archive_url, "training_number": 2, "testing_number": 2}}
    config["ddpms"] = {"lsun_horse": {"source": "registry", "url": checkpoint_url, "flags": TINY_FLAGS}}
    config["download"] = {"lock_file": "downloads.lock.yaml", "retries": 1, "backoff_s": 0.1, "timeout_s": 10}
    return config


def test_registry_dataset_and_checkpoint_are_downloaded_verified_and_locked(tmp_path, tiny_checkpoint) -> None:
    from test_download import LoopbackServer

    make_archive(tmp_path / "datasets.tar.gz", "horse_21")
    server = LoopbackServer()
    try:
        server.files["/datasets.tar.gz"] = (tmp_path / "datasets.tar.gz").read_bytes()
        server.files["/lsun_horse.pt"] = tiny_checkpoint.read_bytes()
        config = registry_config(server.url("/datasets.tar.gz"), server.url("/lsun_horse.pt"))
        work = tmp_path / "work"
        work.mkdir()
        targets = ["results/datasets/horse_21/summary.json", "results/ddpm/lsun_horse/check.json"]
        result = snakemake(work, config, *targets, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert sorted(r["path"] for r in server.requests) == ["/datasets.tar.gz", "/lsun_horse.pt"]
        lock = yaml.safe_load((work / "downloads.lock.yaml").read_text())
        assert lock["archives/datasets.tar.gz"]["sha256"] == hashlib.sha256(server.files["/datasets.tar.gz"]).hexdigest()
        assert lock["checkpoints/lsun_horse.pt"]["size"] == len(server.files["/lsun_horse.pt"])
        summary = json.loads((work / targets[0]).read_text())
        assert summary["train"]["images"] == 2 and summary["test"]["images"] == 2

        # Offline use: a checkpoint placed by hand is verified against the lock file, never downloaded.
        requests = len(server.requests)
        (work / "resources/checkpoints/lsun_horse.pt").write_bytes(b"not the locked checkpoint")
        result = snakemake(work, config, "--forcerun", "validate_ddpm", targets[1], timeout=300)
        assert result.returncode != 0
        assert re.search(r"lsun_horse\.pt: sha256 mismatch: expected [0-9a-f]{64} \(lock file .*\), got [0-9a-f]{64}",
                         result.stderr)
        assert len(server.requests) == requests
    finally:
        server.close()


def validate_dataset_run(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Only the validation of dataset 'mine' (seconds, no DDPM forward pass)."""
    return snakemake(workdir, config, "results/datasets/mine/summary.json", *args, timeout=300)


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
