"""Train or fine-tune a guided-diffusion DDPM on unlabelled images, on one device or, under ``torchrun``,
on several with DistributedDataParallel (DDP).

The training follows guided-diffusion's ``TrainLoop``: its losses (``diffusion.training_losses``), its
timestep samplers (``uniform``, ``loss-second-moment``, updated with every iteration's losses from all
ranks), AdamW, gradient accumulation over microbatches, an EMA of the weights (what the checkpoint holds),
mixed precision on CUDA (here ``torch.autocast`` + ``GradScaler``; skipped steps leave the EMA alone, as
there) and random horizontal flips. Where it differs, and why:

- ``batch_size`` is the *global* batch of one iteration, split evenly over the ranks (guided-diffusion's
  is per rank), and the gradient is the mean over that global batch whatever the microbatch and the
  number of ranks (guided-diffusion sums the microbatches' means). So N GPUs train the same model as one.
- Every random draw of iteration ``s`` (the images and their flips, the timesteps, the noise, torch's
  generator for dropout) comes from (seed, s) (and the rank, for dropout) alone: a run resumed from its
  state file, or spread over ranks, draws exactly what an uninterrupted single-process run draws.
- Timesteps are drawn for the whole global batch at once from the sampler's weights, and a loss-aware
  sampler is updated once per iteration with all of its losses in global order.

Every ``save_every`` iterations and at the end, rank 0 saves the whole state (weights, EMA, optimizer,
grad scaler, sampler, step, log, random generators) atomically; a run that finds it resumes from it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..model import (
    build_model_and_diffusion,
    check_state_dict,
    model_flags,
    read_checkpoint,
    select_device,
)
from .ema import copy_parameters, ema_state_dict, update_ema
from ...base.errors import DdpmsegError
from ...base.files import save_json, save_png, save_torch
from ...data.preprocess import check_non_square_policy
from .settings import RESUMABLE_CHANGES, DdpmTrainingSettings, whole_number
from .images import (
    SAMPLE_NOISE,
    STEP_DRAWS,
    TORCH_SEED,
    batch_indices,
    load_training_images,
    random_stream,
    to_batch,
)
from ...base.progress import progress_bar

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # guided-diffusion uses deprecated torch.cuda.amp names
    from guided_diffusion import resample, script_util

STATE_FORMAT = 1

# ----------------------------------------------------------------------------------------------------
# One process or many


@dataclass(frozen=True)
class Distributed:
    """This process's place among the ranks (torchrun's WORLD_SIZE, RANK, LOCAL_RANK)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_environment(environ: Mapping[str, str] = os.environ) -> Distributed:
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise DdpmsegError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
    return Distributed(world_size, rank, local_rank)


def start_distributed(ddp: Distributed) -> torch.device:
    """The device this rank trains on; under torchrun, joins the process group (NCCL on CUDA, else gloo)."""
    if not ddp.active:
        return select_device()
    device = torch.device("cuda", ddp.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def launch_command(*, nproc: int, args_json: Path) -> list[str]:
    """The command line that trains with ``nproc`` processes (one per GPU) on this machine: torchrun
    (``python -m torch.distributed.run --standalone``) for several, a plain ``python -m`` for one."""
    if not whole_number(nproc) or nproc < 1:
        raise DdpmsegError(f"DDPM training: the number of processes must be a whole number >= 1, not {nproc!r}")
    module = ["-m", "ddpmseg.diffusion.training.loop", str(args_json)]
    if nproc == 1:
        return [sys.executable, *module]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *module]


# ----------------------------------------------------------------------------------------------------
# Timestep samplers


