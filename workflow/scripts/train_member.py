import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.train import train_classifier

run_stage(snakemake, train_classifier)  # noqa: F821 - injected by Snakemake
