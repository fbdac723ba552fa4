"""Stage ddpm: one process trains in place, several GPUs go through torchrun, several nodes of a SLURM job
through srun and a torchrun per node; the image readers share the job's threads."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import TINY_FLAGS

from ddpmseg.diffusion.flags import model_flags
from ddpmseg.diffusion.training.launch import Rendezvous, launch_command, srun_command
from ddpmseg.diffusion.training.settings import DdpmTrainingSettings
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.stages import ddpm as stage

TRAINING = {"iterations": 4, "batch_size": 2, "microbatch": 0, "lr": 1e-4, "weight_decay": 0.0, "ema_rate": 0.9,
            "save_every": 2, "log_every": 1, "fp16": False, "schedule_sampler": "uniform", "seed": 0,
            "sample_count": 2, "sample_steps": 2}


def stage_arguments(tmp_path: Path, **overrides) -> dict:
    """The rule's keyword arguments for a DDPM trained on a folder of two (fake) images."""
    folder = tmp_path / "images"
    if not folder.exists():
        folder.mkdir()
        for name in ("a.png", "b.png"):
            (folder / name).write_bytes(name.encode())
    arguments = {
        "init": [], "checkpoint": str(tmp_path / "ddpm.pt"), "log_json": str(tmp_path / "out/training.json"),
        "samples": str(tmp_path / "out/samples.png"), "state": str(tmp_path / "out/state.pt"),
        "images": [str(folder)], "flags": TINY_FLAGS, "training": dict(TRAINING), "non_square": "resize", "gpus": 0,
        "nodes": 1, "threads": 2,
    }
    return {**arguments, **overrides}


@pytest.fixture
def calls(monkeypatch) -> dict[str, list]:
    """Records of the training in this process and of ``subprocess.run`` calls (neither does anything)."""
    recorded: dict[str, list] = {"train": [], "run": []}
    monkeypatch.setattr(stage, "train_ddpm_here", lambda **kwargs: recorded["train"].append(kwargs))

    def run(command, **kwargs):
        if command[:2] == ["scontrol", "show"]:  # SLURM's list of the job's nodes
            return subprocess.CompletedProcess(command, 0, stdout="gpu07\ngpu08\n")
        args_json = Path(command[-1])  # the entry point's ARGS.json
        recorded["run"].append({"command": command, "arguments": json.loads(args_json.read_text()), **kwargs})
        return subprocess.CompletedProcess(command, recorded.get("returncode", 0))

    monkeypatch.setattr(stage.subprocess, "run", run)
    return recorded


@pytest.mark.parametrize("gpus", [0, 1])
def test_one_gpu_or_none_trains_in_this_process(tmp_path, calls, gpus) -> None:
    (tmp_path / "init.pt").write_bytes(b"weights")
    stage.train_ddpm(**stage_arguments(tmp_path, gpus=gpus, init=[str(tmp_path / "init.pt")]))
    assert calls["run"] == []
    [kwargs] = calls["train"]
    assert kwargs["settings"] == DdpmTrainingSettings(**TRAINING)
    assert kwargs["images"] == [tmp_path / "images/a.png", tmp_path / "images/b.png"]
    assert kwargs["init"] == tmp_path / "init.pt"
    assert kwargs["flags"] == model_flags(TINY_FLAGS) and kwargs["non_square"] == "resize"
    assert kwargs["state"] == tmp_path / "out/state.pt" and kwargs["samples"] == tmp_path / "out/samples.png"
    assert kwargs["loader_workers"] == 1  # the job's 2 threads: one trains, one reads images


