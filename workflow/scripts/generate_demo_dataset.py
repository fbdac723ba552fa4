import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.demo import generate_demo_dataset

run_stage(snakemake, generate_demo_dataset)  # noqa: F821 - injected by Snakemake
