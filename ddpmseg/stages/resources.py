"""GPUs of the machine a local run uses: jobs that ask for a GPU run one per GPU (the ``gpu`` resource is
only a counter in a local run, and Snakemake does not count GPUs itself)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable


def visible_gpu_count(
    environ: dict[str, str] | None = None, list_gpus: Callable[[], str | None] | None = None
) -> int:
    """How many GPUs this machine offers its jobs: those ``CUDA_VISIBLE_DEVICES`` names when it is set
    (``""`` or ``-1``: none), else the ``GPU n: ...`` lines of ``nvidia-smi -L`` (none without it).

    Cheaper than importing torch (about 2 s) at every parse of the workflow.
    """
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
        return 0 if not devices or devices[0].startswith("-") else len(devices)
    listing = (list_gpus or _nvidia_smi_listing)()
    return sum(line.startswith("GPU ") for line in (listing or "").splitlines())


def _nvidia_smi_listing() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def local_gpu_limit(*, visible_gpus: int, limit_given: bool, cluster: bool) -> int | None:
    """The ``gpu`` resource limit of a run: the machine's GPU count, so that jobs asking for a GPU
    (``gpu_per_job``) run one per GPU on a GPU machine, and side by side, as many as the cores allow,
    on a machine without one. None (no limit set here): the user gave one (``--resources gpu=N``, a
    profile's ``resources:``), jobs go to a cluster (which hands out the GPUs), or there is no GPU."""
    if limit_given or cluster or visible_gpus == 0:
        return None
    return visible_gpus


def gpus_per_node(gpu: int, gres: str | None) -> int:
    """GPUs on each node of a job: those of its ``gres`` GPU request where it has one (``gpu:4``,
    ``gpu:a100:4``; SLURM counts gres per node, ``gpu`` alone is one), else its ``gpu`` resource."""
    fields = (gres or "").split(":")
    if fields[0] != "gpu":
        return int(gpu)
    return int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
