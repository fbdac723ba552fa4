"""Rules of ``predict.smk``: the test images of each run labelled by its ensemble, with test-time
augmentation when the variant has views.

By default (``features.store_test: false``) the test split's features are never stored:
``predict_test_shard`` computes the features of one shard of test images, and of their TTA views, in memory
(one DDPM pass per view and noise seed) and labels them with every run of that noise seed;
``collect_predictions`` gathers a run's shards into its predictions folder. With stored test features,
``predict_ensemble`` labels one run's test images from the stores. Both write the same files.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..base.errors import DdpmsegError
from ..base.files import atomic_directory, read_table, save_npy, save_png, write_csv
from ..base.progress import progress_bar
from ..classifier.mlp import load_ensemble
from ..data.datasets import Split, load_split
from ..diffusion.flags import model_flags
from ..diffusion.model import load_ddpm
from ..features.extract import channel_last_layers, feature_batches
from ..features.store import FeatureStore
from ..prediction.predict import predict_image, uncertainty_score
from ..prediction.tta import tta_labels
from ..prediction.visualize import colourise, default_palette, prediction_panel

UNCERTAINTY = "uncertainty.csv"
RUN_FILES = ("labels", "labels_plain", "masks", "panels")


@dataclass
class RunPredictions:
    """The predictions folder of one run, written image by image: ``labels/`` (the final label maps),
    ``labels_plain/`` (the ensemble on the image alone, when TTA is on), colourised ``masks/``,
    ``panels/`` (image | ground truth | [plain |] final) and, at :meth:`close`, ``uncertainty.csv`` (JS score
    of the un-augmented image)."""

    folder: Path
    number_class: int
    ignore_label: int
    palette: Sequence[Sequence[int]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, name: str, *, image: np.ndarray, truth: np.ndarray, plain: np.ndarray, js: torch.Tensor,
        views: Sequence[tuple[np.ndarray, np.ndarray, Sequence[str]]],
    ) -> None:
        """One test image: its plain labels and JS, and (labels, valid, view) of each TTA view."""
        final, shown_plain = plain, None
        if views:
            final = tta_labels(plain, list(views), self.ignore_label, self.number_class)
            save_npy(self.folder / "labels_plain" / f"{name}.npy", plain)
            shown_plain = plain
        save_npy(self.folder / "labels" / f"{name}.npy", final)
        save_png(self.folder / "masks" / f"{name}.png", colourise(final, self.palette, self.ignore_label))
        panel = prediction_panel(
            image, truth, final, palette=self.palette, ignore_label=self.ignore_label, plain=shown_plain
        )
        save_png(self.folder / "panels" / f"{name}.png", panel)
        self.rows.append({"image": name, "uncertainty": uncertainty_score(js)})

    def close(self) -> None:
        write_csv(self.folder / UNCERTAINTY, pd.DataFrame(self.rows, columns=["image", "uncertainty"]))


def labels_of(ensemble: Sequence[nn.Module], layers: Sequence[torch.Tensor], image_size: int, number_class: int):
    """(labels int32 numpy, JS uncertainty) of one image's channel-last activations."""
    labels, js = predict_image(ensemble, layers, image_size, number_class)
    return labels.numpy().astype(np.int32), js


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
    """Label every test image of one run from its stores (``stores``, shard after shard) with the ensemble
    whose members' weights are ``models``, into the folder ``predictions`` (:class:`RunPredictions`).

    With TTA, ``tta_views`` lists the views, ``tta_folders`` their image sets (for the ``valid`` masks) and
    ``tta_stores`` their stores, view after view, each with as many shards as ``stores``.
    """
    store = FeatureStore(stores)
    ensemble = load_ensemble(models)
    views = [
        (list(view), view_store, Path(folder))
        for view, view_store, folder in zip(tta_views, _view_stores(tta_stores, len(tta_views)), tta_folders, strict=True)
    ]
    for view, view_store, _ in views:
        if view_store.names != store.names:
            raise DdpmsegError(f"{view_store.paths[0]}: images differ from the test split's ({'+'.join(view)})")
    run = RunPredictions(Path(predictions), number_class, ignore_label, palette or default_palette(number_class))
    for index in progress_bar(range(len(store)), desc="predict", unit="image"):
        name = store.names[index]
        plain, js = labels_of(ensemble, store.activations(index), store.image_size, number_class)
        view_labels = [
            (labels_of(ensemble, view_store.activations(index), store.image_size, number_class)[0],
             np.load(folder / "valid" / f"{name}.npy"), view)
            for view, view_store, folder in views
        ]
        run.add(name, image=store.image(index), truth=store.labels(index), plain=plain, js=js, views=view_labels)
    run.close()


