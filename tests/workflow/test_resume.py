"""A run killed with SIGKILL during feature extraction, during training, or while predicting the test split
resumes with the documented commands, redoes only what was unfinished, and ends with tables byte-identical to
those of an uninterrupted run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, planned_jobs, snakemake

# One dataset, one variant, one seed, 4 training images (one extraction shard each for train and
# test); members train long enough to be caught mid-training (no early stop in 12 epochs of about
# 0.3 s each on 2 cores; the kill comes right after the first epoch saved by either member).
RESUME_CONFIG = copy.deepcopy(TINY_CONFIG)
RESUME_CONFIG["datasets"]["tiny"]["training_number"] = 4
RESUME_CONFIG["variants"] = {"baseline": {}}
RESUME_CONFIG["seeds"] = [0]
RESUME_CONFIG["variant_defaults"] = {"max_epochs": 12, "epochs_before_stopping": 12, "patience": 5}

TABLES = ["miou.md", "miou.csv", "per_seed.csv", "per_class.csv", "per_image.csv"]

pytestmark = pytest.mark.workflow


def start(workdir: Path, config: dict = RESUME_CONFIG, cores: int = 2) -> subprocess.Popen:
    (workdir / "test-config.yaml").write_text(__import__("yaml").safe_dump(config, sort_keys=False))
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
               str(workdir / "test-config.yaml"), "--cores", str(cores)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(process: subprocess.Popen, condition, timeout: float = 600) -> None:
    """SIGKILL the whole run (snakemake and its jobs) as soon as ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill the run"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def extracting(workdir: Path) -> bool:
    """A feature store is being written (its temporary folder exists) and the training has not begun."""
    return any((workdir / "results/features").glob("*/*/noise*/.shard*.tmp")) if (workdir / "results/features").exists() else False


def training_with_saved_progress(workdir: Path) -> bool:
    return any((workdir / "results/progress").glob("*/*/*/member*.pt")) if (workdir / "results/progress").exists() else False


def test_killed_run_resumes_to_identical_tables(tmp_path) -> None:
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    result = snakemake(reference, RESUME_CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]

    workdir = tmp_path / "killed"
    workdir.mkdir()
    kill_when(start(workdir), lambda: extracting(workdir))
    assert not (workdir / "results/models").exists()
    # The documented commands: unlock (SIGKILL leaves the lock), then run again; the default profile
    # reruns the incomplete jobs.
    assert snakemake(workdir, RESUME_CONFIG, "--unlock").returncode == 0
    kill_when(start(workdir), lambda: training_with_saved_progress(workdir))
    saved = sorted((workdir / "results/progress").glob("*/*/*/member*.pt"))
    assert snakemake(workdir, RESUME_CONFIG, "--unlock").returncode == 0
    result = snakemake(workdir, RESUME_CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]

    for name in TABLES:
        assert (workdir / "results/tables" / name).read_bytes() == (reference / "results/tables" / name).read_bytes(), name
    member = saved[0].relative_to(workdir / "results/progress").with_suffix(".json")
    log = json.loads((workdir / "results/models" / member).read_text())
    assert log["resumed_after_epoch"] is not None and log["resumed_after_epoch"] >= 1  # not from step 0
    assert not any((workdir / "results/progress").glob("*/*/*/member*.pt"))  # removed when done


def test_a_run_killed_while_predicting_the_test_split_resumes_shard_by_shard(tmp_path) -> None:
    """Test shards of 2 images: the run is killed once the first shard's predictions are complete; the next
    run plans only the other shard, and the tables equal an uninterrupted run's."""
    config = copy.deepcopy(RESUME_CONFIG)
    config["features"]["shard_size"] = 2
    config["variant_defaults"] = {"max_epochs": 2, "epochs_before_stopping": 1, "patience": 5}
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    # one core throughout: a job's thread count changes the order of its float sums, and so its last digits
    assert snakemake(reference, config, "--cores", "1").returncode == 0
    workdir = tmp_path / "killed"
    workdir.mkdir()
    shards = [workdir / f"results/prediction_shards/tiny/noise0/shard{index}" for index in (0, 1)]
    logs = [workdir / f"logs/predict_test_shard/tiny/noise0/shard{index}.log" for index in (0, 1)]

    def one_shard_done_and_the_other_begun() -> bool:
        # on one core Snakemake finishes a job (its records included) before it starts the next
        return any(shards[i].is_dir() and logs[1 - i].exists() for i in (0, 1))

    kill_when(start(workdir, config, cores=1), one_shard_done_and_the_other_begun)
    assert sum(shard.is_dir() for shard in shards) == 1
    assert snakemake(workdir, config, "--unlock").returncode == 0
    result = snakemake(workdir, config, "-n")
    assert planned_jobs(result.stdout + result.stderr)["predict_test_shard"] == 1
    result = snakemake(workdir, config, "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in TABLES:
        assert (workdir / "results/tables" / name).read_bytes() == (reference / "results/tables" / name).read_bytes(), name