class _LossSecondMomentSampler(resample.LossSecondMomentResampler):
    """guided-diffusion's loss-second-moment sampler; its ``__init__`` uses ``np.int``, which NumPy 1.24
    removed, so the same history arrays are made here with ``np.int64``."""

    def __init__(self, diffusion: Any, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        self.diffusion = diffusion
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self._loss_history = np.zeros([diffusion.num_timesteps, history_per_term], dtype=np.float64)
        self._loss_counts = np.zeros([diffusion.num_timesteps], dtype=np.int64)


def schedule_sampler(name: str, diffusion: Any) -> resample.ScheduleSampler:
    try:
        return resample.create_named_schedule_sampler(name, diffusion)
    except AttributeError:
        if name != "loss-second-moment":
            raise
        return _LossSecondMomentSampler(diffusion)


def sampler_state(sampler: resample.ScheduleSampler) -> dict[str, torch.Tensor]:
    if not isinstance(sampler, resample.LossSecondMomentResampler):
        return {}
    return {
        "loss_history": torch.from_numpy(sampler._loss_history.copy()),
        "loss_counts": torch.from_numpy(sampler._loss_counts.astype(np.int64)),
    }


def restore_sampler(sampler: resample.ScheduleSampler, state: Mapping[str, torch.Tensor]) -> None:
    if isinstance(sampler, resample.LossSecondMomentResampler) and state:
        sampler._loss_history = state["loss_history"].numpy().astype(np.float64)
        sampler._loss_counts = state["loss_counts"].numpy().astype(np.int64)


def step_draws(seed: int, step: int, batch_size: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iteration ``step``'s flips, timesteps and importance weights for the global batch (the sampler's
    importance sampling, as guided-diffusion's ``ScheduleSampler.sample``, from a generator of (seed, step))."""
    rng = random_stream(seed, STEP_DRAWS, step)
    flips = rng.random(batch_size) < 0.5
    probabilities = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    timesteps = rng.choice(len(probabilities), size=batch_size, p=probabilities)
    importance = 1.0 / (len(probabilities) * probabilities[timesteps])
    return flips, timesteps, importance


def sample_noise(seed: int, step: int, positions: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """The diffusion noise of the global batch's samples at ``positions`` (one generator per sample, so a
    rank draws only its share)."""
    noise = [random_stream(seed, SAMPLE_NOISE, step, int(p)).standard_normal(shape, dtype=np.float32) for p in positions]
    return torch.from_numpy(np.stack(noise))


def torch_seed(seed: int, step: int, rank: int) -> int:
    return int(random_stream(seed, TORCH_SEED, step, rank).integers(2**63))


# ----------------------------------------------------------------------------------------------------
# The model, its optimizer and one iteration


class AutocastForward:
    """Calls the model under float16 autocast and gives float32 back, so that guided-diffusion's loss
    terms (variational bound, MSE) are computed in float32."""

    def __init__(self, model: Callable[..., torch.Tensor]) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16):
            output = self.model(x, t, **kwargs)
        return output.float()


@dataclass
class Trainer:
    """Everything one rank's training loop works with."""

    model: torch.nn.Module  # the bare UNet: saved, averaged, sampled
    forward: Callable[..., torch.Tensor]  # what the losses call: DDP and autocast around the UNet, as used
    ddp_model: torch.nn.parallel.DistributedDataParallel | None
    diffusion: Any
    sampler: resample.ScheduleSampler
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: list[torch.Tensor]
    settings: DdpmTrainingSettings
    ddp: Distributed
    device: torch.device
    images: np.ndarray  # (N, S, S, 3) uint8
    fp16: bool


def build_trainer(
    *,
    flags: dict[str, Any],
    settings: DdpmTrainingSettings,
    images: np.ndarray,
    device: torch.device,
    ddp: Distributed = Distributed(),
    init_state: dict[str, torch.Tensor] | None = None,
) -> Trainer:
    """A fresh model (seeded, or ``init_state``'s weights), its EMA (equal to it), AdamW and grad scaler."""
    torch.manual_seed(settings.seed)
    model, diffusion = build_model_and_diffusion({**flags, "timestep_respacing": ""})
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device).train()
    ddp_model = None
    forward: Callable[..., torch.Tensor] = model
    if ddp.active:
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        forward = ddp_model
    fp16 = settings.fp16 and device.type == "cuda"
    if fp16:
        forward = AutocastForward(forward)
    return Trainer(
        model=model,
        forward=forward,
        ddp_model=ddp_model,
        diffusion=diffusion,
        sampler=schedule_sampler(settings.schedule_sampler, diffusion),
        optimizer=torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay),
        scaler=torch.amp.GradScaler(device.type, enabled=fp16),
        ema=[average.to(device) for average in copy_parameters(model)],
        settings=settings,
        ddp=ddp,
        device=device,
        images=images,
        fp16=fp16,
    )


