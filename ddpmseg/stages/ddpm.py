"""Rule of ``ddpm.smk``: a DDPM (``source: train``) trained or fine-tuned on unlabelled images, on one
device in this process or on several GPUs with DistributedDataParallel through ``torchrun``.

The whole training state (``state``) is not an output of the rule, so that Snakemake keeps it when a job
fails or reruns: a rerun resumes from it. A state saved under other images, flags, init or settings is
discarded first (its record ``<state>.json`` says what it was saved under), except where only the
iterations grew or settings that do not change the weights did (microbatch, saving, logging, samples):
then training continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..diffusion.training import loop as ddpm_training
from ..data.listing import IMAGE_SUFFIXES, files_with_suffixes
from ..diffusion.flags import model_flags
from ..diffusion.training.loop import launch_command, write_arguments
from ..diffusion.training.settings import RESUMABLE_CHANGES, DdpmTrainingSettings
from ..base.errors import DdpmsegError
from ..base.files import save_json


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
) -> None:
    """Train the DDPM on the images of the ``images`` folders (from ``init``'s weights when given): the
    EMA weights to ``checkpoint``, the log to ``log_json``, a grid of samples to ``samples``. ``gpus`` > 1
    runs one process per GPU under ``torchrun``, else one process trains here."""
    init_path = _init_path(init)
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
    }
    discard_stale_state(Path(state), identity=training_identity(arguments), iterations=training["iterations"])
    if gpus > 1:
        train_distributed(arguments, nproc=gpus)
    else:
        ddpm_training.train_ddpm(**arguments)


def _init_path(init: str | list[str]) -> Path | None:
    """The rule's ``init`` input (a list of none or one checkpoint) as a path."""
    files = [init] if isinstance(init, str) else list(init)
    if len(files) > 1:
        raise TypeError(f"init: one checkpoint at most, got {files}")
    return Path(files[0]) if files else None


def training_image_files(folders: list[str]) -> list[Path]:
    """The images of the folders, folder after folder, each sorted by name (the files that
    :func:`ddpmseg.config.checks.ddpm_image_inputs` lists for the rule)."""
    files = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise DdpmsegError(f"{folder}: no such folder of images to train the DDPM on")
        found = files_with_suffixes(Path(folder), IMAGE_SUFFIXES)
        if not found:
            raise DdpmsegError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images to train the DDPM on")
        files += found
    return files


def _file_versions(paths: list[Path]) -> list[list[Any]]:
    """(path, size, mtime) of each file: an image changed in place changes the identity."""
    return [[str(path), path.stat().st_size, path.stat().st_mtime_ns] for path in paths]


def training_identity(arguments: dict[str, Any]) -> str:
    """Digest of what a training state depends on: the images (and their versions), flags, init, image
    policy and the settings other than ``ddpm_training.RESUMABLE_CHANGES``."""
    settings = {k: v for k, v in asdict(arguments["settings"]).items() if k not in RESUMABLE_CHANGES}
    init = arguments["init"]
    what = {
        "images": _file_versions(arguments["images"]),
        "flags": arguments["flags"],
        "settings": settings,
        "non_square": arguments["non_square"],
        "init": None if init is None else [str(init), init.stat().st_size, init.stat().st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def discard_stale_state(state: Path, *, identity: str, iterations: int) -> None:
    """Delete a training state saved under other images, flags, init or settings, or for more iterations
    than asked now (it could only be ahead); then record what the state is saved under."""
    record = state.with_name(state.name + ".json")
    saved = json.loads(record.read_text()) if record.is_file() else None
    stale = saved is None or saved.get("identity") != identity or saved.get("iterations", 0) > iterations
    if state.exists() and stale:
        print(f"{state}: saved under other settings, images or init; training starts afresh", file=sys.stderr)
        state.unlink()
    state.parent.mkdir(parents=True, exist_ok=True)
    save_json(record, {"identity": identity, "iterations": iterations})


def train_distributed(arguments: dict[str, Any], *, nproc: int) -> None:
    """Run the training as ``nproc`` DistributedDataParallel processes launched by ``torchrun``; their
    output goes to this job's log."""
    args_json = Path(arguments["state"]).with_name("torchrun-args.json")
    write_arguments(args_json, **arguments)
    command = launch_command(nproc=nproc, args_json=args_json)
    print("running: " + " ".join(command), file=sys.stderr, flush=True)
    sys.stdout.flush()
    returncode = subprocess.run(
        command, stdout=_stream(sys.stdout), stderr=_stream(sys.stderr), env=_same_package_environment(), check=False
    ).returncode
    if returncode != 0:
        raise DdpmsegError(
            f"DDPM training on {nproc} GPUs: torchrun exited with status {returncode} (the processes' errors are above in the log)"
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
