import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.apply import label_images

run_stage(snakemake, label_images)  # noqa: F821 - injected by Snakemake
