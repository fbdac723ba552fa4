import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.augment import augment_training_set

run_stage(snakemake, augment_training_set, order_only=["dataset", "summary"])  # noqa: F821 - injected by Snakemake
