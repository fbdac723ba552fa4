"""Glue for Snakemake ``script:`` entry points: log file, thread count and one-line errors."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .errors import DdpmsegError


def run_script(snakemake: Any, main: Callable[[Any], None]) -> None:
    """Run ``main(snakemake)`` with stdout/stderr in the rule's log.

    A :class:`DdpmsegError` prints its one line to the log and to the console and exits with status 1;
    any other exception keeps its traceback in the log.
    """
    import torch

    torch.set_num_threads(max(1, int(snakemake.threads)))
    console = sys.stderr
    log_path = snakemake.log[0] if len(snakemake.log) else None
    log = open(log_path, "w", buffering=1) if log_path else None  # noqa: SIM115 - closed below
    try:
        with contextlib.redirect_stdout(log or sys.stdout), contextlib.redirect_stderr(log or sys.stderr):
            try:
                main(snakemake)
            except DdpmsegError as error:
                print(f"ddpmseg error: {error}", file=sys.stderr)
                print(f"ddpmseg error: {error}", file=console)
                sys.exit(1)
            except Exception:
                traceback.print_exc()
                print(f"ddpmseg: rule {snakemake.rule} failed, see {log_path}", file=console)
                raise
    finally:
        if log:
            log.close()
