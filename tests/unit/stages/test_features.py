"""Stage features: one shard of a split's features in a store, with the checkpoint's digest."""

from __future__ import annotations

import json

import numpy as np
from conftest import TINY_FLAGS, make_dataset

from ddpmseg.data import load_split
from ddpmseg.stages.features import extract_features
from ddpmseg.store import FeatureStore


def test_a_shard_holds_its_images_labels_and_the_checkpoints_digest(tmp_path, tiny_checkpoint) -> None:
    root = make_dataset(tmp_path / "d", train=3, test=1, number_class=3)
    split = {"images": str(root / "real" / "train")}
    check = tmp_path / "check.json"
    check.write_text(json.dumps({"sha256": "abc"}))
    extract_features(
        checkpoint=tiny_checkpoint, check=check, store=tmp_path / "shard1.zarr", split=split, split_size=3, shard=[1, 3],
        flags=TINY_FLAGS, steps=[50], blocks=[1], noise_seed=4, batch_size=2, number_class=3, ignore_label=255,
    )
    store = FeatureStore([tmp_path / "shard1.zarr"])
    names, images, masks = load_split(split, 3, 1, 3, image_size=32, number_class=3, ignore_label=255)
    assert store.names == names == ["001", "002"]
    assert np.array_equal(store.labels(1), masks[1]) and np.array_equal(store.image(0), images[0])
    assert store.attrs["checkpoint_sha256"] == "abc" and store.attrs["noise_seed"] == 4 and store.attrs["steps"] == [50]
