import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.score import score_predictions

run_stage(snakemake, score_predictions, order_only=["dataset"])  # noqa: F821 - injected by Snakemake
