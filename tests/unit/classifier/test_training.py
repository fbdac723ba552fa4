"""Member training (docs/method.md §4): the stopping rule, the settings, the training loop and its
resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import IGNORE, train_settings, write_identity_store

from ddpmseg.classifier.mlp import load_member, save_member
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.features.sampler import PixelSampler
from ddpmseg.features.store import FeatureStore
from ddpmseg.classifier.training import (
    StoppingRule,
    TrainingProgress,
    train_ensemble,
    train_member,
)


def scripted_stop(losses: list[tuple[int, float]], rule: StoppingRule) -> int | None:
    for position, (epoch, loss) in enumerate(losses):
        if rule.update(epoch, loss):
            return position
    return None


def test_stopping_rule_on_scripted_losses() -> None:
    # Epochs 0..3 never stop, whatever the losses (the rule applies from epoch index 4).
    early = [(epoch, 1.0) for epoch in range(4) for _ in range(100)]
    # Epoch 4: first batch sets the best (0.5); 50 worse batches leave the counter at 50 (no stop);
    # one batch beating it (0.4) resets; then 51 batches that do not beat it (equal counts as not beating).
    epoch4 = [(4, 0.5)] + [(4, 0.6)] * 50 + [(4, 0.4)] + [(4, 0.4)] * 50 + [(4, 0.45)]
    losses = early + epoch4 + [(4, 0.1)] * 5
    stop = scripted_stop(losses, StoppingRule(4, 50))
    assert stop == len(early) + 1 + 50 + 1 + 50  # the 51st non-improving step after the reset


def test_stopping_rule_ignores_losses_before_it_applies() -> None:
    # A very low loss in epoch 3 is not the best: the rule's best starts inside epoch 4.
    losses = [(3, 0.01)] + [(4, 0.5)] + [(4, 0.49 - 0.001 * k) for k in range(60)]
    assert scripted_stop(losses, StoppingRule(4, 50)) is None
    rule = StoppingRule(11, 50)
    assert scripted_stop([(10, 5.0)] * 500, rule) is None
    assert scripted_stop([(11, 5.0)] * 52, StoppingRule(11, 50)) == 51


class ToySampler:
    """Two linearly separable classes of 2-D points, as a sampler."""

    def __init__(self, count: int = 640):
        rng = np.random.default_rng(0)
        self.points = torch.from_numpy(rng.normal(size=(count, 2)).astype(np.float32))
        self.targets = (self.points[:, 0] > 0).long()
        self.feature_dim = 2

    def __len__(self) -> int:
        return len(self.targets)

    def ensemble_epoch(self, view_generator, generators, batch_size, batches=None):
        orders = [torch.randperm(len(self), generator=generator) for generator in generators]
        count = len(self) // batch_size if batches is None else min(batches, len(self) // batch_size)
        for k in range(count):
            pixels = torch.stack([order[k * batch_size : (k + 1) * batch_size] for order in orders])
            yield self.points[pixels], self.targets[pixels]


def test_train_member_learns_and_is_deterministic(tmp_path) -> None:
    settings = train_settings(max_epochs=6, epochs_before_stopping=4, patience=3)
    model_a, log_a = train_member(ToySampler(), 2, settings, seed=3, member=1, show_progress=False)
    model_b, log_b = train_member(ToySampler(), 2, settings, seed=3, member=1, show_progress=False)
    model_c, _ = train_member(ToySampler(), 2, settings, seed=3, member=2, show_progress=False)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(model_a[0].weight, model_c[0].weight)
    assert log_a["epoch_losses"][-1] < log_a["epoch_losses"][0]
    assert log_a["epochs"] == 6 and log_a["batches"] <= 6 * 10
    points = ToySampler().points
    with torch.no_grad():
        accuracy = (model_a(points).argmax(1) == (points[:, 0] > 0)).float().mean()
    assert accuracy > 0.95
    save_member(tmp_path / "m.pt", model_a, in_features=2, number_class=2, dropout=0.0)
    loaded = load_member(tmp_path / "m.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(points), model_a(points))


def test_training_stops_where_the_rule_says() -> None:
    # lr 0 and identical points: every batch has exactly the same loss. 10 batches per epoch; epochs 0-3
    # (40 batches) never stop; batch 41 sets the best; batches 42..92 do not beat it; the 51st of them stops.
    sampler = ToySampler()
    sampler.points = torch.ones_like(sampler.points)
    settings = train_settings(lr=0.0, max_epochs=100, epochs_before_stopping=4, patience=50)
    _, log = train_member(sampler, 2, settings, seed=0, member=0, show_progress=False)
    assert log["stopped_early"]
    assert log["batches"] == 40 + 1 + 51
    assert log["epochs"] == 10


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(DdpmsegError, match="optimizer 'sgd'"):
        train_settings(optimizer="sgd")


class Killed(Exception):
    """Stands for the process being killed."""


def kill_after_epochs(monkeypatch, epochs: int) -> None:
    """Make training die right after its ``epochs``-th completed epoch has been saved."""
    import ddpmseg.classifier.training as training

    saves = {"count": 0}
    original = training.save_torch

    def save_then_die(path, state):
        original(path, state)
        saves["count"] += 1
        if saves["count"] == epochs:
            raise Killed

    monkeypatch.setattr(training, "save_torch", save_then_die)


@pytest.mark.parametrize("fused", [False, True])
def test_killed_training_resumes_from_its_last_epoch_with_the_same_result(tmp_path, monkeypatch, fused) -> None:
    write_identity_store(tmp_path / "s.zarr", views=6, extra_channels=10, identity=False)
    sampler = PixelSampler(FeatureStore(tmp_path / "s.zarr"), IGNORE)
    settings = train_settings(batch_size=32, max_epochs=5, epochs_before_stopping=2, patience=4, dropout=0.2)

    def train(checkpoint=None):
        if fused:
            return train_ensemble(sampler, 3, settings, 3, [0, 1, 2], show_progress=False, progress_path=checkpoint)
        return [train_member(sampler, 3, settings, 3, 1, show_progress=False, progress_path=checkpoint)]

    uninterrupted = train()
    checkpoint = tmp_path / "progress" / "state.pt"
    with monkeypatch.context() as patch:
        kill_after_epochs(patch, 2)
        with pytest.raises(Killed):
            train(checkpoint)
    assert checkpoint.is_file()
    resumed = train(checkpoint)
    for (model, log), (expected, expected_log) in zip(resumed, uninterrupted):
        assert log["resumed_after_epoch"] == 2
        assert log["batches"] == expected_log["batches"] and log["epoch_losses"] == expected_log["epoch_losses"]
        for a, b in zip(model.state_dict().values(), expected.state_dict().values()):
            assert torch.equal(a, b)  # bit for bit: the resumed run is the uninterrupted one


def test_progress_of_another_training_is_discarded(tmp_path) -> None:
    write_identity_store(tmp_path / "s.zarr", views=4, extra_channels=10, identity=False)
    sampler = PixelSampler(FeatureStore(tmp_path / "s.zarr"), IGNORE)
    checkpoint = tmp_path / "state.pt"
    short = train_settings(batch_size=32, max_epochs=2, epochs_before_stopping=5)
    train_member(sampler, 3, short, 0, 0, show_progress=False, progress_path=checkpoint)
    assert checkpoint.is_file()
    other = train_settings(batch_size=32, max_epochs=2, epochs_before_stopping=5, lr=0.01)
    _, log = train_member(sampler, 3, other, 0, 0, show_progress=False, progress_path=checkpoint)
    assert log["resumed_after_epoch"] is None and log["epochs"] == 2


def test_training_progress_loads_only_its_own_training(tmp_path) -> None:
    from ddpmseg.base.files import save_torch

    progress = TrainingProgress(tmp_path / "p.pt", fingerprint={"seed": 1, "members": [0]})
    assert progress.load() is None  # nothing saved yet
    save_torch(progress.path, {"fingerprint": {"seed": 1, "members": [0]}, "epoch": 3})
    assert progress.load()["epoch"] == 3
    assert TrainingProgress(progress.path, fingerprint={"seed": 2, "members": [0]}).load() is None
    assert not progress.path.exists()  # another training's state is discarded
    progress.path.write_bytes(b"not a torch file")
    assert progress.load() is None and not progress.path.exists()
