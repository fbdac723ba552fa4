"""The settings of member training (docs/method.md §4 and §6), without torch: a config's variants are
checked against them when the workflow is parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..base.errors import DdpmsegError

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of member training. No defaults here: they are the schema's ``variant_defaults``
    (workflow/schemas/config.schema.yaml), filled into every config; build it with :meth:`of`."""

    optimizer: str
    lr: float
    weight_decay: float
    dropout: float
    batch_size: int
    max_epochs: int
    epochs_before_stopping: int
    patience: int

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise DdpmsegError(f"optimizer '{self.optimizer}' is not one of {', '.join(OPTIMIZERS)}")

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> TrainSettings:
        """The training settings among a variant's settings (other keys are left out)."""
        return cls(**{field.name: settings[field.name] for field in fields(cls)})
