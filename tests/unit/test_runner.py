"""The script runner: a job's progress echoed to the console with the full bar kept in its log, and
the error lines of this run's job logs."""

from __future__ import annotations

import io
import os
import sys
import types

import pytest

from ddpmseg.errors import DdpmsegError
from ddpmseg.progress import progress_bar
from ddpmseg.runner import job_error_lines, run_script


def fake_snakemake(tmp_path, rule: str = "validate_dataset") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        threads=1, log=[str(tmp_path / "logs" / rule / "cells.log")], rule=rule, wildcards={"dataset": "cells"}
    )


def test_run_script_echoes_progress_to_the_console_and_keeps_the_bar_in_the_log(tmp_path, monkeypatch) -> None:
    (tmp_path / "logs/validate_dataset").mkdir(parents=True)
    console = io.StringIO()
    monkeypatch.setattr(sys, "stderr", console)
    monkeypatch.setattr("ddpmseg.progress.MIN_INTERVAL_S", 0.0)

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
