import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.tables import make_tables

run_stage(snakemake, make_tables)  # noqa: F821 - injected by Snakemake
