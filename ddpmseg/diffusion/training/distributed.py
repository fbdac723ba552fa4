"""One process or many: this process's rank under ``torchrun`` and the device it trains on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ...base.errors import DdpmsegError
from ..model import select_device


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

    def positions(self, batch_size: int) -> np.ndarray:
        """This rank's positions in a global batch: its share, the ranks' shares in rank order."""
        share = batch_size // self.world_size
        return np.arange(self.rank * share, (self.rank + 1) * share)


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
