"""Shared code of the benchmark scripts: synthetic paper-shaped stores, subprocess workers with their
peak RSS, machine description and the README's Performance blocks.

Every measured configuration runs in a fresh subprocess (``run_worker``): the script re-executes
itself with ``--worker <json>``, the worker prints one ``BENCH-RESULT <json>`` line at its end, with
the process's peak resident set size read from ``VmHWM`` in ``/proc/self/status`` (the kernel's
high-water mark of this process alone; ``getrusage``'s ``ru_maxrss`` would carry the forking parent's
value over ``exec``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's ddpmseg, whatever is installed

import numpy as np
import torch
import torch.nn.functional as F

from ddpmseg.ddpm import PAPER_MODEL_FLAGS
from ddpmseg.files import atomic_directory, save_json
from ddpmseg.store import FeatureStore, StoreWriter

GB = 1e9
README = REPO / "README.md"
DEFAULT_WORKDIR = Path("/tmp/ddpmseg-bench")
RESULT_PREFIX = "BENCH-RESULT "

# The paper's setting (docs/method.md §2-3): per step, decoder blocks (block, channels, resolution).
PAPER_STEPS = (50, 150, 250)
PAPER_BLOCKS = ((5, 1024, 32), (6, 512, 32), (7, 512, 32), (8, 512, 64), (12, 256, 128))
IMAGE_SIZE = 256
NUMBER_CLASS = 21  # horse_21
IGNORE_LABEL = 255
FEATURE_DIM = len(PAPER_STEPS) * sum(channels for _, channels, _ in PAPER_BLOCKS)  # 8448
VALUES_PER_VIEW = len(PAPER_STEPS) * sum(c * r * r for _, c, r in PAPER_BLOCKS)  # 25.2 M
RAW_FP16_BYTES_PER_VIEW = 2 * VALUES_PER_VIEW
REFERENCE_BYTES_PER_VIEW = IMAGE_SIZE * IMAGE_SIZE * FEATURE_DIM * 4  # upsampled float32, 2.2 GB
DATASET_VERSION = 1  # bump when the synthetic data recipe changes


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


def cpu_busy_percent(seconds: float = 1.0) -> float:
    """Share of the CPU that other work used over ``seconds`` (from /proc/stat); NaN where unknown."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user .. steal (guest time is already in user)

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return math.nan
    return 100.0 * (1 - (idle1 - idle0) / max(total1 - total0, 1))


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
    p.add_argument("--no-readme", action="store_true", help="print the table only")
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


# --------------------------------------------------------------------------------------------------
# subprocess workers and peak RSS


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``) as the kernel counts it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_worker(script: str | Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --worker <payload>`` in a fresh interpreter; its result dict (with ``peak_rss_bytes``)."""
    command = [sys.executable, str(script), "--worker", json.dumps(payload)]
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True, cwd=REPO)
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not results:
        sys.stdout.write(done.stdout)
        raise RuntimeError(f"worker {payload} failed with exit status {done.returncode}")
    return json.loads(results[-1][len(RESULT_PREFIX) :])


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
    for module in ("ddpmseg.classifier", "ddpmseg.sampler"):
        importlib.import_module(module)
    return {}


# --------------------------------------------------------------------------------------------------
# the synthetic dataset: paper-shaped stores of random activations


def blob_labels(generator: torch.Generator, grid: int = 8, margin: float = 0.005) -> np.ndarray:
    """A (256, 256) mask of blob-shaped regions of the 21 classes, with ignore-label outlines.

    Random class scores on a coarse grid, upsampled bilinearly; each pixel takes the best class, and
    pixels where the best two are within ``margin`` become the ignore label (about 7 % of the pixels).
    """
    scores = torch.rand((1, NUMBER_CLASS, grid, grid), generator=generator)
    scores = F.interpolate(scores, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)[0]
    best = scores.topk(2, dim=0).values
    labels = scores.argmax(dim=0).to(torch.int32)
    labels[best[0] - best[1] < margin] = IGNORE_LABEL
    return labels.numpy()


def random_view(seed: int, view: int) -> tuple[dict[tuple[int, int], torch.Tensor], np.ndarray, np.ndarray]:
    """Activations {(step, block): (1, C, h, w)} N(0, 1) float32, image (1, S, S, 3) uint8, labels (1, S, S)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + view)
    activations = {
        (step, block): torch.randn((1, channels, size, size), generator=generator)
        for step in PAPER_STEPS
        for block, channels, size in PAPER_BLOCKS
    }
    image = torch.randint(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3), generator=generator, dtype=torch.uint8).numpy()
    return activations, image, blob_labels(generator)[None]


