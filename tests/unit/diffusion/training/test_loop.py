"""The training loop's iteration under mixed precision's grad scaler."""

from __future__ import annotations

import numpy as np
import torch

from ddpmseg.diffusion.flags import model_flags
from ddpmseg.diffusion.training.draws import batch_indices
from ddpmseg.diffusion.training.images import TrainingImages
from ddpmseg.diffusion.training.loop import build_trainer, train_iteration

from .conftest import FLAGS, SETTINGS


def test_a_step_skipped_by_the_grad_scaler_leaves_weights_and_ema_alone(images):
    """Mixed precision (on CUDA) skips a step whose scaled gradients overflow, and so does the EMA, as in
    guided-diffusion; here the CPU grad scaler with a scale that overflows float32 forces the skip."""
    dataset = TrainingImages(images, FLAGS["image_size"], None)
    trainer = build_trainer(flags=model_flags(FLAGS), settings=SETTINGS, device=torch.device("cpu"))

    def batch(step: int) -> np.ndarray:
        return np.stack([dataset[i] for i in batch_indices(SETTINGS.seed, step, SETTINGS.batch_size, len(dataset))])

    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1e38)
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    ema = [e.add_(1.0).clone() for e in trainer.ema]  # apart from the weights, so that an update would show
    train_iteration(trainer, 0, batch(0))
    assert trainer.scaler.get_scale() < 1e38
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ema, trainer.ema))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    train_iteration(trainer, 1, batch(1))
    assert not all(torch.equal(a, b) for a, b in zip(ema, trainer.ema))
