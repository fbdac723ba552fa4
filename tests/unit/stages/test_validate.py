"""Stage validate: a dataset's splits summarised, a checkpoint checked against its flags."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import TINY_FLAGS, make_dataset

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.stages.validate import validate_dataset, validate_ddpm


def test_validate_dataset_summarises_the_counted_images_of_each_split(tmp_path) -> None:
    root = make_dataset(tmp_path / "d", train=3, test=2, number_class=3)
    splits = {name: {"images": str(root / "real" / name)} for name in ("train", "test")}
    validate_dataset(summary=tmp_path / "summary.json", splits=splits, counts={"train": 2, "test": 2}, image_size=32,
                     number_class=3, ignore_label=255)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["number_class"] == 3 and summary["ignore_label"] == 255
    assert summary["train"]["images"] == 2 and summary["test"]["images"] == 2


def test_validate_ddpm_records_the_digest_of_a_checkpoint_that_fits_and_refuses_one_that_does_not(
    tmp_path, tiny_checkpoint
) -> None:
    check = tmp_path / "check.json"
    validate_ddpm(checkpoint=tiny_checkpoint, check=check, flags=TINY_FLAGS)
    record = json.loads(check.read_text())
    assert record["sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert record["flags"]["num_channels"] == TINY_FLAGS["num_channels"] and record["decoder_blocks"] > 0
    with pytest.raises(DdpmsegError, match="does not fit the model flags"):
        validate_ddpm(checkpoint=tiny_checkpoint, check=tmp_path / "other.json", flags={**TINY_FLAGS, "num_channels": 64})
    assert not (tmp_path / "other.json").exists()
