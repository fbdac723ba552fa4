"""Memory and speed of DDPM training against the number of images: images read lazily (``train_ddpm``) vs
all decoded into memory up front (the previous design, kept here as the baseline).

Generated 64 px PNGs (2,000 and 20,000; ``--quick``: 100 and 1,000), written once under the work
directory. Every row is a fresh process that trains the demo UNet (config.yaml's flags at image_size 64,
the images' own size, and its batch size) for a few iterations:

- *lazy*: ``ddpmseg.diffusion.training.run.train_ddpm`` as the workflow runs it: the header check, then
  each step's batch read by DataLoader workers (``--loader-workers``, default 1: the rule's 2 threads
  for one process), the state saved at the end, one sample drawn;
- *in memory*: what ``train_ddpm`` did before: every image decoded (``read_image`` + ``model_image``) into
  one (N, 64, 64, 3) uint8 array, then the same trainer and iteration loop (``run_iterations``) on batches
  indexed from it.

Peak RSS is the training process's ``VmHWM``; the DataLoader workers' (forked from it, so counting the
pages they share with it) is reported beside it. Iterations/s are over the iterations after the warm-up,
from the training log's wall times.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import performance_doc
import workers
from bench_ddpm_training import demo_settings
from performance_doc import fmt

NAME = "ddpm_images"
IMAGE_SIZE = 64
GB = 1e9
RSS_GOAL = 1.2  # peak RSS at 20,000 images / at 2,000, lazy reading
SPEED_GOAL = 0.9  # iterations/s lazy / in memory
MODES = ("in memory", "lazy")


def image_folder(workdir: Path, count: int) -> list[Path]:
    """``count`` PNGs of smooth random colour fields with a little noise (compressible, ~5 KB each),
    written once into ``<workdir>/ddpm-images-64px`` and reused (``done`` lists how many are complete)."""
    folder = workdir / f"ddpm-images-{IMAGE_SIZE}px"
    folder.mkdir(parents=True, exist_ok=True)
    done_file = folder / "done"
    done = int(done_file.read_text()) if done_file.exists() else 0
    if done < count:
        from PIL import Image

        print(f"writing images {done} .. {count - 1} into {folder} ...", flush=True)
        for index in range(done, count):
            rng = np.random.default_rng(index)
            coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
                (IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC
            )
            pixels = np.asarray(coarse).astype(np.int16) + rng.integers(-4, 5, (IMAGE_SIZE, IMAGE_SIZE, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index:06d}.png")
        done_file.write_text(str(count))
    return image_paths(folder, count)


def image_paths(folder: Path, count: int) -> list[Path]:
    return [folder / f"{index:06d}.png" for index in range(count)]


def settings_for(iterations: int, batch_size: int) -> Any:
    from ddpmseg.diffusion.training.settings import DdpmTrainingSettings

    return DdpmTrainingSettings(
        iterations=iterations, batch_size=batch_size, microbatch=0, lr=3e-4, weight_decay=0.0, ema_rate=0.99,
        save_every=iterations, log_every=1, fp16=False, schedule_sampler="uniform", seed=0, sample_count=1,
        sample_steps=2,
    )


def steady_rate(intervals: list[dict[str, Any]], warmup: int) -> float:
    """Iterations per second after the first ``warmup`` iterations: 1 / the median time of one, from the
    log's cumulative wall times (a median, so that a burst of other work on the CPU counts little)."""
    walls = [record["wall_s"] for record in intervals]
    return 1.0 / float(np.median(np.diff(walls[warmup - 1 :])))


