import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.predict import collect_predictions

run_stage(snakemake, collect_predictions)  # noqa: F821 - injected by Snakemake
