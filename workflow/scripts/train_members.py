import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.train import train_members

run_stage(snakemake, train_members)  # noqa: F821 - injected by Snakemake
