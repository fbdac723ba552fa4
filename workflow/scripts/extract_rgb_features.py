import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.features import extract_rgb_features

run_stage(snakemake, extract_rgb_features, order_only=["images", "summary"])  # noqa: F821 - injected by Snakemake