def lazy_worker(
    payload: dict[str, Any], paths: list[Path], flags: dict[str, Any], settings: Any, clock: workers.StepClock
) -> dict[str, Any]:
    import ddpmseg.diffusion.training.run as run
    from ddpmseg.base.files import load_json
    from ddpmseg.diffusion.training.images import check_training_images

    started = time.perf_counter()
    check_training_images(paths, None)  # timed alone; train_ddpm checks again
    check_s = time.perf_counter() - started
    image_batches = run.image_batches
    run.image_batches = lambda *args, **kwargs: clock.wrap(image_batches(*args, **kwargs))
    out = Path(tempfile.mkdtemp(prefix="bench-ddpm-images-"))
    try:
        run.train_ddpm(images=paths, flags=flags, settings=settings, state=out / "state.pt", checkpoint=out / "ema.pt",
                       log_json=out / "log.json", samples=out / "samples.png", non_square=None, progress=False,
                       loader_workers=payload["loader_workers"])
        intervals = load_json(out / "log.json")["intervals"]
    finally:
        shutil.rmtree(out)
    return {"intervals": intervals, "startup_s": check_s}


def in_memory_worker(paths: list[Path], flags: dict[str, Any], settings: Any, clock: workers.StepClock) -> dict[str, Any]:
    from ddpmseg.data.decode import read_image
    from ddpmseg.data.preprocess import model_image
    from ddpmseg.diffusion.training.draws import batch_indices
    from ddpmseg.diffusion.training.loop import build_trainer
    from ddpmseg.diffusion.training.run import run_iterations
    from ddpmseg.diffusion.training.state import TrainingLog
    from ddpmseg.diffusion.model import select_device

    started = time.perf_counter()
    pixels = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for index, path in enumerate(paths):
        pixels[index] = model_image(read_image(path), IMAGE_SIZE, None, path, choose="the DDPM's non_square policy")
    decode_s = time.perf_counter() - started
    trainer = build_trainer(flags=flags, settings=settings, device=select_device())  # as train_ddpm's
    batches = (pixels[batch_indices(settings.seed, step, settings.batch_size, len(pixels))]
               for step in range(settings.iterations))
    log = TrainingLog()
    run_iterations(trainer, clock.wrap(batches), start=0, log=log, progress=False, save=lambda step: None)
    return {"intervals": log.intervals, "startup_s": decode_s}