def gather_losses(local: torch.Tensor, ddp: Distributed) -> np.ndarray:
    """The per-sample losses of the whole global batch, in rank order, on every rank."""
    if not ddp.active:
        return local.double().cpu().numpy()
    parts = [torch.empty_like(local) for _ in range(ddp.world_size)]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts).double().cpu().numpy()


def optimizer_step(trainer: Trainer) -> bool:
    """Step (through the grad scaler); False when fp16 found an overflow and the step was skipped."""
    scale = trainer.scaler.get_scale()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    return trainer.scaler.get_scale() >= scale


def train_iteration(trainer: Trainer, step: int) -> float:
    """One optimizer step on global batch ``step``; returns its loss (importance-weighted mean)."""
    settings, ddp, device = trainer.settings, trainer.ddp, trainer.device
    batch_size = settings.batch_size
    share = batch_size // ddp.world_size
    positions = np.arange(ddp.rank * share, (ddp.rank + 1) * share)
    indices = batch_indices(settings.seed, step, batch_size, len(trainer.images))
    flips, timesteps, importance = step_draws(settings.seed, step, batch_size, trainer.sampler.weights())
    torch.manual_seed(torch_seed(settings.seed, step, ddp.rank))  # dropout
    x = to_batch(trainer.images[indices[positions]], flips[positions]).to(device)
    t = torch.from_numpy(timesteps[positions]).long().to(device)
    weights = torch.from_numpy(importance[positions]).float().to(device)
    noise = sample_noise(settings.seed, step, positions, tuple(x.shape[1:])).to(device)
    micro = min(settings.microbatch or share, share)
    trainer.optimizer.zero_grad(set_to_none=True)
    losses = []
    for start in range(0, share, micro):
        part = slice(start, start + micro)
        last = start + micro >= share
        no_sync = trainer.ddp_model.no_sync() if trainer.ddp_model is not None and not last else contextlib.nullcontext()
        with no_sync:
            terms = trainer.diffusion.training_losses(trainer.forward, x[part], t[part], noise=noise[part])
            # sum / global batch on each rank, times the world size that DDP's gradient mean divides by:
            # the gradient of the global batch's mean loss
            objective = (terms["loss"] * weights[part]).sum() * (ddp.world_size / batch_size)
            trainer.scaler.scale(objective).backward()
        losses.append(terms["loss"].detach().float())
    if optimizer_step(trainer):
        update_ema(trainer.ema, trainer.model.parameters(), settings.ema_rate)
    all_losses = gather_losses(torch.cat(losses), ddp)
    if isinstance(trainer.sampler, resample.LossAwareSampler):
        trainer.sampler.update_with_all_losses(timesteps.tolist(), all_losses.tolist())
    return float(np.mean(all_losses * importance))


# ----------------------------------------------------------------------------------------------------
# The state file


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


def run_identity(
    *, images: Sequence[Path], flags: dict[str, Any], settings: DdpmTrainingSettings, non_square: str | None,
    init: Path | None,
) -> dict[str, Any]:
    """What a state must have been saved with to be resumed."""
    kept = {name: value for name, value in settings.as_dict().items() if name not in RESUMABLE_CHANGES}
    return {
        "images": [str(path) for path in images],
        "flags": dict(flags),
        "settings": kept,
        "non_square": non_square,
        "init": str(init) if init is not None else None,
    }


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    differing = []
    for key, value in current.items():
        before = saved.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            differing += [f"{key}.{name}" for name in sorted(set(value) | set(before)) if value.get(name) != before.get(name)]
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
    """Restore the trainer from the state at ``path`` when there is one; return (step, log) to go on from."""
    if not path.exists():
        return 0, TrainingLog()
    state = read_state(path)
    differing = identity_differences(state["identity"], identity)
    if differing:
        raise DdpmsegError(
            f"{path}: saved by a training run with other {', '.join(differing)}; "
            "restore them to resume, or delete the state to train from scratch"
        )
    step = int(state["step"])
    if step > trainer.settings.iterations:
        raise DdpmsegError(
            f"{path}: already trained {step} iterations, more than iterations={trainer.settings.iterations}; "
            "raise iterations or delete the state"
        )
    restore_trainer(trainer, state)
    log = TrainingLog(**state["log"])
    if step < trainer.settings.iterations:
        log.resumed_at.append(step)
    return step, log


