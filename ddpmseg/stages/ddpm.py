"""Rule of ``ddpm.smk``: a DDPM (``source: train``) trained or fine-tuned on unlabelled images, on one
device in this process or on several GPUs with DistributedDataParallel through ``torchrun``.

The whole training state (``state``) is not an output of the rule, so that Snakemake keeps it when a job
fails or reruns: a rerun resumes from it. A state saved under other settings is discarded first (its
record ``<state>.json`` says which), except where only the iterations grew or settings that do not shape
the weights changed (saving, logging, samples): then training continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import ddpm_training
from ..ddpm import model_flags
from ..ddpm_training import DdpmTrainingSettings, launch_command
from ..errors import DdpmsegError
from ..files import save_json

# Settings that change nothing of the weights up to a step: a state saved under other values of them is
# resumed (a larger ``iterations`` continues the training).
RESUMABLE_SETTINGS = ("iterations", "save_every", "log_every", "sample_count", "sample_steps")


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
        "images": [Path(folder) for folder in images],
        "flags": model_flags(flags),
        "settings": DdpmTrainingSettings(**training),
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


def _image_files(folders: list[Path]) -> list[list[Any]]:
    """(path, size, mtime) of every file under the image folders: a changed image changes the identity."""
    listing = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = path.stat()
            listing.append([str(path), info.st_size, info.st_mtime_ns])
    return listing


def training_identity(arguments: dict[str, Any]) -> str:
    """Digest of what a training state depends on: images, flags, init, image policy and the settings
    other than :data:`RESUMABLE_SETTINGS`."""
    settings = {k: v for k, v in asdict(arguments["settings"]).items() if k not in RESUMABLE_SETTINGS}
    init = arguments["init"]
    what = {
        "images": _image_files(arguments["images"]),
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


def torchrun_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """``train_ddpm``'s keyword arguments as JSON values (paths as strings, settings as a dict)."""
    plain = {key: str(value) if isinstance(value, Path) else value for key, value in arguments.items()}
    plain["images"] = [str(folder) for folder in arguments["images"]]
    plain["settings"] = asdict(arguments["settings"])
    return plain


def train_distributed(arguments: dict[str, Any], *, nproc: int) -> None:
    """Run the training as ``nproc`` DistributedDataParallel processes launched by ``torchrun``; their
    output goes to this job's log."""
    args_json = Path(arguments["state"]).with_name("torchrun-args.json")
    save_json(args_json, torchrun_arguments(arguments))
    command = launch_command(nproc=nproc, args_json=args_json)
    print("running: " + " ".join(command), file=sys.stderr, flush=True)
    sys.stdout.flush()
    returncode = subprocess.run(command, stdout=_stream(sys.stdout), stderr=_stream(sys.stderr), check=False).returncode
    if returncode != 0:
        raise DdpmsegError(
            f"DDPM training on {nproc} GPUs: torchrun exited with status {returncode} (the processes' errors are above in the log)"
        )


def _stream(stream: Any) -> Any:
    """The stream itself where it is a file (the job's log), else None: the child writes to this
    process's own descriptors."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return stream
