from functools import partial

import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.ddpm import train_ddpm

# GPUs come from the job's gpu resource, not a param: a finished training does not rerun for more GPUs.
stage = partial(train_ddpm, gpus=snakemake.resources.gpu, threads=snakemake.threads)  # noqa: F821 - injected by Snakemake
run_stage(snakemake, stage, order_only=["image_files"])  # noqa: F821 - injected by Snakemake
