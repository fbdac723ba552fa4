import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.download import extract_dataset

run_stage(snakemake, extract_dataset)  # noqa: F821 - injected by Snakemake