class SyntheticDataset:
    """Shards ``shard000.zarr, ...`` of ``shard_size`` views each under ``workdir/paper-random-...``.

    ``dataset.json`` is the marker: the recipe (a mismatch stops rather than overwrites) and the
    shards known complete. Shards are written one view at a time (one view's activations in memory)
    and appear only when complete (:func:`ddpmseg.files.atomic_directory`), so an interrupted run
    resumes where it stopped. Nothing is ever deleted.
    """

    def __init__(self, workdir: Path, shard_size: int, seed: int = 0):
        self.shard_size, self.seed = shard_size, seed
        self.root = Path(workdir) / f"paper-random-v{DATASET_VERSION}-seed{seed}-shard{shard_size}"
        self.marker = self.root / "dataset.json"
        self.spec = {
            "version": DATASET_VERSION,
            "seed": seed,
            "shard_size": shard_size,
            "steps": list(PAPER_STEPS),
            "blocks": [list(b) for b in PAPER_BLOCKS],
            "image_size": IMAGE_SIZE,
            "number_class": NUMBER_CLASS,
            "ignore_label": IGNORE_LABEL,
        }

    def shard_path(self, shard: int) -> Path:
        return self.root / f"shard{shard:03d}.zarr"

    def _complete(self) -> set[int]:
        if not self.marker.exists():
            return set()
        marker = json.loads(self.marker.read_text())
        if marker.get("spec") != self.spec:
            raise SystemExit(f"{self.marker}: written by another recipe; use another --workdir")
        return {k for k in marker["complete_shards"] if self.shard_path(k).exists()}

    def ensure(self, views: int) -> tuple[list[Path], float]:
        """Paths of the shards holding the first ``views`` views (written if missing); seconds spent writing."""
        shards = math.ceil(views / self.shard_size)
        complete = self._complete()
        missing = [k for k in range(shards) if k not in complete]
        spent = 0.0
        if missing:
            self.root.mkdir(parents=True, exist_ok=True)
            check_disk(self.root, len(missing) * self.shard_size * RAW_FP16_BYTES_PER_VIEW)
            started = time.perf_counter()
            for k in missing:
                print(f"writing {self.shard_path(k)} ({self.shard_size} views of random activations)", flush=True)
                self._write_shard(k)
                complete.add(k)
                save_json(self.marker, {"spec": self.spec, "complete_shards": sorted(complete)})
            spent = time.perf_counter() - started
        return [self.shard_path(k) for k in range(shards)], spent

    def _write_shard(self, shard: int) -> None:
        first = shard * self.shard_size
        names = [f"view{first + i:05d}" for i in range(self.shard_size)]
        attrs = {
            "checkpoint_sha256": "random-activations-benchmark",
            "model_flags": PAPER_MODEL_FLAGS,
            "steps": list(PAPER_STEPS),
            "blocks": [b for b, _, _ in PAPER_BLOCKS],
            "noise_seed": self.seed,
            "number_class": NUMBER_CLASS,
            "ignore_label": IGNORE_LABEL,
        }
        with atomic_directory(self.shard_path(shard)) as tmp:
            writer = StoreWriter(tmp, names, IMAGE_SIZE, attrs)
            for i in range(self.shard_size):
                activations, image, labels = random_view(self.seed, first + i)
                writer.write(i, activations, image, labels)
            writer.close()

    def store_and_indices(self, views: int) -> tuple[list[str], list[int] | None]:
        """Store paths and the view indices (None: all of them) for the first ``views`` views."""
        paths, _ = self.ensure(views)
        indices = None if views == len(paths) * self.shard_size else list(range(views))
        return [str(p) for p in paths], indices


def check_disk(directory: Path, needed: int, margin: int = 1 << 30) -> None:
    free = shutil.disk_usage(directory).free
    print(f"disk: {free / GB:.1f} GB free under {directory}, about {needed / GB:.1f} GB to write", flush=True)
    if free < needed + margin:
        raise SystemExit(f"not enough disk space under {directory}: choose another --workdir")


def directory_bytes(path: Path) -> tuple[int, int]:
    """(sum of file sizes, bytes allocated on disk) of every file under ``path``."""
    size = allocated = 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            size += stat.st_size
            allocated += stat.st_blocks * 512
    return size, allocated


# --------------------------------------------------------------------------------------------------
# timing of training loops


class StepClock:
    """Wraps a batch iterator and timestamps every request for the next batch.

    Request k + 1 happens when step k is done, so steps 1 .. n-1 take ``requests[n] - requests[1]``
    seconds; the time from the last request to the iterator's end is what the sampler does after the
    last step (e.g. waiting for a prefetch to finish).
    """

    def __init__(self) -> None:
        self.requests: list[float] = []
        self.exhausted: float | None = None

    def wrap(self, batches: Iterator[Any]) -> Iterator[Any]:
        while True:
            self.requests.append(time.perf_counter())
            try:
                item = next(batches)
            except StopIteration:
                self.exhausted = time.perf_counter()
                return
            yield item

    def steps_per_s(self, first: int = 1) -> float:
        """Steps per second of steps ``first`` .. n-1 (default: all but the first)."""
        steps = len(self.requests) - 1
        if steps - first < 1:
            return math.nan
        return (steps - first) / (self.requests[-1] - self.requests[first])

    def epoch_end_s(self) -> float:
        return math.nan if self.exhausted is None else self.exhausted - self.requests[-1]


