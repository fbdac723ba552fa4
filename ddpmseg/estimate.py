"""What a configuration will cost: views to extract, disk for the stores, forward passes, training batches.

Run ``python -m ddpmseg.estimate config/paper.yaml`` for a table. Sizes and forward-pass costs come
from the model: the decoder activations' shapes and the floating-point operations of the extraction's
forward pass (which stops after the last chosen block) are read from a pass on the meta device (no
memory, no weights), so they hold for any flags. Times scale the FLOPs by a CPU throughput anchored at
the paper's figure (see :data:`CPU_GFLOPS`) plus a fixed cost per extraction job.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config.imagesets import PER_RUN_NOISE, feature_imagesets, imageset_count, noise_seeds, shard_count
from .config.load import load_config
from .config.checks import variant_settings
from .diffusion.model import build_model_and_diffusion
from .diffusion.flags import model_flags

BYTES_PER_VALUE = 2  # float16
# Throughput of the extraction's forward pass on 2 CPU cores, anchored at the paper's figure: its
# 552.8 M-parameter model at 256 px takes about 8 s per forward pass (docs/method.md §2); the pass up to
# block 12, where the paper's extraction stops, is 1.21 TFLOP (torch's FlopCounterMode), so about
# 150 GFLOP/s. (benchmarks/bench_extraction.py measured 114 GFLOP/s for a 26 M-parameter UNet at 128 px.)
CPU_GFLOPS = 150.0
# Fixed cost of one extraction job: starting Python, importing torch and guided-diffusion, building the
# model, loading the checkpoint and reading the images. The demo's 10 extraction jobs take 41 s of job
# time on 2 cores, of which about 5 s are forward passes.
JOB_OVERHEAD_S = 3.0


class _StopForward(Exception):
    """Raised after the last chosen block, as the extraction stops there."""


def forward_profile(flags: dict[str, Any], blocks: list[int]) -> tuple[dict[int, tuple[int, ...]], int]:
    """Output shapes of the chosen decoder blocks and the FLOPs of one image's forward pass up to the
    last of them (what the extraction runs), from a pass on the meta device."""
    flags = model_flags(flags)
    last = max(blocks)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(block: int):
        def hook(_module, _inputs, output):
            shapes[block] = tuple(output.shape)
            if block == last:
                raise _StopForward

        return hook

    counter = FlopCounterMode(display=False)
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
        hooks = [model.output_blocks[b].register_forward_hook(record(b)) for b in sorted(set(blocks))]
        size = flags["image_size"]
        with counter:
            try:
                model(torch.empty(1, 3, size, size), torch.zeros(1, dtype=torch.long))
            except _StopForward:
                pass
        for hook in hooks:
            hook.remove()
    return shapes, counter.get_total_flops()


def activation_values(flags: dict[str, Any], blocks: list[int]) -> int:
    """Values stored per image and diffusion step: sum of C*h*w over the chosen decoder blocks."""
    shapes, _ = forward_profile(flags, blocks)
    return sum(math.prod(shapes[b][1:]) for b in blocks)


def forward_seconds(flags: dict[str, Any], blocks: list[int], gflops: float = CPU_GFLOPS) -> float:
    """Seconds of one image's extraction forward pass on 2 CPU cores, from its FLOPs."""
    _, flops = forward_profile(flags, blocks)
    return flops / (gflops * 1e9)


def extraction_runs(config: dict[str, Any]) -> int:
    """How many times every image set is extracted: once per run seed when ``features.noise_seed`` is
    ``per_run`` (the default: each seed's run draws its own noise), once for one shared integer seed."""
    return len(noise_seeds(config))


def dataset_imagesets(config: dict[str, Any], name: str, source: str = "ddpm") -> dict[str, int]:
    """Image sets whose ``source`` features (``ddpm``, or ``rgb`` for the RGB control) a dataset's
    variants use (splits, augmented copies, TTA views) and their image counts."""
    return {s: imageset_count(config, name, s) for s in feature_imagesets(config, name, source)}


def training_batches(config: dict[str, Any], name: str, size: int) -> int:
    """Member training batches of a dataset over every variant and seed (an upper bound: every pixel
    labelled, the stopping rule firing right after ``epochs_before_stopping`` epochs)."""
    dataset = config["datasets"][name]
    member_count = len(config["seeds"]) * config["ensemble_size"]
    batches = 0
    for variant in config["variants"]:
        settings = variant_settings(config, variant)
        per_epoch = dataset["training_number"] * size * size // settings["batch_size"]
        epochs = min(settings["max_epochs"], settings["epochs_before_stopping"] + 1)
        batches += member_count * per_epoch * epochs
    return batches


