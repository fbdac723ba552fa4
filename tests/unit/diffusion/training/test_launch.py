"""Starting a training: the command line of one process or of torchrun, and its one-line errors."""

from __future__ import annotations

import json
import sys

import pytest

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.training.launch import launch_command, main, write_arguments

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