# ----------------------------------------------------------------------------------------------------
# Samples from the EMA model


def sampling_diffusion(flags: dict[str, Any], steps: int) -> Any:
    """The flags' diffusion respaced to ``steps`` steps (guided-diffusion's SpacedDiffusion)."""
    return script_util.create_gaussian_diffusion(
        steps=flags["diffusion_steps"],
        learn_sigma=flags["learn_sigma"],
        noise_schedule=flags["noise_schedule"],
        use_kl=flags["use_kl"],
        predict_xstart=flags["predict_xstart"],
        rescale_timesteps=flags["rescale_timesteps"],
        rescale_learned_sigmas=flags["rescale_learned_sigmas"],
        timestep_respacing=str(steps),
    )


@torch.no_grad()
def draw_samples(model: torch.nn.Module, flags: dict[str, Any], *, count: int, steps: int, seed: int) -> np.ndarray:
    """(count, S, S, 3) uint8 samples of ``model`` by ancestral sampling over ``steps`` respaced steps."""
    device = next(model.parameters()).device
    size = flags["image_size"]
    torch.manual_seed(seed)  # the sampling loop's own noise
    noise = torch.randn((count, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    images = sampling_diffusion(flags, steps).p_sample_loop(model, noise.shape, noise=noise, device=device)
    model.train(was_training)
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def sample_grid(samples: np.ndarray, gap: int = 2) -> np.ndarray:
    """The samples side by side in a near-square grid on white."""
    count, size = len(samples), samples.shape[1]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * size + (rows - 1) * gap, columns * size + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    for index, sample in enumerate(samples):
        row, column = divmod(index, columns)
        top, left = row * (size + gap), column * (size + gap)
        grid[top : top + size, left : left + size] = sample
    return grid


# ----------------------------------------------------------------------------------------------------
# The whole run


def note(message: str) -> None:
    print(f"ddpmseg note: {message}", file=sys.stderr, flush=True)


def check_run(flags: dict[str, Any], settings: DdpmTrainingSettings, ddp: Distributed) -> None:
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
    *, settings: DdpmTrainingSettings, flags: dict[str, Any], trainer: Trainer, step: int, log: TrainingLog,
    notes: list[str],
) -> dict[str, Any]:
    return {
        "settings": settings.as_dict(),
        "flags": flags,
        "world_size": trainer.ddp.world_size,
        "device": str(trainer.device),
        "fp16": trainer.fp16,
        "images": len(trainer.images),
        "iterations_done": step,
        "wall_s": round(log.wall_s, 3),
        "resumed_at": log.resumed_at,
        "notes": notes,
        "intervals": log.intervals,
    }


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
) -> None:
    """Train (or, from ``init``, fine-tune) a DDPM on ``images``; resume from ``state`` when it exists.

    Writes, all atomically and by rank 0 only: ``state`` every ``save_every`` iterations and at the end;
    then ``checkpoint`` (the EMA weights as a plain guided-diffusion state_dict), ``log_json`` and
    ``samples`` (a PNG grid drawn with the EMA model). Under torchrun it trains with DDP.
    """
    if not isinstance(settings, DdpmTrainingSettings):
        settings = DdpmTrainingSettings.of(settings)  # a plain mapping, as a config section gives it
    images = [Path(path) for path in images]
    state, checkpoint, log_json, samples = Path(state), Path(checkpoint), Path(log_json), Path(samples)
    init = Path(init) if init is not None else None
    flags = model_flags(flags)
    ddp = distributed_from_environment()
    check_run(flags, settings, ddp)
    check_non_square_policy(non_square)
    init_state = read_init(init, flags) if init is not None else None
    pixels = load_training_images(images, flags["image_size"], non_square)
    device = start_distributed(ddp)
    trainer = None
    try:
        trainer = build_trainer(flags=flags, settings=settings, images=pixels, device=device, ddp=ddp, init_state=init_state)
        notes = []
        if settings.fp16 and not trainer.fp16:
            notes.append("fp16 ignored: mixed precision needs CUDA, this run trains in float32 on the CPU")
        if ddp.main:
            for line in notes:
                note(line)
        identity = run_identity(images=images, flags=flags, settings=settings, non_square=non_square, init=init)
        start, log = resume(state, trainer, identity)

        def write_log(step: int) -> None:
            save_json(log_json, log_record(settings=settings, flags=flags, trainer=trainer, step=step, log=log, notes=notes))

        def save(step: int) -> None:
            save_state(state, trainer, step=step, identity=identity, log=log)
            write_log(step)

        run_iterations(trainer, start=start, log=log, progress=progress, save=save)
        if ddp.main:
            if not state.exists():  # iterations: 0, the state is the init (or seeded) weights
                save(settings.iterations)
            trainer.model.load_state_dict(ema_state_dict(trainer.model, trainer.ema))
            save_torch(checkpoint, trainer.model.state_dict())
            grid = draw_samples(trainer.model, flags, count=settings.sample_count, steps=settings.sample_steps,
                                seed=settings.seed)
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


