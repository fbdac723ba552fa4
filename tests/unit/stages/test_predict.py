"""Stage predict: the ensemble's labels, with the TTA vote over views when the variant has them, from stores or
from features computed in memory shard by shard (the same files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_FLAGS, make_dataset
from PIL import Image

from ddpmseg.classifier.mlp import load_ensemble
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.prediction.predict import predict_image
from ddpmseg.stages.features import extract_features
from ddpmseg.stages.predict import collect_predictions, predict_ensemble, predict_test_shard
from ddpmseg.stages.tta import make_tta_view
from ddpmseg.features.store import FeatureStore
from ddpmseg.base.files import save_json, sha256_file
from ddpmseg.prediction.tta import tta_labels
from ddpmseg.prediction.visualize import default_palette, prediction_panel

from .conftest import IGNORE, NUMBER_CLASS

NAMES = ["a", "b"]
SETTINGS = {"number_class": NUMBER_CLASS, "ignore_label": IGNORE}


def labels_of(ensemble, store, index: int) -> np.ndarray:
    return predict_image(ensemble, store.activations(index), store.image_size, NUMBER_CLASS)[0].numpy().astype(np.int32)


def test_without_views_the_labels_are_the_ensembles_and_the_panel_shows_image_truth_and_labels(
    tmp_path, stores, member_files
) -> None:
    test = stores("test", NAMES)
    models = member_files(test.feature_dim, 2)
    out = tmp_path / "predictions"
    predict_ensemble(stores=[str(test.paths[0])], tta_stores=[], tta_folders=[], models=models, predictions=out,
                     tta_views=[], palette=None, **SETTINGS)
    ensemble = load_ensemble(models)
    for index, name in enumerate(NAMES):
        labels = labels_of(ensemble, test, index)
        assert np.array_equal(np.load(out / "labels" / f"{name}.npy"), labels)
        expected = prediction_panel(test.image(index), test.labels(index), labels,
                                    palette=default_palette(NUMBER_CLASS), ignore_label=IGNORE)
        assert np.array_equal(np.asarray(Image.open(out / "panels" / f"{name}.png")), expected)
    assert not (out / "labels_plain").exists()
    assert pd.read_csv(out / "uncertainty.csv")["image"].tolist() == NAMES


def test_with_views_the_final_labels_are_the_vote_and_the_plain_ones_are_kept(tmp_path, stores, member_files) -> None:
    test = stores("test", NAMES)
    views = [["HorizontalFlip"], ["ToGray", "CoarseDropout"]]
    view_stores = [stores(f"view{k}", NAMES, seed=k + 1) for k in range(2)]
    folders = [tmp_path / f"view{k}" for k in range(2)]
    rng = np.random.default_rng(0)
    valids = {(k, name): rng.random((test.image_size,) * 2) > 0.3 for k in range(2) for name in NAMES}
    for (k, name), valid in valids.items():
        (folders[k] / "valid").mkdir(parents=True, exist_ok=True)
        np.save(folders[k] / "valid" / f"{name}.npy", valid)
    models = member_files(test.feature_dim, 2)
    out = tmp_path / "predictions"
    predict_ensemble(stores=[str(test.paths[0])], tta_stores=[str(s.paths[0]) for s in view_stores],
                     tta_folders=[str(f) for f in folders], models=models, predictions=out, tta_views=views,
                     palette=None, **SETTINGS)
    ensemble = load_ensemble(models)
    for index, name in enumerate(NAMES):
        plain = labels_of(ensemble, test, index)
        on_views = [(labels_of(ensemble, view_stores[k], index), valids[(k, name)], views[k]) for k in range(2)]
        assert np.array_equal(np.load(out / "labels_plain" / f"{name}.npy"), plain)
        assert np.array_equal(np.load(out / "labels" / f"{name}.npy"), tta_labels(plain, on_views, IGNORE, NUMBER_CLASS))
    panel = np.asarray(Image.open(out / "panels" / "a.png"))
    assert panel.shape[1] == 4 * test.image_size + 3 * 2  # image | truth | plain | final


def test_views_of_other_images_than_the_test_split_are_refused(tmp_path, stores, member_files) -> None:
    test, view = stores("test", NAMES), stores("view", ["a", "c"])
    with pytest.raises(DdpmsegError, match=r"view\.zarr: images differ from the test split's \(HorizontalFlip\)"):
        predict_ensemble(stores=[str(test.paths[0])], tta_stores=[str(view.paths[0])], tta_folders=[str(tmp_path)],
                         models=member_files(test.feature_dim, 1), predictions=tmp_path / "out",
                         tta_views=[["HorizontalFlip"]], **SETTINGS)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_test_shards_in_memory_give_the_files_that_predictions_from_stores_give(
    tmp_path, tiny_checkpoint, member_files
) -> None:
    """Features computed in memory by the shard jobs equal the stores' (float16, the same batches): every file
    of a run's predictions is byte-identical, with and without TTA views, over two shards and two runs."""
    root = make_dataset(tmp_path / "data", train=1, test=5, size=TINY_FLAGS["image_size"], number_class=NUMBER_CLASS)
    split = {"images": str(root / "real" / "test"), "masks": None, "non_square": None}
    size, views = TINY_FLAGS["image_size"], [["HorizontalFlip"], ["ToGray", "CoarseDropout"]]
    labels = {"number_class": NUMBER_CLASS, "ignore_label": IGNORE}
    folders = {f"v{k}": tmp_path / f"v{k}" for k in range(len(views))}
    for (name, folder), view in zip(folders.items(), views, strict=True):
        make_tta_view(images=folder, split=split, view=view, seed=0, testing_number=5, image_size=size, **labels)
    sources = {"test": split, **{name: {"images": str(folder / "real" / "test")} for name, folder in folders.items()}}
    save_json(tmp_path / "check.json", {"sha256": sha256_file(tiny_checkpoint)})
    features = {"flags": TINY_FLAGS, "steps": [10, 400], "blocks": [1, 2], "noise_seed": 3, "batch_size": 2}
    shards = [(0, 3), (3, 5)]
    stores = {name: [] for name in sources}
    for name, source in sources.items():
        for k, shard in enumerate(shards):
            stores[name].append(str(tmp_path / "stores" / f"{name}{k}.zarr"))
            extract_features(checkpoint=str(tiny_checkpoint), check=str(tmp_path / "check.json"), store=stores[name][-1],
                             split=source, split_size=5, shard=list(shard), **features, **labels)
    models = member_files(FeatureStore(stores["test"]).feature_dim, 4)
    runs = [{"variant": "final", "seed": 3, "imagesets": ["test", *folders], "views": views},
            {"variant": "baseline", "seed": 3, "imagesets": ["test"], "views": []}]
    members = {"final": models[:2], "baseline": models[2:]}
    for run in runs:
        tta_stores = [store for name in run["imagesets"][1:] for store in stores[name]]
        predict_ensemble(stores=stores["test"], tta_stores=tta_stores, tta_folders=[str(folders[n]) for n in run["imagesets"][1:]],
                         models=members[run["variant"]], predictions=tmp_path / "stored" / run["variant"],
                         tta_views=run["views"], palette=None, **labels)
    for k, shard in enumerate(shards):
        predict_test_shard(checkpoint=str(tiny_checkpoint), models=models, predictions=tmp_path / f"shard{k}", runs=runs,
                           imagesets=sources, tta_folders={n: str(f) for n, f in folders.items()}, shard=list(shard),
                           testing_number=5, palette=None, **features, **labels)
    for run in runs:
        collect_predictions(shards=[tmp_path / f"shard{k}" for k in range(len(shards))],
                            predictions=tmp_path / "memory" / run["variant"], variant=run["variant"], seed=3)
        stored, memory = tree(tmp_path / "stored" / run["variant"]), tree(tmp_path / "memory" / run["variant"])
        assert stored.keys() == memory.keys() and len(stored) >= 5 * 3 + 1
        assert stored == memory
    assert (tmp_path / "memory" / "final" / "labels_plain").is_dir() and not (tmp_path / "memory" / "baseline" / "labels_plain").exists()