def plan(
    config: dict[str, Any], *, gflops: float = CPU_GFLOPS, job_overhead_s: float = JOB_OVERHEAD_S
) -> list[dict[str, Any]]:
    """Per dataset: views to extract (train, augmented copies, test, TTA views), store size, forward
    passes, extraction jobs and seconds, and training batches. Extraction counts (passes, jobs, stores)
    include :func:`extraction_runs`. Views and jobs are the DDPM's; the RGB control's stores (no forward
    pass, one set for every seed) are counted apart (``rgb_views``, ``rgb_jobs``) and in ``store_bytes``."""
    rows = []
    runs = extraction_runs(config)
    steps_count = len(config["features"]["steps"])
    blocks = config["features"]["blocks"]
    for name, dataset in config["datasets"].items():
        flags = config["ddpms"][dataset["ddpm"]]["flags"]
        values = activation_values(flags, blocks)
        views = dataset_imagesets(config, name)
        total_views = sum(views.values())
        jobs = runs * sum(shard_count(count, config["features"]["shard_size"]) for count in views.values())
        forward_passes = runs * total_views * steps_count
        rgb_views = dataset_imagesets(config, name, "rgb")
        size = model_flags(flags)["image_size"]
        rgb_bytes = sum(rgb_views.values()) * size * size * 3 * BYTES_PER_VALUE
        store_bytes = runs * total_views * steps_count * values * BYTES_PER_VALUE + rgb_bytes
        rows.append(
            {
                "dataset": name,
                "views": total_views,
                "train_views": sum(v for s, v in views.items() if s == "train" or s.startswith("aug-")),
                "test_views": sum(v for s, v in views.items() if s == "test" or s.startswith("tta-")),
                "rgb_views": sum(rgb_views.values()),
                "rgb_jobs": sum(shard_count(count, config["features"]["shard_size"]) for count in rgb_views.values()),
                "extraction_runs": runs,
                "store_bytes": store_bytes,
                "store_gb": store_bytes / 1e9,
                "forward_passes": forward_passes,
                "extraction_jobs": jobs,
                "extraction_s": forward_passes * forward_seconds(flags, blocks, gflops) + jobs * job_overhead_s,
                "training_batches": training_batches(config, name, size),
            }
        )
    return rows


def format_size(size_bytes: float) -> str:
    """Bytes in GB from 1 GB on, else in MB (or kB below 1 MB), so small stores never read as 0."""
    if size_bytes >= 1e9:
        return f"{size_bytes / 1e9:.0f} GB" if size_bytes >= 1e10 else f"{size_bytes / 1e9:.1f} GB"
    if size_bytes >= 1e6:
        return f"{size_bytes / 1e6:.0f} MB"
    return f"{size_bytes / 1e3:.0f} kB"


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def noise_note(config: dict[str, Any]) -> str:
    """How the noise seed sets the number of extractions, for the output."""
    seeds = len(config["seeds"])
    if config["features"].get("noise_seed", PER_RUN_NOISE) == PER_RUN_NOISE:
        return (
            f"features.noise_seed per_run: each of the {seeds} seeds draws its own noise, so every image set "
            f"is extracted {seeds} times (counted above)"
        )
    return (
        f"features.noise_seed {config['features']['noise_seed']}: one noise shared by the {seeds} seeds, "
        "every image set extracted once"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--gflops", type=float, default=CPU_GFLOPS,
                        help="forward-pass throughput in GFLOP/s (default: 2 CPU cores, anchored at the paper's 8 s per pass at 256 px)")
    parser.add_argument("--job-overhead-s", type=float, default=JOB_OVERHEAD_S,
                        help="fixed seconds per extraction job (start, imports, model load)")
    parser.add_argument("--batch-ms", "--step-ms", dest="batch_ms", type=float, default=10.0,
                        help="milliseconds per training batch of one member (--step-ms: its former name)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    rows = plan(config, gflops=args.gflops, job_overhead_s=args.job_overhead_s)
    total = {"dataset": "total", **{k: sum(r[k] for r in rows) for k in rows[0] if k != "dataset"}}
    print("| dataset | views (train+aug / test+TTA) | stores | forward passes | extraction | training batches (M) | training |")
    print("|---|---|---|---|---|---|---|")
    for r in rows + [total]:
        print(
            f"| {r['dataset']} | {r['views']} ({r['train_views']} / {r['test_views']}) | {format_size(r['store_bytes'])} | "
            f"{r['forward_passes']} | {format_duration(r['extraction_s'])} | "
            f"{r['training_batches'] / 1e6:.1f} | {format_duration(r['training_batches'] * args.batch_ms / 1e3)} |"
        )
    print()
    print(f"Extraction: {noise_note(config)}; {total['extraction_jobs']} jobs.")
    if total["rgb_views"]:
        print(
            f"RGB control (features: rgb): {total['rgb_views']} views in {total['rgb_jobs']} small stores "
            "(counted in stores), no forward pass."
        )
    print(
        f"Times: forward passes at {args.gflops:g} GFLOP/s (2 CPU cores) plus {args.job_overhead_s:g} s per "
        f"extraction job; training at {args.batch_ms:g} ms per member batch (an upper bound)."
    )


if __name__ == "__main__":
    main()
