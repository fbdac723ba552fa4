import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.download import download_archive

run_stage(snakemake, download_archive)  # noqa: F821 - injected by Snakemake