def run_iterations(trainer: Trainer, *, start: int, log: TrainingLog, progress: bool, save: Callable[[int], None]) -> None:
    """Iterations ``start`` .. ``iterations`` - 1, logging every ``log_every`` and saving every
    ``save_every`` (and after the last) on rank 0."""
    settings, main = trainer.settings, trainer.ddp.main
    started, wall_before = time.monotonic(), log.wall_s
    meter = IntervalMeter()
    bar = progress_bar(total=settings.iterations, initial=start, desc="train DDPM", unit="it", disable=not (progress and main))
    try:
        for step in range(start, settings.iterations):
            loss = train_iteration(trainer, step)
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


# ----------------------------------------------------------------------------------------------------
# The command line (torchrun's entry point) and the speed check


def write_arguments(args_json: Path, **arguments: Any) -> None:
    """Write :func:`train_ddpm`'s keyword arguments as the JSON file the command line reads."""
    plain = dict(arguments)
    if isinstance(plain.get("settings"), DdpmTrainingSettings):
        plain["settings"] = plain["settings"].as_dict()
    plain["images"] = [str(path) for path in plain.get("images", [])]
    for name in ("state", "checkpoint", "log_json", "samples", "init"):
        if plain.get(name) is not None:
            plain[name] = str(plain[name])
    save_json(args_json, plain)


def read_arguments(args_json: Path) -> dict[str, Any]:
    try:
        arguments = json.loads(Path(args_json).read_text())
    except (OSError, ValueError) as error:
        raise DdpmsegError(f"{args_json}: unreadable DDPM training arguments ({error})") from None
    names = {"images", "flags", "settings", "state", "checkpoint", "log_json", "samples", "non_square", "init", "progress"}
    unknown = sorted(set(arguments) - names)
    if unknown:
        raise DdpmsegError(f"{args_json}: unknown argument '{unknown[0]}' (train_ddpm takes {', '.join(sorted(names))})")
    arguments["settings"] = DdpmTrainingSettings.of(arguments.get("settings", {}))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m ddpmseg.diffusion.training.loop ARGS.json  (train_ddpm's keyword arguments)", file=sys.stderr)
        return 2
    try:
        train_ddpm(**read_arguments(Path(argv[0])))
    except DdpmsegError as error:
        print(f"ddpmseg error: {error}", file=sys.stderr)
        return 1
    return 0


def ddpm_training_speed(
    flags: dict[str, Any], batch_size: int, iterations: int, device: torch.device | str, *, microbatch: int = 0,
    fp16: bool = False,
) -> float:
    """Training iterations per second of the UNet ``flags`` build, on random images, after one warm-up
    iteration (one process; the same iteration code as :func:`train_ddpm`)."""
    flags = model_flags(flags)
    device = torch.device(device)
    settings = DdpmTrainingSettings(
        iterations=iterations, batch_size=batch_size, microbatch=microbatch, lr=1e-4, weight_decay=0.0,
        ema_rate=0.9999, save_every=max(iterations, 1), log_every=max(iterations, 1), fp16=fp16,
        schedule_sampler="uniform", seed=0, sample_count=1, sample_steps=1,
    )
    size = flags["image_size"]
    pixels = np.random.default_rng(0).integers(0, 256, (max(batch_size, 8), size, size, 3), dtype=np.uint8)
    trainer = build_trainer(flags=flags, settings=settings, images=pixels, device=device)
    train_iteration(trainer, 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for step in range(1, iterations + 1):
        train_iteration(trainer, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return iterations / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
