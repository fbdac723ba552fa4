"""Stages that check before they trust (ddpmseg/stages/download.py, validate.py, score.py), called as the rules call them.

The download steps trust a first download only after its content check: fetch (rules
download_archive, download_checkpoint), extract_dataset and validate_ddpm against a loopback server
(conftest's ``server``): a corrupt archive or a checkpoint that does not fit its flags never becomes
the lock file's reference. validate_dataset refuses unlabelled training masks; score_predictions
keeps image names pandas would read as missing values.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import NA_NAMES, TINY_FLAGS, make_dataset, raw_cells, write_sample

from ddpmseg.data.datasets import split_folder
from ddpmseg.data.download import load_lock, part_path
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.stages.download import (
    download_archive,
    download_checkpoint,
    extract_dataset,
)
from ddpmseg.stages.validate import validate_ddpm
from ddpmseg.base.files import write_csv

KEY_ARCHIVE, KEY_CHECKPOINT = "archives/datasets.tar.gz", "checkpoints/lsun_horse.pt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"horse_21/real/train/000.png": b"png" * 1000, "horse_21/big.bin": bytes(range(256)) * 4000}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_fetch(url, dest, lock, key) -> None:
    """The download rule of ``dest``'s kind: download_checkpoint for a ``.pt``, else download_archive."""
    settings = {"verify": {"url": url, "sha256": None, "lock_file": lock, "lock_key": key}, "retries": 0,
                "backoff_s": 0.01, "timeout_s": 5}
    if dest.suffix == ".pt":
        download_checkpoint(checkpoint=dest, **settings)
    else:
        download_archive(archive=dest, **settings)


def test_fetch_of_a_corrupt_archive_records_nothing_and_the_right_one_then_passes(server, tmp_path):
    good = archive_bytes()
    server.files["/datasets.tar.gz"] = good[: int(len(good) * 0.8)]  # complete transfer of a cut archive
    url, dest, lock = server.url("/datasets.tar.gz"), tmp_path / "datasets.tar.gz", tmp_path / "lock.yaml"
    with pytest.raises(DdpmsegError) as info:
        run_fetch(url, dest, lock, KEY_ARCHIVE)
    message = str(info.value)
    assert message.startswith(f"{url}: ") and "corrupt or truncated archive" in message and "\n" not in message
    assert not lock.exists() and not dest.exists() and not part_path(dest).exists()

    server.files["/datasets.tar.gz"] = good
    run_fetch(url, dest, lock, KEY_ARCHIVE)
    assert load_lock(lock) == {KEY_ARCHIVE: {"sha256": sha(good), "size": len(good)}}


