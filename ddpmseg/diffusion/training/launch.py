"""Starting a training: the command line of one process, or of ``torchrun`` for several on this machine,
and the JSON file of :func:`ddpmseg.diffusion.training.run.train_ddpm`'s arguments that it reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...base.errors import DdpmsegError
from ...base.files import save_json
from .run import train_ddpm
from .settings import DdpmTrainingSettings, whole_number


def launch_command(*, nproc: int, args_json: Path) -> list[str]:
    """The command line that trains with ``nproc`` processes (one per GPU) on this machine: torchrun
    (``python -m torch.distributed.run --standalone``) for several, a plain ``python -m`` for one."""
    if not whole_number(nproc) or nproc < 1:
        raise DdpmsegError(f"DDPM training: the number of processes must be a whole number >= 1, not {nproc!r}")
    module = ["-m", "ddpmseg.diffusion.training.launch", str(args_json)]
    if nproc == 1:
        return [sys.executable, *module]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *module]


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
    names = {"images", "flags", "settings", "state", "checkpoint", "log_json", "samples", "non_square", "init", "progress",
             "loader_workers"}
    unknown = sorted(set(arguments) - names)
    if unknown:
        raise DdpmsegError(f"{args_json}: unknown argument '{unknown[0]}' (train_ddpm takes {', '.join(sorted(names))})")
    arguments["settings"] = DdpmTrainingSettings.of(arguments.get("settings", {}))
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m ddpmseg.diffusion.training.launch ARGS.json  (train_ddpm's keyword arguments)", file=sys.stderr)
        return 2
    try:
        train_ddpm(**read_arguments(Path(argv[0])))
    except DdpmsegError as error:
        print(f"ddpmseg error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
