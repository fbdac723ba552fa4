import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.stages.runner import run_stage
from ddpmseg.stages.predict import predict_test_shard

run_stage(snakemake, predict_test_shard, order_only=["dataset", "summary", "check", "views"])  # noqa: F821 - injected by Snakemake
