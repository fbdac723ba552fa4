"""Pixel classifiers (method.md §4): the MLP, its initialisation, the stopping rule and member training."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from .progress import progress_bar

from .errors import DdpmsegError
from .files import save_torch
from .sampler import PixelSampler, member_seed


@dataclass(frozen=True)
class TrainSettings:
    """Settings of member training; the defaults are the paper's."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_size: int = 64
    max_epochs: int = 100
    epochs_before_stopping: int = 4
    patience: int = 50

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise DdpmsegError(f"optimizer '{self.optimizer}' is not one of adam, adamw")


def hidden_sizes(number_class: int) -> tuple[int, int]:
    return (128, 32) if number_class < 30 else (256, 128)


def build_classifier(in_features: int, number_class: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear, ReLU, [Dropout], BatchNorm1d, Linear, ReLU, [Dropout], BatchNorm1d, Linear."""
    first, second = hidden_sizes(number_class)
    layers: list[nn.Module] = []
    width = in_features
    for hidden in (first, second):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.BatchNorm1d(hidden))
        width = hidden
    layers.append(nn.Linear(width, number_class))
    model = nn.Sequential(*layers)
    init_weights(model)
    return model


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """Linear weights N(0, std), biases 0; BatchNorm keeps torch's defaults (as the reference)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            nn.init.zeros_(module.bias)


class StoppingRule:
    """The paper's early stopping.

    From epoch index ``epochs_before_stopping`` on (paper: 4, i.e. epoch > 3), after every step: a loss
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
        """Record the loss of a step of ``epoch``; True when training must stop now."""
        if epoch < self.epochs_before_stopping:
            return False
        if loss < self.best:
            self.best = loss
            self.count = 0
        else:
            self.count += 1
        return self.count > self.patience


def make_optimizer(parameters, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def train_member(
    sampler: PixelSampler,
    number_class: int,
    settings: TrainSettings,
    seed: int,
    member: int,
    steps_per_epoch: int | None = None,
    progress: bool = True,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train ensemble member ``member`` of run ``seed``; return the model (eval mode) and its training log."""
    started = time.perf_counter()
    own_seed = member_seed(seed, member)
    torch.manual_seed(own_seed)  # initialisation and dropout
    order = torch.Generator().manual_seed(own_seed)  # minibatch order
    model = build_classifier(sampler.feature_dim, number_class, settings.dropout)
    optimizer = make_optimizer(model.parameters(), settings)
    criterion = nn.CrossEntropyLoss()
    rule = StoppingRule(settings.epochs_before_stopping, settings.patience)
    model.train()
    steps, epoch_losses, stopped, first_step_s = 0, [], False, None
    loss_value = math.nan
    bar = progress_bar(total=settings.max_epochs, desc=f"member {member}", unit="epoch", disable=not progress)
    for epoch in range(settings.max_epochs):
        total, count = 0.0, 0
        for features, labels in sampler.epoch(order, settings.batch_size, steps_per_epoch):
            loss = criterion(model(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            if first_step_s is None:
                first_step_s = time.perf_counter() - started
            steps += 1
            total, count = total + loss_value, count + 1
            if rule.update(epoch, loss_value):
                stopped = True
                break
        epoch_losses.append(total / max(count, 1))
        bar.update(1)
        bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
        if stopped:
            break
    bar.close()
    model.eval()
    log = {
        "seed": seed,
        "member": member,
        "member_seed": own_seed,
        "settings": asdict(settings),
        "training_pixels": len(sampler),
        "steps": steps,
        "epochs": len(epoch_losses),
        "stopped_early": stopped,
        "final_loss": loss_value,
        "epoch_losses": epoch_losses,
        "time_to_first_step_s": first_step_s,
        "wall_time_s": time.perf_counter() - started,
    }
    return model, log


def save_member(path: str | Path, model: nn.Sequential, in_features: int, number_class: int, dropout: float) -> None:
    save_torch(
        path,
        {"state_dict": model.state_dict(), "in_features": in_features, "number_class": number_class, "dropout": dropout},
    )


def load_member(path: str | Path) -> nn.Sequential:
    """A trained member in eval mode (loaded with ``weights_only=True``)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_classifier(saved["in_features"], saved["number_class"], saved["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def load_ensemble(paths: Sequence[str | Path]) -> list[nn.Sequential]:
    return [load_member(p) for p in paths]
