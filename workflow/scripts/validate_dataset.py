import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.validate import validate_dataset

run_stage(snakemake, validate_dataset, order_only=["dataset"])  # noqa: F821 - injected by Snakemake
