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


from .config.imagesets import (
    PER_RUN_NOISE,
    feature_folders,
    feature_imagesets,
    imageset_count,
    is_test_imageset,
    noise_seeds,
    shard_count,
    stored_imagesets,
)
from .config.load import load_config
from .config.paths import RGB_FOLDER
from .config.variants import tta_views, variant_settings
from .diffusion.flags import model_flags
from .diffusion.model import forward_profile

BYTES_PER_VALUE = 2  # float16
# Throughput of the extraction's forward pass on 2 CPU cores, anchored at the paper's figure: its
# 552.8 M-parameter model at 256 px takes about 8 s per forward pass (docs/method.md §2); the pass up to
# block 12, where the paper's extraction stops, is 1.21 TFLOP (torch's FlopCounterMode), so about
# 150 GFLOP/s. (benchmarks/bench_extraction.py measured 114 GFLOP/s for a 26 M-parameter UNet at 128 px.)
CPU_GFLOPS = 150.0
# Fixed cost of one job that runs the DDPM (extraction, or prediction of a test shard): starting Python,
# importing torch and guided-diffusion, building the model, loading the checkpoint and reading the images. The demo's 10 extraction jobs take 41 s of job
# time on 2 cores, of which about 5 s are forward passes.
JOB_OVERHEAD_S = 3.0


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
    """Per dataset: views through the DDPM (train, augmented copies, test, TTA views), the stores the
    workflow keeps (training views always, test and TTA views with ``features.store_test``), forward
    passes, the jobs that run the DDPM (extraction into stores, and prediction shards that compute the
    test split's features in memory) and their seconds, the test predictions' files, and training
    batches. Extraction counts include :func:`extraction_runs`. Views and jobs are the DDPM's; the RGB
    control's (no forward pass, one set for every seed) are counted apart (``rgb_*``) and in the bytes."""
    rows = []
    runs = extraction_runs(config)
    steps_count = len(config["features"]["steps"])
    blocks = config["features"]["blocks"]
    shard_size = config["features"]["shard_size"]
    for name, dataset in config["datasets"].items():
        flags = config["ddpms"][dataset["ddpm"]]["flags"]
        size = model_flags(flags)["image_size"]
        view_bytes = steps_count * activation_values(flags, blocks) * BYTES_PER_VALUE
        views = dataset_imagesets(config, name)
        stored = {s: views[s] for s in stored_imagesets(config, name, "ddpm")}
        rgb_views = dataset_imagesets(config, name, "rgb")
        rgb_stored = {s: rgb_views[s] for s in stored_imagesets(config, name, "rgb")}
        test_shards = shard_count(dataset["testing_number"], shard_size)
        folders = feature_folders(config, name)
        prediction_jobs = 0 if config["features"]["store_test"] else test_shards * len(folders)
        ddpm_prediction_jobs = 0 if config["features"]["store_test"] else test_shards * (
            len([folder for folder in folders if folder != RGB_FOLDER])
        )
        extraction_jobs = runs * sum(shard_count(count, shard_size) for count in stored.values())
        forward_passes = runs * sum(views.values()) * steps_count
        rgb_bytes = sum(rgb_stored.values()) * size * size * 3 * BYTES_PER_VALUE
        store_bytes = runs * sum(stored.values()) * view_bytes + rgb_bytes
        all_store_bytes = runs * sum(views.values()) * view_bytes + sum(rgb_views.values()) * size * size * 3 * BYTES_PER_VALUE
        prediction_bytes = prediction_file_bytes(config, name, size)
        rows.append(
            {
                "dataset": name,
                "views": sum(views.values()),
                "train_views": sum(v for s, v in views.items() if not is_test_imageset(s)),
                "test_views": sum(v for s, v in views.items() if is_test_imageset(s)),
                "stored_views": sum(stored.values()),
                "rgb_views": sum(rgb_views.values()),
                "rgb_jobs": sum(shard_count(count, shard_size) for count in rgb_stored.values()),
                "extraction_runs": runs,
                "store_bytes": store_bytes,
                "store_gb": store_bytes / 1e9,
                "store_test_bytes": all_store_bytes,
                "prediction_bytes": prediction_bytes,
                # while a run's test shards are gathered, its predictions are on disk twice
                "peak_bytes": store_bytes + prediction_bytes * (1 if config["features"]["store_test"] else 2),
                "forward_passes": forward_passes,
                "extraction_jobs": extraction_jobs,
                "prediction_jobs": prediction_jobs,
                "extraction_s": forward_passes * forward_seconds(flags, blocks, gflops)
                + (extraction_jobs + ddpm_prediction_jobs) * job_overhead_s,
                "training_batches": training_batches(config, name, size),
            }
        )
    return rows


def prediction_file_bytes(config: dict[str, Any], dataset: str, size: int) -> int:
    """The test predictions' label arrays of every run of a dataset (int32; twice with TTA: final and
    plain); their PNG pictures add a few percent."""
    testing_number = config["datasets"][dataset]["testing_number"]
    per_run = [2 if tta_views(config, variant) else 1 for variant in config["variants"] for _ in config["seeds"]]
    return sum(per_run) * testing_number * size * size * 4


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
    print("| dataset | views (train+aug / test+TTA) | stores kept | peak disk | forward passes | DDPM time | "
          "training batches (M) | training |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows + [total]:
        print(
            f"| {r['dataset']} | {r['views']} ({r['train_views']} / {r['test_views']}) | {format_size(r['store_bytes'])} | "
            f"{format_size(r['peak_bytes'])} | {r['forward_passes']} | {format_duration(r['extraction_s'])} | "
            f"{r['training_batches'] / 1e6:.1f} | {format_duration(r['training_batches'] * args.batch_ms / 1e3)} |"
        )
    print()
    print(f"Extraction: {noise_note(config)}; {total['extraction_jobs']} extraction jobs.")
    if config["features"]["store_test"]:
        print("Stores: features.store_test true: the test split's and its TTA views' features are stored too.")
    else:
        print(
            f"Stores: the training views' only ({total['stored_views']} views of each noise seed); the test split "
            f"and its TTA views ({total['test_views']} views of each noise seed) are computed in memory by "
            f"{total['prediction_jobs']} prediction jobs and never stored. With features.store_test: true the "
            f"stores would take {format_size(total['store_test_bytes'])}."
        )
    print(
        f"Peak disk: the stores kept and the test predictions ({format_size(total['prediction_bytes'])} of label "
        "arrays), twice while a run's test shards are gathered."
    )
    if total["rgb_views"]:
        print(
            f"RGB control (features: rgb): {total['rgb_views']} views, {total['rgb_jobs']} small "
            f"store{'s' if total['rgb_jobs'] != 1 else ''} (counted in stores), no forward pass."
        )
    print(
        f"Times: forward passes at {args.gflops:g} GFLOP/s (2 CPU cores) plus {args.job_overhead_s:g} s per "
        f"job that runs the DDPM; training at {args.batch_ms:g} ms per member batch (an upper bound)."
    )


if __name__ == "__main__":
    main()
