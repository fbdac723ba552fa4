"""Training of the pixel classifiers (docs/method.md §4): settings, the paper's stopping rule, the
optimizer, and the fused training loop with its resume state."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .mlp import build_classifier
from ..base.files import save_torch
from ..base.progress import progress_bar
from .settings import TrainSettings
from ..features.sampler import PixelSampler, member_seed, view_order_seed
from .stacked import StackedClassifiers


class StoppingRule:
    """The paper's early stopping.

    From epoch index ``epochs_before_stopping`` on (paper: 4, i.e. epoch > 3), after every batch: a loss
    below the best seen since the rule became active resets a counter, any other loss increments it;
    training stops when the counter exceeds ``patience``. Losses of earlier epochs are not tracked
    (the reference starts its best loss at 1e7 and updates it only inside the rule).
    """

    def __init__(self, epochs_before_stopping: int = 4, patience: int = 50):
        self.epochs_before_stopping = epochs_before_stopping
        self.patience = patience
        self.best = math.inf
        self.count = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record the loss of a batch of ``epoch``; True when training must stop now."""
        if epoch < self.epochs_before_stopping:
            return False
        if loss < self.best:
            self.best = loss
            self.count = 0
        else:
            self.count += 1
        return self.count > self.patience


def make_optimizer(parameters, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam or AdamW; the fused (single-kernel) implementation where this torch has it.

    Fusing matters for the stacked weights of :func:`train_ensemble` (10 members: 80 -> 10 ms per batch
    on CPU); separate members use it too, so both run the same arithmetic.
    """
    kind = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    parameters = list(parameters)
    try:
        return kind(parameters, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch without a fused kernel for this device
        return kind(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


class _Recorder:
    """Per-member bookkeeping shared by separate and fused training: stopping rule, losses, log."""

    def __init__(self, *, seed: int, member: int, settings: TrainSettings, pixels: int, started: float):
        self.seed, self.member, self.settings, self.pixels, self.started = seed, member, settings, pixels, started
        self.rule = StoppingRule(settings.epochs_before_stopping, settings.patience)
        self.batches, self.epoch_losses, self.stopped = 0, [], False
        self.loss, self.first_batch_s = math.nan, None
        self._total, self._count = 0.0, 0

    def record(self, epoch: int, loss: float) -> bool:
        """Record a batch's loss; True when the stopping rule fires."""
        if self.first_batch_s is None:
            self.first_batch_s = time.perf_counter() - self.started
        self.loss = loss
        self.batches += 1
        self._total, self._count = self._total + loss, self._count + 1
        self.stopped = self.rule.update(epoch, loss)
        return self.stopped

    def end_epoch(self) -> None:
        self.epoch_losses.append(self._total / max(self._count, 1))
        self._total, self._count = 0.0, 0

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to continue this record exactly (see :class:`TrainingProgress`)."""
        return {
            "batches": self.batches,
            "epoch_losses": list(self.epoch_losses),
            "stopped": self.stopped,
            "loss": self.loss,
            "first_batch_s": self.first_batch_s,
            "best": self.rule.best,
            "count": self.rule.count,
            "elapsed_s": time.perf_counter() - self.started,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.batches, self.epoch_losses, self.stopped = state["batches"], list(state["epoch_losses"]), state["stopped"]
        self.loss, self.first_batch_s = state["loss"], state["first_batch_s"]
        self.rule.best, self.rule.count = state["best"], state["count"]
        self.started = time.perf_counter() - state["elapsed_s"]

    def log(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "member": self.member,
            "member_seed": member_seed(self.seed, self.member),
            "settings": asdict(self.settings),
            "training_pixels": self.pixels,
            "batches": self.batches,
            "epochs": len(self.epoch_losses),
            "stopped_early": self.stopped,
            "final_loss": self.loss,
            "epoch_losses": self.epoch_losses,
            "time_to_first_batch_s": self.first_batch_s,
            "wall_time_s": time.perf_counter() - self.started,
        }


def _init_member(feature_dim: int, number_class: int, settings: TrainSettings, seed: int, member: int) -> nn.Sequential:
    """A member's initial model: torch's global RNG seeded with the member's seed, which then draws
    its dropout masks too."""
    torch.manual_seed(member_seed(seed, member))
    return build_classifier(feature_dim, number_class, settings.dropout)


class _FusedTraining:
    """The state of a fused training between batches: the stacked model of the members still training
    (``live``: their positions in the run's member list) with its optimizer, every member's record and
    pixel-order generator, the shared view-order generator, and the models of the members that stopped."""

    def __init__(
        self,
        *,
        number_class: int,
        stacked: StackedClassifiers,
        optimizer: torch.optim.Optimizer,
        records: list[_Recorder],
        live: list[int],
        finished: dict[int, nn.Sequential],
        views: torch.Generator,
        generators: list[torch.Generator],
    ):
        self.number_class = number_class
        self.stacked, self.optimizer = stacked, optimizer
        self.records, self.live, self.finished = records, live, finished
        self.views, self.generators = views, generators

    def run_epoch(self, sampler: PixelSampler, epoch: int, *, batch_size: int, batches_per_epoch: int | None) -> list[int]:
        """Train one epoch; returns the positions of the members that started it."""
        at_start = list(self.live)  # the sampler draws for these until the epoch ends
        stream = sampler.ensemble_epoch(self.views, [self.generators[i] for i in at_start], batch_size, batches_per_epoch)
        for features, labels in stream:
            if len(self.live) < len(at_start):  # members that stopped this epoch: their batches go unused
                rows = torch.as_tensor([at_start.index(i) for i in self.live])
                features, labels = features[rows], labels[rows]
            stopping = self._train_batch(features, labels, epoch)
            if stopping:
                self._retire(stopping)
                if not self.live:
                    stream.close()
                    break
        for i in self.live:
            self.records[i].end_epoch()
        return at_start

    def _train_batch(self, features: torch.Tensor, labels: torch.Tensor, epoch: int) -> list[int]:
        """One optimizer step of every live member; returns the slots whose stopping rule fired."""
        logits = self.stacked(features)
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, self.number_class), labels.reshape(-1), reduction="none"
        ).view(len(self.live), -1).mean(dim=1)
        self.stacked.zero_grad_but_first()
        losses.sum().backward()
        self.optimizer.step()
        return [slot for slot, loss in enumerate(losses.tolist()) if self.records[self.live[slot]].record(epoch, loss)]

    def _retire(self, stopping: list[int]) -> None:
        """Take the members in slots ``stopping`` out of the batch, keeping their models."""
        for slot in stopping:
            self.finished[self.live[slot]] = self.stacked.member(slot, self.number_class, self.records[self.live[slot]].batches)
            self.records[self.live[slot]].end_epoch()
        remaining = [slot for slot in range(len(self.live)) if slot not in stopping]
        self.live = [self.live[slot] for slot in remaining]
        if self.live:
            self.optimizer = self.stacked.keep(remaining, self.optimizer)

    def finish(self) -> dict[int, nn.Sequential]:
        """Every member's model, by position: the live ones taken out of the stacked model."""
        for slot, i in enumerate(self.live):
            self.finished[i] = self.stacked.member(slot, self.number_class, self.records[i].batches)
        return self.finished

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (see :class:`TrainingProgress`)."""
        return {
            "live": self.live,
            "finished": {str(i): model.state_dict() for i, model in self.finished.items()},
            "stacked": self.stacked.state_dict(), "rng_states": self.stacked.rng_states,
            "optimizer": self.optimizer.state_dict(),
            "records": [record.state() for record in self.records], "views": self.views.get_state(),
            "generators": [generator.get_state() for generator in self.generators],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the stacked model must already hold the saved live members)."""
        self.stacked.load_state_dict(state["stacked"])
        self.stacked.rng_states = list(state["rng_states"])
        self.optimizer.load_state_dict(state["optimizer"])
        for record, record_state in zip(self.records, state["records"]):
            record.restore(record_state)
        self.views.set_state(state["views"])
        for generator, generator_state in zip(self.generators, state["generators"]):
            generator.set_state(generator_state)


class TrainingProgress:
    """The resume state of one training, in a file: saved after every epoch, continued from by a run
    that finds it. The fingerprint names the training (settings, seed, members, data); a file holding
    another training's state, an older version's or a damaged one is discarded."""

    def __init__(self, path: str | Path, *, fingerprint: dict[str, Any]):
        self.path = Path(path)
        self.fingerprint = fingerprint

    @classmethod
    def of_training(
        cls,
        path: str | Path,
        *,
        sampler: PixelSampler,
        number_class: int,
        settings: TrainSettings,
        seed: int,
        members: Sequence[int],
        batches_per_epoch: int | None,
    ) -> TrainingProgress:
        return cls(path, fingerprint={
            "settings": asdict(settings), "seed": seed, "members": list(members),
            "number_class": number_class, "pixels": len(sampler), "views": sampler.views,
            "feature_dim": sampler.feature_dim, "buffer_views": sampler.buffer_views,
            "batches_per_epoch": batches_per_epoch,
        })

    def load(self) -> dict[str, Any] | None:
        """The saved state, if the file holds one for exactly this training (else it is deleted)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a file from an older version, or damaged: start afresh
            state = None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            self.path.unlink()
            return None
        return state

    def save(self, *, epoch: int, training: _FusedTraining) -> None:
        """The state after ``epoch`` epochs (atomically: a kill while saving keeps the previous one)."""
        save_torch(self.path, {"fingerprint": self.fingerprint, "epoch": epoch, **training.state()})


def _members_name(members: Sequence[int]) -> str:
    return f"member {members[0]}" if len(members) == 1 else f"{len(members)} members"


def _start_training(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    members: list[int],
    *,
    started: float,
    progress: TrainingProgress | None,
) -> tuple[_FusedTraining, dict[str, Any] | None]:
    """The members' initial state, continued from ``progress``'s saved state when it has one (also returned)."""
    models, rng_states = [], []
    for member in members:
        models.append(_init_member(sampler.feature_dim, number_class, settings, seed, member))
        rng_states.append(torch.get_rng_state())
    views = torch.Generator().manual_seed(view_order_seed(seed))
    generators = [torch.Generator().manual_seed(member_seed(seed, m)) for m in members]
    records = [_Recorder(seed=seed, member=m, settings=settings, pixels=len(sampler), started=started) for m in members]
    live = list(range(len(members)))
    finished: dict[int, nn.Sequential] = {}
    saved = None if progress is None else progress.load()
    if saved is not None:
        live = list(saved["live"])
        for i, member_state in saved["finished"].items():
            finished[int(i)] = build_classifier(sampler.feature_dim, number_class, settings.dropout)
            finished[int(i)].load_state_dict(member_state)
            finished[int(i)].eval()
    stacked = StackedClassifiers([models[i] for i in live], settings.dropout)
    stacked.rng_states = [rng_states[i] for i in live]
    training = _FusedTraining(
        number_class=number_class, stacked=stacked, optimizer=make_optimizer(stacked.parameters(), settings),
        records=records, live=live, finished=finished, views=views, generators=generators,
    )
    if saved is not None:
        training.restore(saved)
        print(f"{_members_name(members)}: resumed after epoch {saved['epoch']} from {progress.path}")
    stacked.train()
    return training, saved


def study_batches_per_epoch(sampler: PixelSampler, *, original_views: int | None, batch_size: int) -> int | None:
    """Batches per epoch under the study's protocol (docs/method.md §4): with augmented copies after the
    first ``original_views`` views, an epoch keeps the number of batches of the un-augmented set while
    drawing from all views. None (as many batches as the pixels fill) without augmented copies."""
    if original_views is None or original_views >= sampler.views:
        return None
    return sampler.pixels_of_first(original_views) // batch_size


def train_ensemble(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    members: Sequence[int],
    *,
    batches_per_epoch: int | None = None,
    show_progress: bool = True,
    progress_path: str | Path | None = None,
) -> list[tuple[nn.Sequential, dict[str, Any]]]:
    """Train several members of run ``seed`` together in one batched computation.

    Each member keeps its own initialisation, minibatch order, dropout masks and stopping rule, so it
    ends where a plain ``nn.Sequential`` trained alone with Adam on the same batches would (up to float
    rounding of the batched products). A member whose rule fires leaves the batch. Returns (model, log)
    per member, in the order of ``members``. An epoch has ``batches_per_epoch`` batches (default: as
    many as the pixels fill). With ``progress_path``, the whole state is saved there after every epoch
    and resumed from it (see :class:`TrainingProgress`).
    """
    started = time.perf_counter()
    members = list(members)
    progress = None if progress_path is None else TrainingProgress.of_training(
        progress_path, sampler=sampler, number_class=number_class, settings=settings, seed=seed,
        members=members, batches_per_epoch=batches_per_epoch,
    )
    training, saved = _start_training(
        sampler, number_class, settings, seed, members, started=started, progress=progress
    )
    first_epoch = 0 if saved is None else saved["epoch"]
    bar = progress_bar(
        total=settings.max_epochs, initial=first_epoch, desc=_members_name(members), unit="epoch", disable=not show_progress
    )
    for epoch in range(first_epoch, settings.max_epochs):
        at_start = training.run_epoch(sampler, epoch, batch_size=settings.batch_size, batches_per_epoch=batches_per_epoch)
        bar.update(1)
        epoch_loss = sum(training.records[i].epoch_losses[-1] for i in at_start) / len(at_start)
        bar.set_postfix(training=len(training.live), loss=f"{epoch_loss:.4f}", refresh=False)
        if not training.live:
            break
        if progress is not None:
            progress.save(epoch=epoch + 1, training=training)
    bar.close()
    models = training.finish()
    results = []
    for i in range(len(members)):
        log = training.records[i].log()
        log["resumed_after_epoch"] = None if saved is None else first_epoch
        results.append((models[i], log))
    return results


def train_member(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    member: int,
    *,
    batches_per_epoch: int | None = None,
    show_progress: bool = True,
    progress_path: str | Path | None = None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train ensemble member ``member`` of run ``seed``; return the model (eval mode) and its training log.

    This is :func:`train_ensemble` of the one member: the same batched code with M = 1, whose
    first-layer products are faster on CPU than ``nn.Linear``'s (see :class:`ddpmseg.classifier.stacked._FirstLayer`).
    With ``progress_path``, the whole training state (weights, optimizer, stopping rule, losses, random
    generators) is saved there after every epoch, and a run that finds it continues from it: a killed
    member loses at most one epoch and ends exactly where an uninterrupted run would.
    """
    return train_ensemble(
        sampler, number_class, settings, seed, [member],
        batches_per_epoch=batches_per_epoch, show_progress=show_progress, progress_path=progress_path,
    )[0]