def training_worker(payload: dict[str, Any]) -> dict[str, Any]:
    from ddpmseg.diffusion.flags import model_flags

    paths = image_paths(Path(payload["folder"]), payload["count"])
    flags = model_flags({**payload["flags"], "image_size": IMAGE_SIZE})
    settings = settings_for(payload["iterations"], payload["batch_size"])
    clock = workers.StepClock()
    if payload["mode"] == "lazy":
        result = lazy_worker(payload, paths, flags, settings, clock)
    else:
        result = in_memory_worker(paths, flags, settings, clock)
    return {
        "iterations_per_s": steady_rate(result["intervals"], payload["warmup"]),
        "wait_ms": 1000 * float(np.median(clock.waits(payload["warmup"]))),
        "startup_s": result["startup_s"],
        "reader_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one row: the fastest iterations/s, the shortest waits for images and time before
    training (what other work on the CPU slowed least), the highest peak RSS."""
    return {
        "iterations_per_s": max(r["iterations_per_s"] for r in results),
        "wait_ms": min(r["wait_ms"] for r in results),
        "startup_s": min(r["startup_s"] for r in results),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in results),
        "reader_peak_rss_bytes": max(r["reader_peak_rss_bytes"] for r in results),
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs=2, default=None, help="the two image counts (default 2000 20000)")
    p.add_argument("--iterations", type=int, default=None, help="iterations per row (default 20, --quick 4)")
    p.add_argument("--loader-workers", type=int, default=1, help="DataLoader workers of the lazy rows (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="runs of each row, in turns (default 3, --quick 1)")
    args = common.parse_args(p)
    if args.worker:
        return workers.serve_worker(training_worker, args.worker)
    counts = sorted(args.counts or ([100, 1000] if args.quick else [2000, 20000]))
    iterations = args.iterations or (4 if args.quick else 20)
    warmup = max(2, iterations // 5)
    repeats = args.repeats or (1 if args.quick else 3)
    threads = common.set_threads(args.threads)
    flags, batch = demo_settings()

    written = time.perf_counter()
    paths = image_folder(args.workdir, max(counts))
    written = time.perf_counter() - written
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(mode, count): [] for mode in MODES for count in counts}
    for repeat in range(repeats):  # side by side: both modes at one count, in turns, then the next count
        for count in counts:
            for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                print(f"{count} images, {mode} ({repeat + 1} of {repeats}) ...", flush=True)
                payload = {"threads": threads, "mode": "lazy" if mode == "lazy" else "memory", "flags": flags,
                           "batch_size": batch, "iterations": iterations, "warmup": warmup,
                           "loader_workers": args.loader_workers, "folder": str(paths[0].parent), "count": count}
                runs[mode, count].append(workers.run_worker(__file__, payload))
    measured = {key: best_of(results) for key, results in runs.items()}

    small, large = counts
    rows = []
    for mode in MODES:
        for count in counts:
            r = measured[mode, count]
            readers = r["reader_peak_rss_bytes"]
            rows.append([
                mode, f"{count:,}", fmt(r["peak_rss_bytes"] / GB, 3),
                fmt(readers / GB, 3) if mode == "lazy" and args.loader_workers else "–",
                fmt(r["iterations_per_s"], 2), fmt(r["wait_ms"], 2), fmt(r["startup_s"], 1),
            ])
    header = ["images", "count", "peak RSS (GB)", "reader peak RSS (GB)", "iterations/s", "waiting for images (ms/it)",
              "before training (s)"]
    rss_ratio = {mode: measured[mode, large]["peak_rss_bytes"] / measured[mode, small]["peak_rss_bytes"]
                 for mode in MODES}
    speed_ratio = {count: measured["lazy", count]["iterations_per_s"] / measured["in memory", count]["iterations_per_s"]
                   for count in counts}
    ratio_rows = [
        [f"peak RSS, {large:,} / {small:,} images", fmt(rss_ratio["in memory"], 2) + "×", fmt(rss_ratio["lazy"], 2) + "×",
         f"≤ {RSS_GOAL}× lazy: **{'met' if rss_ratio['lazy'] <= RSS_GOAL else 'NOT met'}**"],
        *[[f"iterations/s lazy / in memory, {count:,} images", "", fmt(speed_ratio[count], 2) + "×",
           f"≥ {SPEED_GOAL}×: **{'met' if speed_ratio[count] >= SPEED_GOAL else 'NOT met'}**"] for count in counts],
    ]
    notes = f"""
The demo UNet (config.yaml's flags at image_size {IMAGE_SIZE}), batch {batch}, on generated {IMAGE_SIZE} px
PNGs; {iterations} iterations per run, of which the first {warmup} are warm-up; one process per run, on
the GPU where there is one (as `train_ddpm` trains); {repeats} run(s) of each row, the two modes in turns
and in alternating order, of which the table gives the fastest iterations/s, the shortest waits and
time before training and the highest peak RSS. *Iterations/s*: 1 / the median time of an iteration after
the warm-up, from the training log (a median: a burst of other work on the CPU counts little).
*Waiting for images*: the median time the training loop waited for a step's images after the warm-up
(lazy: from the DataLoader; in memory: indexing the array). *Lazy*: `train_ddpm` itself, with {args.loader_workers} DataLoader worker(s),
the header check, the state saved at the end and one sample drawn. *In memory*: the previous design's
decoding of every image into one uint8 array, then the same trainer and loop. *Peak RSS*: `VmHWM` of
the training process; *reader*: the largest DataLoader worker's, forked from the training process, so
counting the pages it shares with it. *Before training*: the header check of every image (lazy) or
decoding them all (in memory).
"""
    if written > 1:
        notes += f"\n(The images were written in this run: {written:.0f} s, not counted above.)\n"
    body = (performance_doc.markdown_table(header, rows) + "\n\n"
            + performance_doc.markdown_table(["ratio", "in memory", "lazy", "goal"], ratio_rows) + "\n" + notes)
    performance_doc.report(NAME, "DDPM training: images read lazily vs in memory", body, threads, not args.print_only)


if __name__ == "__main__":
    main()
