"""Subprocess workers with their peak RSS, and the timed ddpmseg training worker.

Every measured configuration runs in a fresh subprocess (``run_worker``): the script re-executes
itself with ``--worker <json>``, the worker prints one ``BENCH-RESULT <json>`` line at its end, with
the process's peak resident set size read from ``VmHWM`` in ``/proc/self/status`` (the kernel's
high-water mark of this process alone; ``getrusage``'s ``ru_maxrss`` would carry the forking parent's
value over ``exec``).
"""

from __future__ import annotations

import importlib
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import REPO, cpu_seconds, set_threads
from synthetic import IGNORE_LABEL, NUMBER_CLASS

from ddpmseg.features.store import FeatureStore

RESULT_PREFIX = "BENCH-RESULT "


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``) as the kernel counts it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_worker(script: str | Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --worker <payload>`` in a fresh interpreter; its result dict, with ``peak_rss_bytes``
    and ``other_cpu_percent``: the share of the machine's CPU time that other processes used meanwhile."""
    command = [sys.executable, str(script), "--worker", json.dumps(payload)]
    elapsed0, busy0 = cpu_seconds()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True, cwd=REPO)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed1, busy1 = cpu_seconds()
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not results:
        sys.stdout.write(done.stdout)
        raise RuntimeError(f"worker {payload} failed with exit status {done.returncode}")
    result = json.loads(results[-1][len(RESULT_PREFIX) :])
    worker_cpu = sum(getattr(children1, f) - getattr(children0, f) for f in ("ru_utime", "ru_stime"))
    other = max(0.0, busy1 - busy0 - worker_cpu)
    result["other_cpu_percent"] = 100.0 * other / max(elapsed1 - elapsed0, 1e-9)
    return result


def serve_worker(work: Callable[[dict[str, Any]], dict[str, Any]], payload_json: str) -> None:
    """Worker side: set the threads, do the work, print the result with the peak RSS at the very end."""
    payload = json.loads(payload_json)
    set_threads(payload.get("threads"))
    result = idle_rss_worker(payload) if payload.get("idle") else work(payload)
    result["peak_rss_bytes"] = peak_rss_bytes()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def idle_rss_worker(_payload: dict[str, Any]) -> dict[str, Any]:
    """Nothing but the imports (torch, zarr, ddpmseg): the floor under every measured process
    (a payload with ``"idle": true`` runs this instead of the script's worker)."""
    for module in ("ddpmseg.classifier.mlp", "ddpmseg.features.sampler"):
        importlib.import_module(module)
    return {}


# --------------------------------------------------------------------------------------------------
# timing of training loops


class StepClock:
    """Wraps a batch iterator and timestamps every request for the next batch and its arrival.

    Request k + 1 happens when step k is done, so steps 1 .. n-1 take ``requests[n] - requests[1]``
    seconds; the time from the last request to the iterator's end is what the sampler does after the
    last step (e.g. waiting for a prefetch to finish). ``cpu`` holds the process's CPU time (all threads)
    at each request. With ``seconds``, the iterator ends early once that much time has passed since the
    first request (``cut`` is then True). Closing the wrapper closes the iterator.
    """

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self.requests: list[float] = []
        self.arrivals: list[float] = []
        self.cpu: list[float] = []
        self.exhausted: float | None = None
        self.cut = False

    def wrap(self, batches: Iterator[Any]) -> Iterator[Any]:
        close = getattr(batches, "close", lambda: None)
        try:
            while True:
                self.requests.append(time.perf_counter())
                self.cpu.append(time.process_time())
                if self.seconds is not None and self.requests[-1] - self.requests[0] > self.seconds:
                    self.cut = True
                    close()
                try:
                    item = next(batches)
                except StopIteration:
                    self.exhausted = time.perf_counter()
                    return
                self.arrivals.append(time.perf_counter())
                yield item
        finally:
            close()

    def waits(self, first: int = 1) -> list[float]:
        """Seconds each request from step ``first`` on waited for its batch."""
        return [arrival - request for request, arrival in zip(self.requests[first:], self.arrivals[first:])]

    def steps_per_s(self, first: int = 1) -> float:
        """Steps per second of steps ``first`` .. n-1 (default: all but the first)."""
        steps = len(self.requests) - 1
        if steps - first < 1:
            return math.nan
        return (steps - first) / (self.requests[-1] - self.requests[first])

    def cpu_ms_per_step(self, first: int = 1) -> float:
        """Process CPU time per step (ms) of steps ``first`` .. n-1."""
        steps = len(self.cpu) - 1
        return math.nan if steps - first < 1 else 1000 * (self.cpu[-1] - self.cpu[first]) / (steps - first)

    def epoch_end_s(self) -> float:
        return math.nan if self.exhausted is None else self.exhausted - self.requests[-1]


def log_steps_per_s(log: dict[str, Any]) -> float:
    """Steps per second after the first step, from a training log."""
    return (log["batches"] - 1) / (log["wall_time_s"] - log["time_to_first_batch_s"])


# --------------------------------------------------------------------------------------------------
# ddpmseg's training, as one worker (used by the training-memory and the reference-baseline benchmarks)


def ddpmseg_training_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """``PixelSampler`` over the stores, then ``train_member`` for one epoch: of ``steps`` steps, or
    the full epoch when ``steps`` is None; cut after ``seconds`` (when given) of training.

    ``time_to_first_step_s`` counts from the start of the sampler's construction (which loads resident
    activations) to the end of the first optimizer step.
    """
    from ddpmseg.config.load import default_variant_settings
    from ddpmseg.features.sampler import PixelSampler
    from ddpmseg.classifier.training import train_member
    from ddpmseg.classifier.settings import TrainSettings

    started = time.perf_counter()
    store = FeatureStore(payload["paths"])
    sampler = PixelSampler(store, IGNORE_LABEL, payload["indices"], memory_budget_mb=payload["budget_mb"])
    built = time.perf_counter() - started
    clock = StepClock(payload.get("seconds"))
    epoch = sampler.ensemble_epoch  # what train_member draws its batches from
    sampler.ensemble_epoch = lambda *args, **kwargs: clock.wrap(epoch(*args, **kwargs))  # type: ignore[method-assign]
    settings = TrainSettings.of({**default_variant_settings(), "max_epochs": 1, "epochs_before_stopping": 10**6})
    _, log = train_member(sampler, NUMBER_CLASS, settings, 0, 0, batches_per_epoch=payload["steps"], show_progress=False)
    epoch_steps = len(sampler) // settings.batch_size
    return {
        "views": sampler.views,
        "pixels": len(sampler),
        "streamed": sampler.streaming,
        "buffer_views": sampler.buffer_views,
        "build_s": built,
        "steps": log["batches"],
        "full_epoch_steps": epoch_steps,
        "epoch_steps": epoch_steps if payload["steps"] is None else min(payload["steps"], epoch_steps),
        "cut": clock.cut,
        "time_to_first_step_s": built + log["time_to_first_batch_s"],
        "steps_per_s": log_steps_per_s(log),
        "steady_steps_per_s": clock.steps_per_s(),
        "cpu_ms_per_step": clock.cpu_ms_per_step(),
        "second_half_steps_per_s": clock.steps_per_s(max(1, log["batches"] // 2)),
        "epoch_end_s": clock.epoch_end_s(),
    }
