import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.predict import predict_ensemble

run_stage(snakemake, predict_ensemble)  # noqa: F821 - injected by Snakemake
