"""Starting a training: the command line of one process, of torchrun on one node or on each of several
(the rendezvous of a SLURM job's nodes, srun and its environment), and its one-line errors."""

from __future__ import annotations

import json
import os
import sys

import pytest

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.training.launch import (
    Rendezvous,
    launch_command,
    main,
    slurm_rendezvous,
    srun_command,
    srun_environment,
    write_arguments,
)

from .conftest import FLAGS, SETTINGS, outputs


def test_launch_command_runs_torchrun_for_several_processes(tmp_path):
    args_json = tmp_path / "args.json"
    assert launch_command(nproc=1, args_json=args_json) == [sys.executable, "-m", "ddpmseg.diffusion.training.launch", str(args_json)]
    assert launch_command(nproc=4, args_json=args_json) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
        "-m", "ddpmseg.diffusion.training.launch", str(args_json),
    ]
    with pytest.raises(DdpmsegError, match="number of processes"):
        launch_command(nproc=0, args_json=args_json)


def test_on_several_nodes_each_runs_torchrun_that_meets_the_others_at_a_c10d_rendezvous(tmp_path):
    args_json = tmp_path / "args.json"
    rendezvous = Rendezvous(host="gpu07", port=29734, id="ddpmseg-1234")
    assert launch_command(nproc=4, args_json=args_json, nodes=2, rendezvous=rendezvous) == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu07:29734", "--rdzv_id=ddpmseg-1234", "-m", "ddpmseg.diffusion.training.launch", str(args_json),
    ]
    assert "--nnodes=2" in launch_command(nproc=1, args_json=args_json, nodes=2, rendezvous=rendezvous)
    with pytest.raises(DdpmsegError, match="on 2 nodes: no rendezvous"):
        launch_command(nproc=4, args_json=args_json, nodes=2)
    with pytest.raises(DdpmsegError, match="number of nodes must be a whole number >= 1, not 0"):
        launch_command(nproc=4, args_json=args_json, nodes=0)


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A stand-in for SLURM's scontrol on PATH: ``show hostnames LIST`` prints two nodes, anything else fails."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "scontrol").write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "show hostnames gpu[07-08]" ] || { echo "unexpected: $*" >&2; exit 1; }\n'
        "printf 'gpu07\\ngpu08\\n'\n"
    )
    (folder / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_a_slurm_jobs_rendezvous_is_its_first_node_and_a_port_of_its_id(scontrol):
    job = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert slurm_rendezvous(job) == Rendezvous(host="gpu07", port=29500 + 234, id="ddpmseg-1234")
    with pytest.raises(DdpmsegError, match=r"scontrol cannot list the nodes of SLURM job 1234"):
        slurm_rendezvous({**job, "SLURM_JOB_NODELIST": "cpu[1-2]"})
    with pytest.raises(DdpmsegError) as info:
        slurm_rendezvous({})
    assert str(info.value).startswith("DDPM training on several nodes (training.nodes) runs only in a SLURM job")


def test_srun_starts_one_task_per_node_beside_the_rules_step_without_its_settings():
    assert srun_command(nodes=3, gpus_per_node=4, threads=8) == [
        "srun", "--overlap", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--cpus-per-task=8",
        "--kill-on-bad-exit=1", "--gres=gpu:4",
    ]
    assert "--gres" not in " ".join(srun_command(nodes=2, gpus_per_node=0, threads=2))
    step = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_NNODES": "1", "SLURM_CPUS_PER_TASK": "8",
            "SLURM_CONF": "/etc/slurm/slurm.conf", "SRUN_CPUS_PER_TASK": "8", "SBATCH_GRES": "gpu:4",
            "PYTHONPATH": "/repo", "HOME": "/home/u"}
    assert srun_environment(step) == {"SLURM_JOB_ID": "7", "SLURM_CONF": "/etc/slurm/slurm.conf",
                                      "PYTHONPATH": "/repo", "HOME": "/home/u"}


def test_the_command_line_prints_one_error_line_and_exits_1(tmp_path, images, capsys):
    broken = images[0].parent / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    args_json = tmp_path / "args.json"
    write_arguments(args_json, images=[*images, broken], flags=FLAGS, settings=SETTINGS, non_square=None,
                    progress=False, **outputs(tmp_path / "run"))
    assert main([str(args_json)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("ddpmseg error: ") and "broken.jpg: unreadable image" in error[0]
    args_json.write_text(json.dumps({**json.loads(args_json.read_text()), "epochs": 3}))
    assert main([str(args_json)]) == 1
    assert "unknown argument 'epochs'" in capsys.readouterr().err
