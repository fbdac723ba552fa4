"""Rule of ``predict.smk``: the test images of one run labelled by its ensemble, with test-time
augmentation when the variant has views."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..classifier.mlp import load_ensemble
from ..base.errors import DdpmsegError
from ..base.files import save_npy, save_png
from ..prediction.predict import predict_image, uncertainty_score
from ..base.progress import progress_bar
from ..features.store import FeatureStore
from ..base.files import write_csv
from ..prediction.tta import tta_labels
from ..prediction.visualize import colourise, default_palette, prediction_panel


def predict_ensemble(
    *,
    stores: Sequence[str | Path],
    tta_stores: Sequence[str | Path],
    tta_folders: Sequence[str | Path],
    models: Sequence[str | Path],
    predictions: str | Path,
    tta_views: Sequence[Sequence[str]],
    number_class: int,
    ignore_label: int,
    palette: Sequence[Sequence[int]] | None = None,
) -> None:
    """Label every test image (``stores``, shard after shard) with the ensemble whose members' weights
    are ``models``.

    With TTA, ``tta_views`` lists the views, ``tta_folders`` their image sets (for the ``valid``
    masks) and ``tta_stores`` their stores, view after view, each with as many shards as ``stores``.
    Writes into ``predictions``: ``labels/`` (the final label maps), ``labels_plain/`` (the ensemble
    on the image alone, when TTA is on), colourised ``masks/``, ``panels/`` (image | ground truth |
    [plain |] final) and ``uncertainty.csv`` (JS score of the un-augmented image).
    """
    out_dir = Path(predictions)
    store = FeatureStore(stores)
    ensemble = load_ensemble(models)
    palette = palette or default_palette(number_class)
    views = [
        (list(view), view_store, Path(folder))
        for view, view_store, folder in zip(tta_views, _view_stores(tta_stores, len(tta_views)), tta_folders, strict=True)
    ]
    for view, view_store, _ in views:
        if view_store.names != store.names:
            raise DdpmsegError(f"{view_store.paths[0]}: images differ from the test split's ({'+'.join(view)})")
    rows = []
    for index in progress_bar(range(len(store)), desc="predict", unit="image"):
        name = store.names[index]
        plain, js = _labels(ensemble, store, index, number_class)
        final, shown_plain = plain, None
        if views:
            view_predictions = [
                (_labels(ensemble, view_store, index, number_class)[0], np.load(folder / "valid" / f"{name}.npy"), view)
                for view, view_store, folder in views
            ]
            final = tta_labels(plain, view_predictions, ignore_label, number_class)
            save_npy(out_dir / "labels_plain" / f"{name}.npy", plain)
            shown_plain = plain
        save_npy(out_dir / "labels" / f"{name}.npy", final)
        save_png(out_dir / "masks" / f"{name}.png", colourise(final, palette, ignore_label))
        image_panel = prediction_panel(
            store.image(index), store.labels(index), final, palette=palette, ignore_label=ignore_label, plain=shown_plain
        )
        save_png(out_dir / "panels" / f"{name}.png", image_panel)
        rows.append({"image": name, "uncertainty": uncertainty_score(js)})
    write_csv(out_dir / "uncertainty.csv", pd.DataFrame(rows))


def _view_stores(tta_stores: Sequence[str | Path], views: int) -> list[FeatureStore]:
    """The stores of each view: ``tta_stores`` holds the shards of every view, view after view."""
    if views == 0:
        return []
    if len(tta_stores) % views:
        raise DdpmsegError(f"{len(tta_stores)} TTA stores cannot be the same number of shards of {views} views")
    shards = len(tta_stores) // views
    return [FeatureStore(tta_stores[k * shards : (k + 1) * shards]) for k in range(views)]


def _labels(
    ensemble: Sequence[nn.Module], store: FeatureStore, index: int, number_class: int
) -> tuple[np.ndarray, torch.Tensor]:
    """(labels int32 numpy, JS uncertainty) of image ``index`` of a store."""
    labels, js = predict_image(ensemble, store.activations(index), store.image_size, number_class)
    return labels.numpy().astype(np.int32), js
