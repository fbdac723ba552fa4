"""Registry datasets and checkpoints downloaded through the real snakemake from a loopback server:
verified, locked, and checked against the lock file when placed by hand."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, TINY_FLAGS, LoopbackServer, make_dataset, snakemake

pytestmark = pytest.mark.workflow


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
