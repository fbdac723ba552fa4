"""An exponential moving average (EMA) of a model's weights, as guided-diffusion keeps one while training:
after every optimizer step, ``ema = rate * ema + (1 - rate) * weight`` for each parameter. The EMA
weights are what a trained DDPM's checkpoint holds (and what features are extracted from)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def copy_parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    """Detached float32 copies of the model's parameters (the EMA's starting point)."""
    return [parameter.detach().clone().float() for parameter in model.parameters()]


@torch.no_grad()
def update_ema(ema: Sequence[torch.Tensor], parameters: Iterable[torch.Tensor], rate: float) -> None:
    """``ema = rate * ema + (1 - rate) * parameter``, in place, for each pair."""
    for average, parameter in zip(ema, parameters, strict=True):
        average.mul_(rate).add_(parameter.detach().to(average.dtype), alpha=1 - rate)


def ema_state_dict(model: torch.nn.Module, ema: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state_dict with each parameter replaced by its EMA (buffers as the model has them),
    on the CPU: a plain guided-diffusion checkpoint."""
    names = [name for name, _ in model.named_parameters()]
    if len(names) != len(ema):
        raise ValueError(f"{len(ema)} EMA tensors for a model of {len(names)} parameters")
    state = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
    for name, average in zip(names, ema):
        state[name] = average.detach().cpu().clone().to(state[name].dtype)
    return state
