"""Stage features: one shard of a split's features in a store, with the checkpoint's digest; the RGB
control's shards, and the control run through the train, TTA and predict stages."""

from __future__ import annotations

import json

import numpy as np
from conftest import (
    SCENE_CLASS_IDS,
    TINY_FLAGS,
    colour_scene,
    make_dataset,
    write_sample,
)

from ddpmseg.classifier.mlp import load_ensemble
from ddpmseg.config.load import default_variant_settings
from ddpmseg.data.datasets import load_split
from ddpmseg.stages.features import extract_features, extract_rgb_features
from ddpmseg.stages.predict import predict_ensemble
from ddpmseg.stages.train import train_members
from ddpmseg.stages.tta import make_tta_view
from ddpmseg.features.store import FeatureStore


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


def _colour_dataset(root, *, train: int, test: int, size: int = 32):
    """Scenes whose class is the colour of the pixel (quadrants and a disc, each of one colour, with a
    little per-image noise): the RGB control can learn them. Classes 0..4."""
    rng = np.random.default_rng(0)
    image, ids = colour_scene(size)
    mask = np.searchsorted(SCENE_CLASS_IDS, ids)
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            noisy = np.clip(image.astype(int) + rng.integers(-12, 13, size=image.shape), 0, 255).astype(np.uint8)
            write_sample(root / "real" / split, f"{index:03d}", noisy, mask)
    return root


def test_an_rgb_shard_holds_the_images_scaled_to_minus_one_one_and_no_ddpm_attributes(tmp_path) -> None:
    root = make_dataset(tmp_path / "d", train=3, test=1, number_class=3)
    split = {"images": str(root / "real" / "train")}
    extract_rgb_features(store=tmp_path / "rgb.zarr", split=split, split_size=3, shard=[1, 3], image_size=16,
                         number_class=3, ignore_label=255)
    store = FeatureStore([tmp_path / "rgb.zarr"])
    names, images, masks = load_split(split, 3, 1, 3, image_size=16, number_class=3, ignore_label=255)
    assert store.names == names == ["001", "002"] and store.image_size == 16
    assert np.array_equal(store.all_labels(), masks) and np.array_equal(store.image(1), images[1])
    for index in range(2):
        np.testing.assert_allclose(store.activations(index)[0].float().numpy(), images[index] / 127.5 - 1, atol=1e-3, rtol=0)
    assert store.attrs["feature_source"] == "rgb" and store.attrs["noise_seed"] is None
    assert store.attrs["source"]["images"] == split["images"] and store.attrs["number_class"] == 3


def test_the_rgb_control_trains_and_labels_by_colour_through_the_stages_with_a_tta_view(tmp_path) -> None:
    root = _colour_dataset(tmp_path / "d", train=2, test=2)
    settings = {"image_size": 32, "number_class": 5, "ignore_label": 255}
    train_split, test_split = ({"images": str(root / "real" / s)} for s in ("train", "test"))
    extract_rgb_features(store=tmp_path / "train.zarr", split=train_split, split_size=2, shard=[0, 2], **settings)
    extract_rgb_features(store=tmp_path / "test.zarr", split=test_split, split_size=2, shard=[0, 2], **settings)
    view = tmp_path / "tta-flip"
    make_tta_view(images=view, split=test_split, view=["HorizontalFlip"], seed=0, testing_number=2, **settings)
    extract_rgb_features(store=tmp_path / "view.zarr", split={"images": str(view / "real" / "test")}, split_size=2,
                         shard=[0, 2], **settings)

    models = [tmp_path / f"member{m}.pt" for m in (0, 1)]
    train_members(
        stores=[str(tmp_path / "train.zarr")], models=models, logs=[tmp_path / f"member{m}.json" for m in (0, 1)],
        settings={**default_variant_settings(), "max_epochs": 8}, original_images=None, number_class=5,
        ignore_label=255, seed=0, members=[0, 1],
    )
    assert json.loads((tmp_path / "member0.json").read_text())["noise_seed"] is None
    assert all(member[0].in_features == 3 for member in load_ensemble(models))
    out = tmp_path / "predictions"
    predict_ensemble(stores=[str(tmp_path / "test.zarr")], tta_stores=[str(tmp_path / "view.zarr")],
                     tta_folders=[str(view)], models=models, predictions=out, tta_views=[["HorizontalFlip"]],
                     number_class=5, ignore_label=255)
    test = FeatureStore(tmp_path / "test.zarr")
    for index, name in enumerate(test.names):
        truth = test.labels(index)
        for folder in ("labels", "labels_plain"):
            accuracy = (np.load(out / folder / f"{name}.npy") == truth).mean()
            assert accuracy > 0.95, (name, folder, accuracy)  # the colour gives the class
