"""The runner passes a rule's named inputs, outputs, params and named logs to its stage by name."""

from __future__ import annotations

import types

import pytest
from snakemake.iocontainers import Log, Namedlist, Params

from ddpmseg.runner import run_stage, stage_arguments


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