def test_fetch_leaves_a_checkpoint_to_validate_ddpm_which_records_it_once_it_fits(server, tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    server.files["/lsun_horse.pt"] = data
    url, dest, lock = server.url("/lsun_horse.pt"), tmp_path / "lsun_horse.pt", tmp_path / "lock.yaml"
    run_fetch(url, dest, lock, KEY_CHECKPOINT)
    assert dest.read_bytes() == data
    assert not lock.exists()  # not trusted yet: the flags are not known here

    verify = {"url": url, "sha256": None, "lock_file": lock, "lock_key": KEY_CHECKPOINT}
    check_json = tmp_path / "check.json"
    with pytest.raises(DdpmsegError, match="does not fit the model flags"):
        validate_ddpm(checkpoint=dest, check=check_json, flags={**TINY_FLAGS, "num_channels": 64}, verify=verify)
    assert not lock.exists() and not check_json.exists()

    validate_ddpm(checkpoint=dest, check=check_json, flags=TINY_FLAGS, verify=verify)
    assert load_lock(lock) == {KEY_CHECKPOINT: {"sha256": sha(data), "size": len(data)}}
    assert json.loads(check_json.read_text())["sha256"] == sha(data)


def test_validate_ddpm_records_nothing_for_an_unloadable_checkpoint(tmp_path):
    checkpoint, lock = tmp_path / "lsun_horse.pt", tmp_path / "lock.yaml"
    checkpoint.write_bytes(b"<html>not a checkpoint</html>")
    verify = {"url": "http://127.0.0.1:9/lsun_horse.pt", "sha256": None, "lock_file": lock, "lock_key": KEY_CHECKPOINT}
    with pytest.raises(DdpmsegError, match=r"lsun_horse\.pt: not a loadable state_dict"):
        validate_ddpm(checkpoint=checkpoint, check=tmp_path / "check.json", flags=TINY_FLAGS, verify=verify)
    assert not lock.exists()
    assert checkpoint.exists()  # placed by hand: never deleted


def test_validate_ddpm_with_a_locked_digest_still_checks_the_flags(tmp_path, tiny_checkpoint):
    lock = tmp_path / "lock.yaml"
    lock.write_text(yaml.safe_dump({KEY_CHECKPOINT: {"sha256": sha(tiny_checkpoint.read_bytes()), "size": 1}}))
    verify = {"url": "http://127.0.0.1:9/lsun_horse.pt", "sha256": None, "lock_file": lock, "lock_key": KEY_CHECKPOINT}
    with pytest.raises(DdpmsegError, match="does not fit the model flags"):
        validate_ddpm(
            checkpoint=tiny_checkpoint, check=tmp_path / "check.json", flags={**TINY_FLAGS, "num_channels": 64}, verify=verify
        )
    validate_ddpm(checkpoint=tiny_checkpoint, check=tmp_path / "check.json", flags=TINY_FLAGS, verify=verify)
    assert json.loads((tmp_path / "check.json").read_text())["sha256"] == sha(tiny_checkpoint.read_bytes())


def test_extract_dataset_checks_a_hand_placed_archive_before_recording_it(tmp_path):
    good = archive_bytes()
    archive, lock = tmp_path / "datasets.tar.gz", tmp_path / "lock.yaml"
    archive.write_bytes(good[: len(good) // 2])
    verify = {"url": "http://127.0.0.1:9/datasets.tar.gz", "sha256": None, "lock_file": lock, "lock_key": KEY_ARCHIVE}
    with pytest.raises(DdpmsegError, match=r"datasets\.tar\.gz: corrupt or truncated archive"):
        extract_dataset(archive=archive, dataset=tmp_path / "horse_21", prefix="horse_21/", verify=verify)
    assert not lock.exists() and not (tmp_path / "horse_21").exists()

    archive.write_bytes(good)
    extract_dataset(archive=archive, dataset=tmp_path / "horse_21", prefix="horse_21/", verify=verify)
    assert load_lock(lock) == {KEY_ARCHIVE: {"sha256": sha(good), "size": len(good)}}
    assert (tmp_path / "horse_21" / "real" / "train" / "000.png").read_bytes() == b"png" * 1000


def test_score_predictions_with_images_named_like_missing_values(tmp_path) -> None:
    from ddpmseg.stages.score import score_predictions

    size, names = 4, sorted(NA_NAMES)  # the split's order
    labels = np.zeros((len(names), size, size), np.int64)
    labels[:, :, 2:] = 1
    for name, mask in zip(names, labels, strict=True):
        write_sample(tmp_path / "real" / "test", name, np.zeros((size, size, 3), np.uint8), mask)
    predictions = tmp_path / "predictions"
    (predictions / "labels").mkdir(parents=True)
    for index, name in enumerate(names):
        prediction = labels[index].copy()
        prediction[0, : index] = 1 - prediction[0, : index]  # image k: k wrong pixels in the first row
        np.save(predictions / "labels" / f"{name}.npy", prediction)
    write_csv(predictions / "uncertainty.csv", pd.DataFrame({"image": names, "uncertainty": [0.5, 0.1, 0.2, 0.3, 0.4]}))
    scores = {name: tmp_path / "scores" / f"{name}.csv" for name in ("summary", "per_class", "per_image")}
    score_predictions(predictions=predictions, **scores, split={"images": str(tmp_path / "real" / "test")},
                      testing_number=len(names), image_size=size, number_class=2, ignore_label=255)
    per_image = raw_cells(tmp_path / "scores" / "per_image.csv")
    assert per_image["image"].tolist() == names
    assert per_image["uncertainty"].astype(float).tolist() == [0.5, 0.1, 0.2, 0.3, 0.4]
    assert float(per_image["miou"].iloc[0]) == pytest.approx(100.0)
    # the second image ("NA"): one background pixel called foreground: IoU 7/8 and 8/9
    assert float(per_image["miou"].iloc[1]) == pytest.approx(100 * (7 / 8 + 8 / 9) / 2, rel=1e-5)


def test_validate_dataset_refuses_unlabelled_training_masks_only(tmp_path) -> None:
    from ddpmseg.stages.validate import validate_dataset

    root = make_dataset(tmp_path / "d")
    splits = {name: {"images": str(split_folder(root, name))} for name in ("train", "test")}
    np.save(root / "real" / "test" / "000.npy", np.full((32, 32), 255, np.uint8))
    validate_dataset(
        summary=tmp_path / "summary.json", splits=splits, counts={"train": 3, "test": 2}, image_size=32, number_class=3,
        ignore_label=255,
    )
    assert json.loads((tmp_path / "summary.json").read_text())["test"]["unscored_masks"] == ["000"]
    np.save(root / "real" / "train" / "002.npy", np.full((32, 32), 255, np.uint8))
    with pytest.raises(DdpmsegError, match=r"train/002\.npy: every pixel is the ignore_label 255"):
        validate_dataset(
            summary=tmp_path / "summary.json", splits=splits, counts={"train": 3, "test": 2}, image_size=32,
            number_class=3, ignore_label=255,
        )
