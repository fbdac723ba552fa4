"""Stage train: members trained on a run's stores, with the study's epoch length when copies are augmented."""

from __future__ import annotations

import json

import torch

from ddpmseg.classifier.mlp import load_ensemble
from ddpmseg.config.load import default_variant_settings
from ddpmseg.features.sampler import PixelSampler
from ddpmseg.stages.train import train_members
from ddpmseg.classifier.training import study_batches_per_epoch

from .conftest import IGNORE, NUMBER_CLASS

SETTINGS = {**default_variant_settings(), "batch_size": 16, "max_epochs": 2, "epochs_before_stopping": 5}


def test_an_epoch_has_the_batches_of_the_original_views_and_each_member_is_saved(tmp_path, stores) -> None:
    store = stores("train", ["a", "b", "a-aug00", "b-aug00"])
    sampler = PixelSampler(store, IGNORE)
    batches = study_batches_per_epoch(sampler, original_views=2, batch_size=16)
    assert batches == sampler.pixels_of_first(2) // 16 < len(sampler) // 16
    assert study_batches_per_epoch(sampler, original_views=4, batch_size=16) is None  # no augmented copies

    models = [tmp_path / f"member{m}.pt" for m in (0, 1)]
    logs = [tmp_path / f"member{m}.json" for m in (0, 1)]
    progress = tmp_path / "progress" / "ensemble.pt"
    train_members(stores=[str(p) for p in store.paths], models=models, logs=logs, settings=SETTINGS,
                     original_images=2, number_class=NUMBER_CLASS, ignore_label=IGNORE, seed=0, members=[0, 1],
                     progress_file=progress)
    for member, log_path in enumerate(logs):
        log = json.loads(log_path.read_text())
        assert log["member"] == member and log["epochs"] == 2 and log["batches"] == 2 * batches
        assert log["training_views"] == 4 and log["noise_seed"] == 7
    ensemble = load_ensemble(models)
    assert ensemble[0](torch.zeros(3, store.feature_dim)).shape == (3, NUMBER_CLASS)
    assert not progress.exists()