def log_steps_per_s(log: dict[str, Any]) -> float:
    """Steps per second after the first step, from a training log."""
    return (log["batches"] - 1) / (log["wall_time_s"] - log["time_to_first_batch_s"])


# --------------------------------------------------------------------------------------------------
# output


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(
    name: str, title: str, body: str, threads: int, write_readme: bool, readme: Path = README, timed: bool = True
) -> None:
    """Print the block and, unless told not to, put it between the README's markers for ``name``
    (with a warning when ``timed`` figures were taken on a busy CPU)."""
    block = "\n".join(
        [
            f"### {title}",
            "",
            (
                f"Measured {datetime.date.today().isoformat()} on {machine_line(threads)}; other work used "
                f"{fmt(START_BUSY, 0)} % of the CPU in the second before the run."
            ),
            f"Command: `{command_line()}`",
            "",
            body.strip(),
        ]
    )
    if timed and START_BUSY > BUSY_PERCENT:
        block += "\n\n**Other work was using the CPU when this ran: the timings are skewed; rerun on a quiet machine.**"
    print()
    print(block)
    if write_readme:
        write_readme_block(readme, name, block)
        print(f"\n(written to {readme} between <!-- benchmark:{name} --> markers)")


def write_readme_block(readme: Path, name: str, block: str) -> None:
    """Replace the text between ``<!-- benchmark:name -->`` and ``<!-- /benchmark:name -->``; create the
    markers (and a ``## Performance`` section at the end of the file) when missing."""
    start, end = f"<!-- benchmark:{name} -->", f"<!-- /benchmark:{name} -->"
    text = readme.read_text()
    content = f"{start}\n{block.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + content + after
    else:
        section = re.search(r"^## Performance[ \t]*$", text, flags=re.MULTILINE)
        if section is None:
            text = text.rstrip("\n") + "\n\n## Performance\n\nMeasured by the scripts in `benchmarks/` "
            text += "(see `benchmarks/README.md`); each block is rewritten by its script.\n"
            section = re.search(r"^## Performance[ \t]*$", text, flags=re.MULTILINE)
        following = text.find("\n## ", section.end())  # the section ends at the next level-2 heading
        insert_at = len(text.rstrip("\n")) if following < 0 else following
        text = text[:insert_at].rstrip("\n") + "\n\n" + content + "\n" + text[insert_at:]
        if following < 0:
            text = text.rstrip("\n") + "\n"
    readme.write_text(text)


# --------------------------------------------------------------------------------------------------
# ddpmseg's training, as one worker (used by the training-memory and the reference-baseline benchmarks)


def ddpmseg_training_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """``PixelSampler`` over the stores, then ``train_member`` for ``steps`` steps (one capped epoch).

    ``time_to_first_step_s`` counts from the start of the sampler's construction (which loads resident
    activations) to the end of the first optimizer step.
    """
    from ddpmseg.config import default_variant_settings
    from ddpmseg.sampler import PixelSampler
    from ddpmseg.training import TrainSettings, train_member

    started = time.perf_counter()
    store = FeatureStore(payload["paths"])
    sampler = PixelSampler(store, IGNORE_LABEL, payload["indices"], memory_budget_mb=payload["budget_mb"])
    built = time.perf_counter() - started
    clock = StepClock()
    epoch = sampler.ensemble_epoch  # what train_member draws its batches from
    sampler.ensemble_epoch = lambda *args, **kwargs: clock.wrap(epoch(*args, **kwargs))  # type: ignore[method-assign]
    settings = TrainSettings.of({**default_variant_settings(), "max_epochs": 1, "epochs_before_stopping": 10**6})
    _, log = train_member(sampler, NUMBER_CLASS, settings, 0, 0, batches_per_epoch=payload["steps"], show_progress=False)
    return {
        "views": sampler.views,
        "pixels": len(sampler),
        "streamed": sampler.streaming,
        "buffer_views": sampler.buffer_views,
        "build_s": built,
        "steps": log["batches"],
        "time_to_first_step_s": built + log["time_to_first_batch_s"],
        "steps_per_s": log_steps_per_s(log),
        "steady_steps_per_s": clock.steps_per_s(),
        "second_half_steps_per_s": clock.steps_per_s(max(1, log["batches"] // 2)),
        "epoch_end_s": clock.epoch_end_s(),
    }
