import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.apply import gather_labels

run_stage(snakemake, gather_labels)  # noqa: F821 - injected by Snakemake
