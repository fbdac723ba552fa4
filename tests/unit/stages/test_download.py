"""Stage download: archives (checked, recorded), checkpoints (only verified) and a dataset's folder."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import yaml

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.stages.download import (
    download_archive,
    download_checkpoint,
    extract_dataset,
)

RETRIES = {"retries": 0, "backoff_s": 0.01, "timeout_s": 5}


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def verify(source, lock, key, sha256=None) -> dict:
    return {"url": source.as_uri(), "sha256": sha256, "lock_file": str(lock), "lock_key": key}


def test_an_archive_is_recorded_once_it_reads_and_its_dataset_folder_extracted(tmp_path) -> None:
    data = tar_gz({"horse/real/train/000.png": b"png" * 100, "cat/real/train/000.png": b"x"})
    source, lock = tmp_path / "mirror" / "datasets.tar.gz", tmp_path / "lock.yaml"
    source.parent.mkdir()
    source.write_bytes(data)
    archive = tmp_path / "resources" / "datasets.tar.gz"
    download_archive(archive=archive, verify=verify(source, lock, "archives/datasets.tar.gz"), **RETRIES)
    assert archive.read_bytes() == data
    assert yaml.safe_load(lock.read_text())["archives/datasets.tar.gz"]["sha256"] == hashlib.sha256(data).hexdigest()

    extract_dataset(archive=archive, dataset=tmp_path / "horse", prefix="horse/",
                    verify=verify(source, lock, "archives/datasets.tar.gz"))
    assert [p.relative_to(tmp_path / "horse").as_posix() for p in (tmp_path / "horse").rglob("*.png")] == ["real/train/000.png"]


def test_a_checkpoint_is_only_verified_not_recorded_and_a_wrong_digest_keeps_nothing(tmp_path) -> None:
    source, lock = tmp_path / "mirror" / "ddpm.pt", tmp_path / "lock.yaml"
    source.parent.mkdir()
    source.write_bytes(b"weights" * 100)
    checkpoint = tmp_path / "resources" / "ddpm.pt"
    download_checkpoint(checkpoint=checkpoint, verify=verify(source, lock, "checkpoints/ddpm.pt"), **RETRIES)
    assert checkpoint.read_bytes() == source.read_bytes() and not lock.exists()

    other = tmp_path / "resources" / "other.pt"
    with pytest.raises(DdpmsegError, match="sha256"):
        download_checkpoint(checkpoint=other, verify=verify(source, lock, "checkpoints/other.pt", "0" * 64), **RETRIES)
    assert not other.exists()
