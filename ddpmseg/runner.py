"""Glue for Snakemake ``script:`` entry points: log file, thread count, console progress and one-line
errors, which the workflow's ``onerror`` handler repeats as the last lines of a failed run."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import DdpmsegError
from .progress import console_progress

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
