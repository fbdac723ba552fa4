from functools import partial

import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.ddpm import train_ddpm
from ddpmseg.stages.resources import gpus_per_node

# GPUs and nodes come from the job's resources, not params: a finished training does not rerun for more.
resources = snakemake.resources  # noqa: F821 - injected by Snakemake
gpus = gpus_per_node(resources.gpu, resources.get("gres"))
stage = partial(train_ddpm, gpus=gpus, nodes=resources.nodes, threads=snakemake.threads)  # noqa: F821 - injected by Snakemake
run_stage(snakemake, stage, order_only=["image_files"])  # noqa: F821 - injected by Snakemake
