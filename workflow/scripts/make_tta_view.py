import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.tta import make_tta_view

run_stage(snakemake, make_tta_view, order_only=["dataset", "summary"])  # noqa: F821 - injected by Snakemake
