"""Starting a training: the command line of one process, of ``torchrun`` for several on this machine or on
each of several nodes (in a SLURM job: ``srun`` starts one per node), and the JSON file of
:func:`ddpmseg.diffusion.training.run.train_ddpm`'s arguments that it reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...base.errors import DdpmsegError
from ...base.files import save_json
from .run import train_ddpm
from .settings import DdpmTrainingSettings, whole_number

# torchrun's default port; a SLURM job adds its id modulo 1000, so that two jobs whose first node is the
# same seldom share a rendezvous store (and if they do, their rendezvous ids keep them apart).
RENDEZVOUS_PORT = 29500


@dataclass(frozen=True)
class Rendezvous:
    """Where the torchrun agents of several nodes meet (c10d): a store on ``host``:``port``, hosted by the
    agent on that host, under the run's ``id``."""

    host: str
    port: int
    id: str


def launch_command(*, nproc: int, args_json: Path, nodes: int = 1, rendezvous: Rendezvous | None = None) -> list[str]:
    """The command line that trains with ``nproc`` processes (one per GPU) on this machine: torchrun
    (``python -m torch.distributed.run --standalone``) for several, a plain ``python -m`` for one. With
    ``nodes`` > 1 it is the command of one node, to be started on each: torchrun with ``nproc`` processes
    that joins the others at ``rendezvous``."""
    for name, value in (("processes", nproc), ("nodes", nodes)):
        if not whole_number(value) or value < 1:
            raise DdpmsegError(f"DDPM training: the number of {name} must be a whole number >= 1, not {value!r}")
    module = ["-m", "ddpmseg.diffusion.training.launch", str(args_json)]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if nodes > 1:
        if rendezvous is None:
            raise DdpmsegError(f"DDPM training on {nodes} nodes: no rendezvous (host:port) for them to meet at")
        return [
            *torchrun, f"--nnodes={nodes}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
            f"--rdzv_endpoint={rendezvous.host}:{rendezvous.port}", f"--rdzv_id={rendezvous.id}", *module,
        ]
    if nproc == 1:
        return [sys.executable, *module]
    return [*torchrun, "--standalone", f"--nproc_per_node={nproc}", *module]


def slurm_rendezvous(environ: Mapping[str, str] = os.environ) -> Rendezvous:
    """The rendezvous of the nodes of this SLURM job: its first node (``scontrol show hostnames``
    expands ``SLURM_JOB_NODELIST``), a port of the job's id, the job's id."""
    job, nodelist = environ.get("SLURM_JOB_ID", ""), environ.get("SLURM_JOB_NODELIST", "")
    if not job.isdigit() or not nodelist:
        raise DdpmsegError(
            "DDPM training on several nodes (training.nodes) runs only in a SLURM job of that many nodes "
            "(snakemake --workflow-profile profiles/slurm); SLURM_JOB_ID and SLURM_JOB_NODELIST are not set"
        )
    try:
        listed = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise DdpmsegError(f"DDPM training: scontrol cannot list the nodes of SLURM job {job} ({error})") from None
    hosts = listed.stdout.split()
    if not hosts:
        raise DdpmsegError(f"DDPM training: scontrol listed no nodes for SLURM_JOB_NODELIST={nodelist!r}")
    return Rendezvous(host=hosts[0], port=RENDEZVOUS_PORT + int(job) % 1000, id=f"ddpmseg-{job}")


def srun_command(*, nodes: int, gpus_per_node: int, threads: int) -> list[str]:
    """``srun`` starting one task on each of ``nodes`` nodes of this SLURM job, with ``threads`` CPUs and
    ``gpus_per_node`` GPUs each. It runs from within the job step of the rule, which holds part of the
    first node: ``--overlap`` lets the step share it."""
    command = ["srun", "--overlap", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
               f"--cpus-per-task={threads}", "--kill-on-bad-exit=1"]
    return command + ([f"--gres=gpu:{gpus_per_node}"] if gpus_per_node else [])


def srun_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the settings of the job step it runs in (``SLURM_*`` but the job's identity and
    the cluster's configuration, ``SRUN_*``, ``SBATCH_*``): srun reads them as defaults (one task, one node) that would override what
    the job's allocation allows."""
    kept = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CLUSTER_NAME", "SLURM_CONF"}
    return {name: value for name, value in environ.items()
            if name in kept or not name.startswith(("SLURM_", "SRUN_", "SBATCH_"))}


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
