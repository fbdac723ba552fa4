import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.runner import run_stage
from ddpmseg.stages.demo import train_demo_ddpm

run_stage(snakemake, train_demo_ddpm)  # noqa: F821 - injected by Snakemake
