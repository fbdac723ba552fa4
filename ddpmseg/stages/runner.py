"""Runs a stage function (:mod:`ddpmseg.stages`) as a Snakemake ``script:``: the rule's named inputs,
outputs, params and log files by name, the job's log file, thread count, console progress and one-line
errors, which the workflow's ``onerror`` handler repeats as the last lines of a failed run.

The convention: every input and output of a rule has a name, and the stage function its script runs
takes exactly those names, and those of the rule's params, as keyword-only parameters. A list stays a
list (an input function's list of one file too); a file is passed as a ``str``. The first log file
receives the job's stdout and stderr; log files with names are passed by name as well.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..base.progress import console_progress

# Lines a failed job writes last to its log and to the console.
ERROR_PREFIXES = ("ddpmseg error: ", "ddpmseg: rule ")
LOG_TAIL_BYTES = 64 * 1024


def job_label(snakemake: Any) -> str:
    """``rule name=value ...``: which job a console line is about."""
    wildcards = " ".join(f"{name}={value}" for name, value in snakemake.wildcards.items())
    return f"{snakemake.rule} {wildcards}".strip()


def run_script(snakemake: Any, main: Callable[[Any], None]) -> None:
    """Run ``main(snakemake)`` with stdout/stderr in the rule's log.

    Progress bars go to the log in full and to the console as coarse lines. A :class:`DdpmsegError`
    prints its one line to the log and to the console and exits with status 1; any other exception
    keeps its traceback in the log, followed by a line saying where the log is.
    """
    import torch

    torch.set_num_threads(max(1, int(snakemake.threads)))
    console = sys.stderr
    log_path = snakemake.log[0] if len(snakemake.log) else None
    log = open(log_path, "w", buffering=1) if log_path else None  # noqa: SIM115 - closed below
    try:
        with (
            contextlib.redirect_stdout(log or sys.stdout),
            contextlib.redirect_stderr(log or sys.stderr),
            console_progress(job_label(snakemake), console),
        ):
            try:
                main(snakemake)
            except DdpmsegError as error:
                print(f"ddpmseg error: {error}", file=sys.stderr)
                print(f"ddpmseg error: {error}", file=console)
                sys.exit(1)
            except Exception:
                traceback.print_exc()
                failed = f"ddpmseg: rule {snakemake.rule} failed, see {log_path}"
                print(failed, file=sys.stderr)
                print(failed, file=console)
                raise
    finally:
        if log:
            log.close()


def stage_arguments(snakemake: Any, *, order_only: Collection[str] = ()) -> dict[str, Any]:
    """The keyword arguments of a rule's stage function: its named inputs (except those in
    ``order_only``, which only make the job wait for another), outputs, params and named log files.

    Raises ``TypeError`` for a rule with an unnamed input or output, or a name used twice.
    """
    arguments: dict[str, Any] = {}
    for kind in ("input", "output", "params", "log"):
        files = getattr(snakemake, kind)
        named = list(files.items())
        if kind in ("input", "output") and sum(_file_count(value) for _, value in named) != len(files):
            raise TypeError(f"rule {snakemake.rule}: every {kind} file needs a name (the stage takes it by name)")
        for name, value in named:
            if kind == "input" and name in order_only:
                continue
            if name in arguments:
                raise TypeError(f"rule {snakemake.rule}: '{name}' names two of its inputs, outputs, params or logs")
            arguments[name] = value if kind == "params" else _plain_files(value)
    unknown = set(order_only) - {name for name, _ in snakemake.input.items()}
    if unknown:
        raise TypeError(f"rule {snakemake.rule}: no input named {', '.join(sorted(unknown))}")
    return arguments


def _file_count(value: Any) -> int:
    return 1 if isinstance(value, str) else len(value)


def _plain_files(value: Any) -> str | list[str]:
    """A file as ``str``, a list of files as a list of ``str`` (Snakemake's own types, unwrapped)."""
    return str(value) if isinstance(value, str) else [str(item) for item in value]


def run_stage(snakemake: Any, stage: Callable[..., None], *, order_only: Collection[str] = ()) -> None:
    """Run ``stage(**named inputs, **outputs, **params, **named logs)`` as the job (see
    :func:`stage_arguments`; ``order_only``: inputs the stage does not read), with :func:`run_script`'s
    log, console progress and error lines."""
    run_script(snakemake, lambda job: stage(**stage_arguments(job, order_only=order_only)))


def job_error_lines(log_root: str | os.PathLike, since: float) -> list[str]:
    """The error line (see :data:`ERROR_PREFIXES`) last written to each job log under ``log_root``
    that changed at or after ``since`` (a ``time.time()``): the errors of this run, oldest log first."""
    found = []
    for path in Path(log_root).rglob("*.log") if Path(log_root).is_dir() else []:
        try:
            modified = path.stat().st_mtime
            if modified < since:
                continue
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        lines = [line.strip() for line in tail.splitlines() if line.startswith(ERROR_PREFIXES)]
        if lines:
            found.append((modified, lines[-1]))
    return list(dict.fromkeys(line for _, line in sorted(found)))


def repeat_at_exit(lines: Iterable[str]) -> None:
    """Print ``lines`` to stderr when the process exits: after Snakemake's closing messages, so that
    they are the last a user sees of a failed run."""
    lines = list(lines)

    def repeat() -> None:
        sys.stdout.flush()
        for line in lines:
            print(line, file=sys.stderr)
        sys.stderr.flush()

    if lines:
        atexit.register(repeat)
