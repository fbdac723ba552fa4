import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.report import make_report_figures

run_stage(snakemake, make_report_figures)  # noqa: F821 - injected by Snakemake
