"""Stage predict: the ensemble's labels, with the TTA vote over views when the variant has them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ddpmseg.classifier.mlp import load_ensemble
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.prediction.predict import predict_image
from ddpmseg.stages.predict import predict_ensemble
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
