"""One training iteration: the model, its optimizer and grad scaler, one optimizer step on a global batch
(microbatches, DDP, mixed precision, the EMA, the sampler's update) of which this rank is given its
share of images, and a speed measurement."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..flags import model_flags
from ..model import build_model_and_diffusion
from .distributed import Distributed
from .draws import batch_indices, sample_noise, schedule_sampler, step_draws, torch_seed
from .ema import copy_parameters, update_ema
from .images import to_batch
from .settings import DdpmTrainingSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # guided-diffusion uses deprecated torch.cuda.amp names
    from guided_diffusion import resample


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
    fp16: bool


def build_trainer(
    *,
    flags: dict[str, Any],
    settings: DdpmTrainingSettings,
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


def train_iteration(trainer: Trainer, step: int, pixels: np.ndarray) -> float:
    """One optimizer step on global batch ``step``, of which ``pixels`` is this rank's share ((share, S,
    S, 3) uint8, the images at its positions: :class:`~ddpmseg.diffusion.training.images.StepBatches`);
    returns the batch's loss (importance-weighted mean)."""
    settings, ddp, device = trainer.settings, trainer.ddp, trainer.device
    batch_size = settings.batch_size
    positions = ddp.positions(batch_size)
    share = len(positions)
    flips, timesteps, importance = step_draws(settings.seed, step, batch_size, trainer.sampler.weights())
    torch.manual_seed(torch_seed(settings.seed, step, ddp.rank))  # dropout
    x = to_batch(pixels, flips[positions]).to(device)
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
        schedule_sampler="uniform", seed=0, sample_count=1, sample_steps=2,
    )
    size = flags["image_size"]
    pixels = np.random.default_rng(0).integers(0, 256, (max(batch_size, 8), size, size, 3), dtype=np.uint8)
    trainer = build_trainer(flags=flags, settings=settings, device=device)

    def iteration(step: int) -> None:
        train_iteration(trainer, step, pixels[batch_indices(settings.seed, step, batch_size, len(pixels))])

    iteration(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for step in range(1, iterations + 1):
        iteration(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return iterations / (time.perf_counter() - started)

