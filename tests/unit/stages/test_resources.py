"""Resources of a job: the GPUs on each of its nodes, from the resources a training job asks SLURM for."""

from __future__ import annotations

from ddpmseg.stages.resources import gpus_per_node


def test_gpus_per_node_come_from_the_per_node_gres_else_the_gpu_resource() -> None:
    assert gpus_per_node(4, "") == 4 and gpus_per_node(2, None) == 2  # one node: the gpu resource
    assert gpus_per_node(0, "gpu:4") == 4 and gpus_per_node(0, "gpu:a100:8") == 8  # several: gres, per node
    assert gpus_per_node(0, "gpu") == 1 and gpus_per_node(3, "shard:2") == 3
