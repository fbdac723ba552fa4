"""How a DDPM is trained: the settings of one training, checked (no torch here: a config's ``training``
section is checked against them when the workflow is parsed, and their field list is the one list of
them that the rule, the state's identity and the launch arguments use)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ...base.errors import DdpmsegError
from ...base.settings import from_plain

SCHEDULE_SAMPLERS = ("uniform", "loss-second-moment")
# Settings a run may change and still resume from a state saved with other values.
RESUMABLE_CHANGES = ("iterations", "microbatch", "save_every", "log_every", "sample_count", "sample_steps")


def whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "iterations": (lambda v: whole_number(v) and v >= 0, "a whole number >= 0"),
    "batch_size": (lambda v: whole_number(v) and v >= 1, "a whole number >= 1"),
    "microbatch": (lambda v: whole_number(v) and v >= 0, "a whole number >= 0 (0: each rank's whole share at once)"),
    "lr": (lambda v: finite_number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: finite_number(v) and v >= 0, "a number >= 0"),
    "ema_rate": (lambda v: finite_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "save_every": (lambda v: whole_number(v) and v >= 1, "a whole number >= 1"),
    "log_every": (lambda v: whole_number(v) and v >= 1, "a whole number >= 1"),
    "fp16": (lambda v: isinstance(v, bool), "true or false"),
    "schedule_sampler": (lambda v: v in SCHEDULE_SAMPLERS, f"one of {', '.join(SCHEDULE_SAMPLERS)}"),
    "seed": (lambda v: whole_number(v) and v >= 0, "a whole number >= 0"),
    "sample_count": (lambda v: whole_number(v) and v >= 1, "a whole number >= 1"),
    # guided-diffusion's respaced diffusion of one step fails (its posterior needs two): after the training
    "sample_steps": (lambda v: whole_number(v) and v >= 2, "a whole number >= 2"),
}


@dataclass(frozen=True)
class DdpmTrainingSettings:
    """How a DDPM is trained. ``batch_size`` is the global batch of one iteration (all ranks together);
    each rank computes its share in chunks of ``microbatch`` images (0: all at once). ``fp16`` is mixed
    precision on CUDA (ignored on a CPU). ``sample_count`` samples are drawn from the EMA model at the end
    with ``sample_steps`` respaced steps."""

    iterations: int
    batch_size: int
    microbatch: int
    lr: float
    weight_decay: float
    ema_rate: float
    save_every: int
    log_every: int
    fp16: bool
    schedule_sampler: str
    seed: int
    sample_count: int
    sample_steps: int

    def __post_init__(self) -> None:
        for name, (valid, expected) in _SETTING_RULES.items():
            value = getattr(self, name)
            if not valid(value):
                raise DdpmsegError(f"DDPM training setting {name} must be {expected}, not {value!r}")

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> DdpmTrainingSettings:
        """From a plain mapping (a JSON or config section) holding exactly the settings."""
        return from_plain(cls, values, what="DDPM training")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
