import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.validate import validate_ddpm

run_stage(snakemake, validate_ddpm)  # noqa: F821 - injected by Snakemake
