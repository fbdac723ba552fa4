"""Rule of ``ddpm.smk``: a DDPM (``source: train``) trained or fine-tuned on unlabelled images, on one
device in this process, on several GPUs with DistributedDataParallel through ``torchrun``, or on several
nodes of a SLURM job (``srun`` starts one ``torchrun`` per node).

The whole training state (``state``) is not an output of the rule, so that Snakemake keeps it when a job
fails or reruns: a rerun resumes from it. The training decides whether a state can be resumed
(:func:`ddpmseg.diffusion.training.state.resume`): one saved under other images, flags, init or settings
is discarded with a note naming what changed, except where only the iterations grew or settings that do
not change the weights did (microbatch, saving, logging, samples).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..diffusion.training.run import train_ddpm as train_ddpm_here
from ..data.listing import training_image_files
from ..diffusion.flags import model_flags
from ..diffusion.training.launch import (
    Rendezvous,
    launch_command,
    slurm_rendezvous,
    srun_command,
    srun_environment,
    write_arguments,
)
from ..diffusion.training.settings import DdpmTrainingSettings
from ..base.errors import DdpmsegError


def train_ddpm(
    *,
    init: str | list[str],
    checkpoint: str | Path,
    log_json: str | Path,
    samples: str | Path,
    state: str | Path,
    images: list[str],
    flags: dict[str, Any],
    training: dict[str, Any],
    non_square: str | None,
    gpus: int,
    nodes: int,
    threads: int,
) -> None:
    """Train the DDPM on the images of the ``images`` folders (from ``init``'s weights when given): the
    EMA weights to ``checkpoint``, the log to ``log_json``, a grid of samples to ``samples``. ``gpus`` > 1
    runs one process per GPU under ``torchrun``, else one process trains here; ``nodes`` > 1 (a SLURM job
    of that many nodes) runs ``torchrun`` on every node, each with one process per GPU (one without). A
    node's ``threads`` are shared by its processes and their image readers (:func:`loader_workers`)."""
    rendezvous = slurm_rendezvous() if nodes > 1 else None
    init_path = _init_path(init)
    processes = max(gpus, 1)
    arguments = {
        "images": training_image_files(images),
        "flags": model_flags(flags),
        "settings": DdpmTrainingSettings.of(training),
        "state": Path(state),
        "checkpoint": Path(checkpoint),
        "log_json": Path(log_json),
        "samples": Path(samples),
        "non_square": non_square,
        "init": init_path,
        "loader_workers": loader_workers(threads, processes),
    }
    if rendezvous is not None:
        train_distributed(arguments, nproc=processes, nodes=nodes, rendezvous=rendezvous, gpus=gpus, threads=threads)
    elif gpus > 1:
        train_distributed(arguments, nproc=gpus)
    else:
        train_ddpm_here(**arguments)


def loader_workers(threads: int, processes: int) -> int:
    """DataLoader workers that read each training process's images: its share of the job's threads, less
    the one it trains with (the rule's 2 threads per GPU: 1 worker each)."""
    return max(0, threads // processes - 1)


def _init_path(init: str | list[str]) -> Path | None:
    """The rule's ``init`` input (a list of none or one checkpoint) as a path."""
    files = [init] if isinstance(init, str) else list(init)
    if len(files) > 1:
        raise TypeError(f"init: one checkpoint at most, got {files}")
    return Path(files[0]) if files else None


def train_distributed(
    arguments: dict[str, Any], *, nproc: int, nodes: int = 1, rendezvous: Rendezvous | None = None, gpus: int = 0,
    threads: int = 1,
) -> None:
    """Run the training as ``nproc`` DistributedDataParallel processes launched by ``torchrun``, or as
    ``nproc`` on each of ``nodes`` nodes of this SLURM job, one ``torchrun`` per node started by ``srun``
    (with ``gpus`` and ``threads`` per node); their output goes to this job's log."""
    args_json = Path(arguments["state"]).with_name("torchrun-args.json")
    write_arguments(args_json, **arguments)
    command = launch_command(nproc=nproc, args_json=args_json, nodes=nodes, rendezvous=rendezvous)
    environment = _same_package_environment()
    launcher, where = "torchrun", f"{nproc} GPUs"
    if nodes > 1:
        command = srun_command(nodes=nodes, gpus_per_node=gpus, threads=threads) + command
        environment = srun_environment(environment)
        launcher, where = "srun", f"{nodes} nodes x {nproc} processes"
    print("running: " + " ".join(command), file=sys.stderr, flush=True)
    sys.stdout.flush()
    returncode = subprocess.run(
        command, stdout=_stream(sys.stdout), stderr=_stream(sys.stderr), env=environment, check=False
    ).returncode
    if returncode != 0:
        raise DdpmsegError(
            f"DDPM training on {where}: {launcher} exited with status {returncode} (the processes' errors are above in the log)"
        )


def _same_package_environment() -> dict[str, str]:
    """This environment with the folder holding this ``ddpmseg`` first on PYTHONPATH: the processes run
    the code of the checkout that the workflow runs (its scripts put it first on ``sys.path``), not
    another installed copy."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _stream(stream: Any) -> Any:
    """The stream itself where it is a file (the job's log), else None: the child writes to this
    process's own descriptors."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return stream