def test_several_gpus_launch_torchrun_with_the_same_arguments(tmp_path, calls) -> None:
    stage.train_ddpm(**stage_arguments(tmp_path, gpus=4, threads=16))
    assert calls["train"] == []
    [run] = calls["run"]
    args_json = tmp_path / "out/torchrun-args.json"
    assert run["command"] == launch_command(nproc=4, args_json=args_json)
    assert run["arguments"] == {
        "images": [str(tmp_path / "images/a.png"), str(tmp_path / "images/b.png")], "flags": model_flags(TINY_FLAGS), "settings": TRAINING,
        "state": str(tmp_path / "out/state.pt"), "checkpoint": str(tmp_path / "ddpm.pt"),
        "log_json": str(tmp_path / "out/training.json"), "samples": str(tmp_path / "out/samples.png"),
        "non_square": "resize", "init": None, "loader_workers": 3,
    }
    assert asdict(DdpmTrainingSettings(**run["arguments"]["settings"])) == TRAINING
    assert run["stdout"] is None or run["stdout"].fileno() >= 0  # the job's log, or this process's output
    package_root = str(Path(stage.__file__).resolve().parents[2])  # this checkout, not another installed copy
    assert run["env"]["PYTHONPATH"].split(os.pathsep)[0] == package_root


def test_several_nodes_run_one_torchrun_per_node_through_srun_in_the_slurm_job(tmp_path, calls, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # the rule's own job step: one task, on one node
    stage.train_ddpm(**stage_arguments(tmp_path, gpus=4, nodes=2, threads=8))
    assert calls["train"] == []
    [run] = calls["run"]
    rendezvous = Rendezvous(host="gpu07", port=29500 + 321, id="ddpmseg-4321")
    node = launch_command(nproc=4, args_json=tmp_path / "out/torchrun-args.json", nodes=2, rendezvous=rendezvous)
    assert run["command"] == srun_command(nodes=2, gpus_per_node=4, threads=8) + node
    assert run["arguments"]["loader_workers"] == 1  # 8 threads on a node of 4 processes
    assert run["env"]["SLURM_JOB_ID"] == "4321" and "SLURM_NTASKS" not in run["env"]
    calls["returncode"] = 3
    with pytest.raises(DdpmsegError, match=r"^DDPM training on 2 nodes x 4 processes: srun exited with status 3"):
        stage.train_ddpm(**stage_arguments(tmp_path, gpus=4, nodes=2, threads=8))


def test_several_nodes_outside_a_slurm_job_are_one_error_line_before_anything(tmp_path, calls, monkeypatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(DdpmsegError, match=r"^DDPM training on several nodes \(training.nodes\) runs only in a SLURM job"):
        stage.train_ddpm(**stage_arguments(tmp_path, gpus=1, nodes=2))
    assert calls["train"] == [] and calls["run"] == []


def test_each_process_reads_its_images_with_its_share_of_the_threads_but_one() -> None:
    assert [stage.loader_workers(threads, 1) for threads in (1, 2, 5)] == [0, 1, 4]
    assert [stage.loader_workers(threads, 4) for threads in (4, 8, 9)] == [0, 1, 1]


def test_a_folder_without_images_is_one_error_line(tmp_path, calls) -> None:
    # a folder in a generated dataset is only checked when the job runs (the dataset's rule makes it)
    with pytest.raises(DdpmsegError, match=r"^.*unlabeled: no such folder of images to train the DDPM on$"):
        stage.train_ddpm(**stage_arguments(tmp_path, images=[str(tmp_path / "unlabeled")]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DdpmsegError, match=r"^.*empty: no \.png/\.jpg/\.jpeg images to train the DDPM on$"):
        stage.train_ddpm(**stage_arguments(tmp_path, images=[str(tmp_path / "empty")]))
    assert calls["train"] == []


def test_a_failed_torchrun_is_one_error_line(tmp_path, calls) -> None:
    calls["returncode"] = 1
    with pytest.raises(DdpmsegError) as info:
        stage.train_ddpm(**stage_arguments(tmp_path, gpus=2))
    assert str(info.value).startswith("DDPM training on 2 GPUs: torchrun exited with status 1") and "\n" not in str(info.value)
