"""One whole training run of a DDPM: checks, the fine-tuning start, resuming, the iterations, the EMA
checkpoint, the log and the samples (see :mod:`ddpmseg.diffusion.training`)."""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ...base.errors import DdpmsegError, note
from ...base.files import save_json, save_png, save_torch
from ...base.progress import progress_bar
from ...data.preprocess import check_non_square_policy
from ..flags import model_flags
from ..model import build_model_and_diffusion, check_state_dict, read_checkpoint
from .distributed import Distributed, distributed_from_environment, start_distributed
from .ema import ema_state_dict
from .images import StepBatches, TrainingImages, check_training_images, image_batches
from .loop import Trainer, build_trainer, train_iteration
from .samples import draw_samples, sample_grid
from .settings import DdpmTrainingSettings, whole_number
from .state import TrainingLog, resume, save_state, state_identity


def check_run(flags: dict[str, Any], settings: DdpmTrainingSettings, ddp: Distributed, loader_workers: int) -> None:
    if not whole_number(loader_workers) or loader_workers < 0:
        raise DdpmsegError(f"DDPM training: loader_workers must be a whole number >= 0, not {loader_workers!r}")
    if settings.sample_steps > flags["diffusion_steps"]:
        raise DdpmsegError(
            f"DDPM training setting sample_steps={settings.sample_steps} is more than the model's "
            f"diffusion_steps={flags['diffusion_steps']}"
        )
    if settings.batch_size % ddp.world_size:
        raise DdpmsegError(
            f"DDPM training setting batch_size={settings.batch_size} must be a multiple of the number of "
            f"processes ({ddp.world_size})"
        )


