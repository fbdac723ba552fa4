"""The script runner: a rule's named inputs, outputs, params and named logs passed to its stage by name; a
job's progress echoed to the console with the full bar kept in its log; the error lines of this run's job logs."""

from __future__ import annotations

import io
import os
import sys
import types

import pytest
from snakemake.iocontainers import Log, Namedlist, Params

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.base.progress import progress_bar
from ddpmseg.stages.runner import job_error_lines, run_script, run_stage, stage_arguments


def named(kind, **entries):
    """A Snakemake Namedlist like a job's input, output, params or log, with lists kept as lists."""
    files = kind()
    for name, value in entries.items():
        start = len(files)
        if isinstance(value, list):
            files.extend(value)
            files._set_name(name, start, end=len(files))
        else:
            files.append(value)
            files._set_name(name, start)
    return files


def job(tmp_path, *, input=None, output=None, params=None, unnamed_input=()):
    inputs = named(Namedlist, **(input or {}))
    inputs.extend(unnamed_input)
    return types.SimpleNamespace(
        rule="some_rule", threads=1, wildcards={}, input=inputs, output=named(Namedlist, **(output or {})),
        params=named(Params, **(params or {})), log=Log([str(tmp_path / "job.log")]),
    )


def test_every_named_file_and_param_is_passed_by_name_and_lists_stay_lists(tmp_path) -> None:
    smk = job(
        tmp_path,
        input={"stores": ["a.zarr"], "summary": "s.json", "checkpoint": "c.pt"},
        output={"models": ["m0.pt", "m1.pt"], "store": "out.zarr"},
        params={"members": [0, 1], "settings": {"lr": 0.001}, "seed": 3},
    )
    arguments = stage_arguments(smk, order_only=["summary"])
    assert arguments == {
        "stores": ["a.zarr"], "checkpoint": "c.pt", "models": ["m0.pt", "m1.pt"], "store": "out.zarr",
        "members": [0, 1], "settings": {"lr": 0.001}, "seed": 3,
    }
    assert type(arguments["stores"]) is list and type(arguments["checkpoint"]) is str

    received = {}
    run_stage(smk, lambda **kwargs: received.update(kwargs), order_only=["summary"])
    assert received == arguments


def test_an_unnamed_file_a_name_used_twice_or_an_unknown_order_only_input_is_refused(tmp_path) -> None:
    with pytest.raises(TypeError, match="every input file needs a name"):
        stage_arguments(job(tmp_path, input={"a": "a.txt"}, unnamed_input=["b.txt"]))
    with pytest.raises(TypeError, match="'seed' names two"):
        stage_arguments(job(tmp_path, output={"seed": "out.txt"}, params={"seed": 0}))
    with pytest.raises(TypeError, match="no input named summary"):
        stage_arguments(job(tmp_path, input={"a": "a.txt"}), order_only=["summary"])


def test_a_stage_called_with_a_setting_it_does_not_take_fails_loudly(tmp_path, capsys) -> None:
    def stage(*, store: str) -> None:
        pass

    with pytest.raises(TypeError, match="unexpected keyword argument 'seed'"):
        run_stage(job(tmp_path, output={"store": "out.zarr"}, params={"seed": 0}), stage)
    assert "rule some_rule failed" in capsys.readouterr().err


def fake_snakemake(tmp_path, rule: str = "validate_dataset") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        threads=1, log=[str(tmp_path / "logs" / rule / "cells.log")], rule=rule, wildcards={"dataset": "cells"}
    )


def test_run_script_echoes_progress_to_the_console_and_keeps_the_bar_in_the_log(tmp_path, monkeypatch) -> None:
    (tmp_path / "logs/validate_dataset").mkdir(parents=True)
    console = io.StringIO()
    monkeypatch.setattr(sys, "stderr", console)
    monkeypatch.setattr("ddpmseg.base.progress.MIN_INTERVAL_S", 0.0)

    def main(_snakemake) -> None:
        for _ in progress_bar(range(20), desc="check", mininterval=0):
            pass

    run_script(fake_snakemake(tmp_path), main)
    assert "[validate_dataset dataset=cells] check: 20/20 it (100 %)" in console.getvalue()
    assert "20/20" in (tmp_path / "logs/validate_dataset/cells.log").read_text()


def test_error_lines_of_this_runs_logs_oldest_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for rule in ("validate_dataset", "predict_ensemble"):
        (tmp_path / "logs" / rule).mkdir(parents=True)
    (tmp_path / "logs/old.log").write_text("ddpmseg error: from an earlier run\n")
    old = tmp_path / "logs/old.log"
    os.utime(old, (100, 100))
    since = old.stat().st_mtime + 1

    def fail(_snakemake) -> None:
        print("working")
        raise DdpmsegError("cells/img4.png: unreadable mask")

    with pytest.raises(SystemExit):
        run_script(fake_snakemake(tmp_path), fail)

    def crash(_snakemake) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_script(fake_snakemake(tmp_path, "predict_ensemble"), crash)
    (tmp_path / "logs/fine.log").write_text("all good\n")
    assert job_error_lines(tmp_path / "logs", since) == [
        "ddpmseg error: cells/img4.png: unreadable mask",
        f"ddpmseg: rule predict_ensemble failed, see {tmp_path}/logs/predict_ensemble/cells.log",
    ]
