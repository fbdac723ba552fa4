"""The fused ensemble: members stacked in one model train as if each were trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import IGNORE, train_settings, write_identity_store
from torch import nn

from ddpmseg.classifier.mlp import build_classifier
from ddpmseg.features.sampler import PixelSampler, member_seed, view_order_seed
from ddpmseg.features.store import FeatureStore
from ddpmseg.classifier.training import train_ensemble, train_member
from ddpmseg.classifier.settings import TrainSettings


def train_plainly(sampler, number_class: int, settings: TrainSettings, seed: int, member: int, batches_per_epoch=None):
    """The independent reference: ``build_classifier`` and ``torch.optim.Adam`` on the sampler's batches
    of one member, written as any torch user would (no stopping rule: tests keep it from firing)."""
    torch.manual_seed(member_seed(seed, member))
    model = build_classifier(sampler.feature_dim, number_class, settings.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    views = torch.Generator().manual_seed(view_order_seed(seed))
    pixels = torch.Generator().manual_seed(member_seed(seed, member))
    model.train()
    for _ in range(settings.max_epochs):
        for features, labels in sampler.epoch(views, pixels, settings.batch_size, batches_per_epoch):
            loss = nn.functional.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def assert_same_member(fused: nn.Sequential, alone: nn.Sequential, batches: int, lr: float = 1e-3) -> None:
    """The same member up to float rounding.

    The bias of a Linear followed by BatchNorm gets a gradient that vanishes in exact arithmetic
    (BatchNorm removes constant shifts), i.e. pure rounding noise, which Adam normalises into updates of
    up to lr; the shifted pre-activations then move a few ReLUs. So a few entries may differ by up to
    ``batches * lr``, while on average the weights agree to ~1e-6. A different initialisation, data order
    or dropout mask gives mean differences of 1e-3 or more (checked when writing this test).
    """
    loose = set()
    for index, module in enumerate(fused):
        if isinstance(module, nn.BatchNorm1d):
            linear = max(i for i in range(index) if isinstance(fused[i], nn.Linear))
            loose |= {f"{linear}.bias", f"{index}.running_mean"}
    for (name, a), b in zip(fused.state_dict().items(), alone.state_dict().values()):
        if not a.dtype.is_floating_point:
            assert torch.equal(a, b), name
            continue
        difference = (a - b).abs()
        assert difference.max() <= batches * lr, name
        if name not in loose:
            assert difference.mean() <= 1e-5, f"{name}: mean difference {difference.mean():.2e}"


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_ensemble_gives_each_member_its_separate_weights(tmp_path, dropout) -> None:
    write_identity_store(tmp_path / "s.zarr", views=6, extra_channels=10, identity=False)
    sampler = PixelSampler(FeatureStore(tmp_path / "s.zarr"), IGNORE)
    settings = train_settings(batch_size=16, max_epochs=2, epochs_before_stopping=5, dropout=dropout)
    fused = train_ensemble(sampler, 3, settings, seed=7, members=[0, 1, 2], batches_per_epoch=2, show_progress=False)
    for member, (model, log) in enumerate(fused):
        alone, alone_log = train_member(sampler, 3, settings, seed=7, member=member, batches_per_epoch=2, show_progress=False)
        assert log["batches"] == alone_log["batches"] == 4
        reference = train_plainly(sampler, 3, settings, seed=7, member=member, batches_per_epoch=2)
        assert_same_member(model, reference, batches=4)
        assert_same_member(alone, reference, batches=4)
    assert not torch.equal(fused[0][0][0].weight, fused[1][0][0].weight)


def test_fused_members_stop_on_their_own(tmp_path) -> None:
    write_identity_store(tmp_path / "s.zarr", views=6, extra_channels=10, identity=False)
    sampler = PixelSampler(FeatureStore(tmp_path / "s.zarr"), IGNORE)
    settings = train_settings(batch_size=16, max_epochs=4, epochs_before_stopping=1, patience=3, dropout=0.3)
    fused = train_ensemble(sampler, 3, settings, seed=7, members=[0, 1, 2], show_progress=False)
    batches = []
    for member, (model, log) in enumerate(fused):
        alone, alone_log = train_member(sampler, 3, settings, seed=7, member=member, show_progress=False)
        assert log["stopped_early"] and alone_log["stopped_early"]
        assert log["batches"] == alone_log["batches"] and log["epochs"] == alone_log["epochs"]
        np.testing.assert_allclose(log["epoch_losses"], alone_log["epoch_losses"], rtol=1e-3)
        batches.append(log["batches"])
    assert len(set(batches)) > 1  # members stopped after different numbers of batches: the batch shrank mid-training


def test_fused_ensemble_with_streamed_sampler_gives_each_member_its_separate_weights(tmp_path) -> None:
    write_identity_store(tmp_path / "s.zarr", views=6, extra_channels=10, identity=False)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, IGNORE, memory_budget_mb=0.002)
    assert sampler.streaming and sampler.buffer_views == 1  # one view per group: 4 batches of 32 cross groups
    settings = train_settings(batch_size=32, max_epochs=1, epochs_before_stopping=5)
    streamed = train_ensemble(sampler, 3, settings, seed=1, members=[0, 1], batches_per_epoch=4, show_progress=False)
    resident = train_ensemble(PixelSampler(store, IGNORE), 3, settings, seed=1, members=[0, 1], batches_per_epoch=4, show_progress=False)
    assert (streamed[1][0][0].weight - resident[1][0][0].weight).abs().mean() > 1e-4  # buffered order differs
    alone = train_plainly(sampler, 3, settings, seed=1, member=1, batches_per_epoch=4)
    assert_same_member(streamed[1][0], alone, batches=4)
