"""The training state file: everything a run needs to go on exactly where it stopped (weights, EMA,
optimizer, grad scaler, sampler, step, log, random generators), saved atomically by rank 0, and the one
identity of what a state was saved under: a run whose inputs differ starts afresh and says what changed."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...base.errors import DdpmsegError, note
from ...base.files import save_torch
from .draws import restore_sampler, sampler_state
from .settings import RESUMABLE_CHANGES, DdpmTrainingSettings
from .loop import Trainer


STATE_FORMAT = 1


def rng_states() -> dict[str, Any]:
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def restore_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"])
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class TrainingLog:
    """What the JSON log holds besides the settings: one record per logging interval, the wall time of
    all runs together and the steps at which a run resumed."""

    intervals: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    resumed_at: list[int] = field(default_factory=list)


def save_state(path: Path, trainer: Trainer, *, step: int, identity: dict[str, Any], log: TrainingLog) -> None:
    save_torch(
        path,
        {
            "format": STATE_FORMAT,
            "identity": identity,
            "step": step,
            "model": trainer.model.state_dict(),
            "ema": [average.detach().cpu() for average in trainer.ema],
            "optimizer": trainer.optimizer.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "sampler": sampler_state(trainer.sampler),
            "rng": rng_states(),
            "log": asdict(log),
        },
    )


def read_state(path: Path) -> dict[str, Any]:
    """A state file written by :func:`save_state`, loaded safely (``weights_only=True``) onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DdpmsegError(f"{path}: unreadable DDPM training state ({first_line}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DdpmsegError(f"{path}: not a DDPM training state of this version of ddpmseg; delete it to start over")
    return state


def file_version(path: Path) -> list[Any]:
    """(path, size, modification time) of a file: a file changed in place is another version."""
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def state_identity(
    *, images: Sequence[Path], flags: dict[str, Any], settings: DdpmTrainingSettings, non_square: str | None,
    init: Path | None,
) -> dict[str, Any]:
    """What a training state is saved under, and must be to be resumed: every image and the init checkpoint
    as its :func:`file_version`, the flags, the image policy and the settings that change the weights (all
    but :data:`~ddpmseg.diffusion.training.settings.RESUMABLE_CHANGES`)."""
    kept = {name: value for name, value in settings.as_dict().items() if name not in RESUMABLE_CHANGES}
    return {
        "images": [file_version(path) for path in images],
        "flags": dict(flags),
        "settings": kept,
        "non_square": non_square,
        "init": None if init is None else file_version(init),
    }


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two identities, one phrase each (``settings.lr``, ``images (2 added, removed or
    changed)``)."""
    differing = []
    for key, value in current.items():
        before = saved.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            differing += [f"{key}.{name}" for name in sorted(set(value) | set(before)) if value.get(name) != before.get(name)]
        elif key == "images" and isinstance(before, list) and before != value:
            now = {v[0]: v[1:] for v in value}
            saved_versions = {v[0]: v[1:] for v in before if isinstance(v, list) and v}
            changed = sum(now.get(path) != saved_versions.get(path) for path in set(now) | set(saved_versions))
            differing.append(f"images ({changed} added, removed or changed)" if changed else "images (their order)")
        elif before != value:
            differing.append(key)
    return differing


def restore_trainer(trainer: Trainer, state: Mapping[str, Any]) -> None:
    trainer.model.load_state_dict(state["model"])
    for average, saved in zip(trainer.ema, state["ema"], strict=True):
        average.copy_(saved)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scaler.load_state_dict(state["scaler"])
    restore_sampler(trainer.sampler, state["sampler"])
    restore_rng_states(state["rng"])


def resume(path: Path, trainer: Trainer, identity: dict[str, Any]) -> tuple[int, TrainingLog]:
    """Restore the trainer from the state at ``path`` when there is one saved under ``identity`` and no
    further than the iterations asked for; return (step, log) to go on from. A state saved under anything
    else is discarded (training starts afresh) with a note naming what changed."""
    if not path.exists():
        return 0, TrainingLog()
    state = read_state(path)
    stale = identity_differences(state["identity"], identity)
    step, iterations = int(state["step"]), trainer.settings.iterations
    if not stale and step > iterations:
        stale = [f"iterations (the state is at iteration {step}, more than iterations={iterations})"]
    if stale:
        if trainer.ddp.main:
            note(f"{path}: saved under other {', '.join(stale)}; training starts afresh")
            path.unlink(missing_ok=True)
        return 0, TrainingLog()
    restore_trainer(trainer, state)
    log = TrainingLog(**state["log"])
    if step < iterations:
        log.resumed_at.append(step)
    return step, log