def read_init(init: Path, flags: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The fine-tuning start: a guided-diffusion state_dict that fits the flags (checked on the meta device)."""
    state = read_checkpoint(init)
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
    check_state_dict(model, state, init, flags)
    return state


def log_record(
    *, settings: DdpmTrainingSettings, flags: dict[str, Any], trainer: Trainer, images: int, step: int,
    log: TrainingLog, notes: list[str],
) -> dict[str, Any]:
    return {
        "settings": settings.as_dict(),
        "flags": flags,
        "world_size": trainer.ddp.world_size,
        "device": str(trainer.device),
        "fp16": trainer.fp16,
        "images": images,
        "iterations_done": step,
        "wall_s": round(log.wall_s, 3),
        "resumed_at": log.resumed_at,
        "notes": notes,
        "intervals": log.intervals,
    }


def train_ddpm(
    *,
    images: Sequence[Path],
    flags: dict[str, Any],
    settings: DdpmTrainingSettings,
    state: Path,
    checkpoint: Path,
    log_json: Path,
    samples: Path,
    non_square: str | None,
    init: Path | None = None,
    progress: bool = True,
    loader_workers: int = 1,
) -> None:
    """Train (or, from ``init``, fine-tune) a DDPM on ``images``; resume from ``state`` when it exists.

    Writes, all atomically and by rank 0 only: ``state`` every ``save_every`` iterations and at the end;
    then ``checkpoint`` (the EMA weights as a plain guided-diffusion state_dict), ``log_json`` and
    ``samples`` (a PNG grid drawn with the EMA model). Under torchrun it trains with DDP. Each process
    reads its share of every batch with ``loader_workers`` DataLoader processes (0: itself).
    """
    if not isinstance(settings, DdpmTrainingSettings):
        settings = DdpmTrainingSettings.of(settings)  # a plain mapping, as a config section gives it
    images = [Path(path) for path in images]
    state, checkpoint, log_json, samples = Path(state), Path(checkpoint), Path(log_json), Path(samples)
    init = Path(init) if init is not None else None
    flags = model_flags(flags)
    ddp = distributed_from_environment()
    check_run(flags, settings, ddp, loader_workers)
    check_non_square_policy(non_square)
    init_state = read_init(init, flags) if init is not None else None
    check_training_images(images, non_square)
    device = start_distributed(ddp)
    trainer = None
    try:
        trainer = build_trainer(flags=flags, settings=settings, device=device, ddp=ddp, init_state=init_state)
        notes = []
        if settings.fp16 and not trainer.fp16:
            notes.append("fp16 ignored: mixed precision needs CUDA, this run trains in float32 on the CPU")
        if ddp.main:
            for line in notes:
                note(line)
        identity = state_identity(images=images, flags=flags, settings=settings, non_square=non_square, init=init)
        start, log = resume(state, trainer, identity)

        def write_log(step: int) -> None:
            save_json(log_json, log_record(settings=settings, flags=flags, trainer=trainer, images=len(images), step=step,
                                           log=log, notes=notes))

        def save(step: int) -> None:
            save_state(state, trainer, step=step, identity=identity, log=log)
            write_log(step)

        steps = StepBatches(seed=settings.seed, batch_size=settings.batch_size, count=len(images),
                            positions=ddp.positions(settings.batch_size), start=start, stop=settings.iterations)
        batches = image_batches(TrainingImages(images, flags["image_size"], non_square), steps, workers=loader_workers)
        try:
            run_iterations(trainer, batches, start=start, log=log, progress=progress, save=save)
        finally:
            batches.close()
        if ddp.main:
            if not state.exists():  # iterations: 0, the state is the init (or seeded) weights
                save(settings.iterations)
            trainer.model.load_state_dict(ema_state_dict(trainer.model, trainer.ema))
            save_torch(checkpoint, trainer.model.state_dict())
            print(f"drawing {settings.sample_count} samples with the EMA weights over {settings.sample_steps} "
                  f"diffusion steps for {samples}", file=sys.stderr, flush=True)
            grid = draw_samples(trainer.model, flags, count=settings.sample_count, steps=settings.sample_steps,
                                seed=settings.seed, progress=progress)
            save_png(samples, sample_grid(grid))
            write_log(settings.iterations)
        if ddp.active:
            dist.barrier()
    finally:
        # DDP's reducer holds the process group and its pending work: it goes first, then the group (a rank
        # of the 2-process gloo test once aborted at the end with "terminate called without an active exception")
        trainer = None
        gc.collect()
        if ddp.active and dist.is_initialized():
            dist.destroy_process_group()


class IntervalMeter:
    """Loss and speed over one logging interval."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.losses: list[float] = []

    def add(self, loss: float) -> None:
        self.losses.append(loss)

    def close(self, step: int, batch_size: int, wall_s: float) -> dict[str, float]:
        seconds = time.monotonic() - self.started
        record = {
            "step": step,
            "iterations": len(self.losses),
            "loss": float(np.mean(self.losses)),
            "wall_s": round(wall_s, 3),
            "images_per_s": round(len(self.losses) * batch_size / seconds, 3) if seconds > 0 else None,
        }
        self.__init__()
        return record


def run_iterations(
    trainer: Trainer, batches: Iterable[np.ndarray], *, start: int, log: TrainingLog, progress: bool,
    save: Callable[[int], None],
) -> None:
    """Iterations ``start`` .. ``iterations`` - 1 on ``batches`` (this rank's images of each, in step order),
    logging every ``log_every`` and saving every ``save_every`` (and after the last) on rank 0."""
    settings, main = trainer.settings, trainer.ddp.main
    started, wall_before = time.monotonic(), log.wall_s
    meter = IntervalMeter()
    bar = progress_bar(total=settings.iterations, initial=start, desc="train DDPM", unit="it", disable=not (progress and main))
    try:
        for step, pixels in zip(range(start, settings.iterations), batches, strict=True):
            loss = train_iteration(trainer, step, pixels)
            if not math.isfinite(loss) and not trainer.fp16:
                raise DdpmsegError(f"DDPM training: the loss is {loss} at iteration {step + 1}; lower lr")
            done = step + 1
            meter.add(loss)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)
            log.wall_s = wall_before + time.monotonic() - started
            if done % settings.log_every == 0 or done == settings.iterations:
                log.intervals.append(meter.close(done, settings.batch_size, log.wall_s))
            if main and (done % settings.save_every == 0 or done == settings.iterations):
                save(done)
    finally:
        bar.close()