def _view_stores(tta_stores: Sequence[str | Path], views: int) -> list[FeatureStore]:
    """The stores of each view: ``tta_stores`` holds the shards of every view, view after view."""
    if views == 0:
        return []
    if len(tta_stores) % views:
        raise DdpmsegError(f"{len(tta_stores)} TTA stores cannot be the same number of shards of {views} views")
    shards = len(tta_stores) // views
    return [FeatureStore(tta_stores[k * shards : (k + 1) * shards]) for k in range(views)]


def predict_test_shard(
    *,
    checkpoint: str | Sequence[str],
    models: Sequence[str | Path],
    predictions: str | Path,
    runs: Sequence[Mapping[str, Any]],
    imagesets: Mapping[str, Mapping[str, Any]],
    tta_folders: Mapping[str, str],
    shard: Sequence[int],
    testing_number: int,
    flags: Mapping[str, Any],
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int | None,
    batch_size: int,
    number_class: int,
    ignore_label: int,
    palette: Sequence[Sequence[int]] | None = None,
) -> None:
    """Label test images ``shard = [start, stop)`` with every run in ``runs`` (each: ``variant``, ``seed``,
    ``imagesets``: ``test`` then its TTA views' image sets, ``views``: those views), into
    ``predictions/<variant>/seed<seed>/`` as :func:`predict_ensemble` writes a run's folder.

    The features of each image set (``imagesets``: where its images are) are computed in memory in the
    batches extraction would use, rounded to float16 as a store keeps them, once for all the runs that
    read them: the DDPM's (``checkpoint``, ``flags``, ``steps``, ``blocks``, ``noise_seed``), or the RGB
    control's when ``checkpoint`` is empty. ``models`` holds every run's members, run after run.
    ``tta_folders``: a TTA image set's folder (for its ``valid`` masks).
    """
    start, stop = shard
    flags = model_flags(flags)
    size = flags["image_size"]
    ddpm = load_ddpm(checkpoint, flags) if checkpoint else None
    palette = palette or default_palette(number_class)
    members = _split_members(models, len(runs))
    ensembles = [load_ensemble(paths) for paths in members]
    per_run: list[dict[str, Any]] = [{"plain": {}, "views": {}} for _ in runs]
    shown: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for imageset, source in imagesets.items():
        readers = [i for i, run in enumerate(runs) if imageset in run["imagesets"]]
        names, images, masks = load_split(
            Split.of(source), testing_number, start, stop, image_size=size, number_class=number_class,
            ignore_label=ignore_label,
        )
        if imageset == "test":
            shown = {name: (image, mask) for name, image, mask in zip(names, images, masks, strict=True)}
        batches = feature_batches(images, ddpm=ddpm, steps=steps, blocks=blocks, noise_seed=noise_seed,
                                  batch_size=batch_size)
        for first, activations in progress_bar(batches, desc=f"predict {imageset}", unit="batch"):
            for offset in range(next(iter(activations.values())).shape[0]):
                name, layers = names[first + offset], channel_last_layers(activations, offset)
                for i in readers:
                    labels, js = labels_of(ensembles[i], layers, size, number_class)
                    if imageset == "test":
                        per_run[i]["plain"][name] = (labels, js)
                    else:
                        valid = np.load(Path(tta_folders[imageset]) / "valid" / f"{name}.npy")
                        per_run[i]["views"].setdefault(name, {})[imageset] = (labels, valid)
    with atomic_directory(predictions) as tmp:
        for run, results in zip(runs, per_run, strict=True):
            writer = RunPredictions(tmp / run["variant"] / f"seed{run['seed']}", number_class, ignore_label, palette)
            view_sets = [name for name in run["imagesets"] if name != "test"]
            for name, (image, truth) in shown.items():
                plain, js = results["plain"][name]
                views = [(*results["views"][name][imageset], view)
                         for imageset, view in zip(view_sets, run["views"], strict=True)]
                writer.add(name, image=image, truth=truth, plain=plain, js=js, views=views)
            writer.close()


def _split_members(models: Sequence[str | Path], runs: int) -> list[list[str]]:
    if runs == 0 or len(models) % runs:
        raise DdpmsegError(f"{len(models)} member files cannot be the same number of members of {runs} runs")
    count = len(models) // runs
    return [[str(path) for path in models[k * count : (k + 1) * count]] for k in range(runs)]


def collect_predictions(*, shards: Sequence[str | Path], predictions: str | Path, variant: str, seed: int) -> None:
    """A run's predictions folder from its part of every test shard (``<shard>/<variant>/seed<seed>``), in
    shard order: the files :func:`predict_ensemble` writes for the whole test split."""
    parts = [Path(shard) / variant / f"seed{seed}" for shard in shards]
    with atomic_directory(predictions) as tmp:
        for part in parts:
            for kind in RUN_FILES:
                if (part / kind).is_dir():
                    shutil.copytree(part / kind, tmp / kind, dirs_exist_ok=True)
        write_csv(tmp / UNCERTAINTY, pd.concat([read_table(part / UNCERTAINTY) for part in parts], ignore_index=True))
