"""What every benchmark script shares: this checkout's ddpmseg on the path, the machine, the command line.

The rest lives beside it: ``synthetic`` (paper-shaped stores of random activations), ``workers``
(subprocess workers with their peak RSS, the timed ddpmseg training worker) and ``performance_doc``
(the tables and the blocks written into docs/performance.md).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's ddpmseg, whatever is installed

import torch  # noqa: E402 - after the path

DEFAULT_WORKDIR = Path("/tmp/ddpmseg-bench")

# --------------------------------------------------------------------------------------------------
# machine, threads


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(threads: int | None = None) -> int:
    """``torch.set_num_threads`` to ``threads`` (default: every core); returns it."""
    threads = threads or cores()
    torch.set_num_threads(threads)
    return threads


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds elapsed, CPU seconds busy) of the whole machine, all cores summed (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user .. steal (guest time is already in user)
    tick = os.sysconf("SC_CLK_TCK")
    return total / tick, (total - idle) / tick


def cpu_busy_percent(seconds: float = 1.0) -> float:
    """Share of the CPU that other work used over ``seconds`` (from /proc/stat); NaN where unknown."""
    try:
        total0, busy0 = cpu_seconds()
        time.sleep(seconds)
        total1, busy1 = cpu_seconds()
    except (OSError, ValueError, IndexError):
        return math.nan
    return 100.0 * (busy1 - busy0) / max(total1 - total0, 1e-9)


def machine_line(threads: int) -> str:
    return (
        f"{cpu_model()}, {cores()} cores, torch {torch.__version__}, "
        f"`torch.set_num_threads({threads})` in every measured process"
    )


# --------------------------------------------------------------------------------------------------
# command line


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes and step counts, same code paths")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the synthetic stores live")
    p.add_argument("--shard-size", type=int, default=10, help="views per store of the synthetic dataset")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    p.add_argument("--print-only", action="store_true", help="print the block, do not write docs/performance.md")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


BUSY_PERCENT = 10.0
START_BUSY = math.nan  # set by parse_args(), before the script loads the CPU itself


def parse_args(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; the parent process also samples how busy the CPU is before it starts."""
    global START_BUSY
    args = p.parse_args()
    if not args.worker:
        START_BUSY = cpu_busy_percent()
    return args


def command_line() -> str:
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *map(shlex.quote, sys.argv[1:])])
