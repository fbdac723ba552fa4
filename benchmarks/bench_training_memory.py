"""Training memory and throughput of ddpmseg against the number of training views.

For 30, 60 and 150 views (horse_21 and its 5x augmentation) of paper-shaped random activations, a
fresh process builds ``PixelSampler(FeatureStore(paths), 255, memory_budget_mb=B)`` and runs
``train_member`` for S steps of batch 64; it reports its peak RSS (VmHWM), steps/s after the first
step, the time to the first step and whether the activations were streamed.
"""

from __future__ import annotations

import common
import performance_doc
import synthetic
import workers
from performance_doc import fmt
from synthetic import GB

NAME = "training_memory"
GOAL_GB = 4.0
GOAL_VIEWS = 150


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--views", type=int, nargs="+", default=None, help="training views (default 30 60 150)")
    p.add_argument("--steps", type=int, default=None, help="training steps S (default 3000, --quick 100)")
    p.add_argument("--budget-mb", type=float, default=None, help="memory_budget_mb B (default 2048, --quick 256)")
    args = common.parse_args(p)
    if args.worker:
        return workers.serve_worker(workers.ddpmseg_training_worker, args.worker)
    views = args.views or ([2, 4, 8] if args.quick else [30, 60, 150])
    steps = args.steps or (100 if args.quick else 3000)
    budget = args.budget_mb or (256.0 if args.quick else 2048.0)
    threads = common.set_threads(args.threads)

    dataset = synthetic.SyntheticDataset(args.workdir, args.shard_size)
    _, written = dataset.ensure(max(views))
    idle = workers.run_worker(__file__, {"threads": threads, "idle": True})["peak_rss_bytes"]
    rows = []
    for count in sorted(views):
        paths, indices = dataset.store_and_indices(count)
        payload = {"threads": threads, "paths": paths, "indices": indices, "budget_mb": budget, "steps": steps}
        print(f"{count} views ...", flush=True)
        r = workers.run_worker(__file__, payload)
        mode = f"streamed, buffer {r['buffer_views']} views" if r["streamed"] else "resident"
        rows.append(
            [
                count,
                f"{r['pixels'] / 1e6:.2f} M",
                fmt(count * synthetic.REFERENCE_BYTES_PER_VIEW / GB, 0),
                mode,
                fmt(r["peak_rss_bytes"] / GB),
                fmt(r["steps_per_s"], 0),
                fmt(r["second_half_steps_per_s"], 0),
                fmt(r["epoch_end_s"]),
                fmt(r["time_to_first_step_s"]),
                r["steps"],
            ]
        )
    header = [
        "views",
        "labelled pixels",
        "reference RAM (GB)",
        "activations",
        "peak RSS (GB)",
        "steps/s (log)",
        "steps/s (2nd half)",
        "epoch end (s)",
        "first step (s)",
        "steps",
    ]
    measured = float(max(rows, key=lambda row: row[0])[4])  # peak RSS of the largest set
    if max(views) >= GOAL_VIEWS:
        verdict = "met" if measured <= GOAL_GB else "NOT met"
        goal = f"Goal: peak RSS ≤ {GOAL_GB:g} GB at {GOAL_VIEWS} views: **{verdict}** ({measured:.2f} GB)."
    else:
        goal = (
            f"Goal: peak RSS ≤ {GOAL_GB:g} GB at {GOAL_VIEWS} views: not measured here (largest set "
            f"{max(views)} views: {measured:.2f} GB)."
        )
    notes = f"""
Paper shapes (8448 features per pixel, 25.2 M float16 activations per view), random N(0, 1)
activations and blob-shaped 21-class labels with about 7 % ignore pixels; `memory_budget_mb={budget:g}`,
batch 64, S = {steps} steps (`TrainSettings(max_epochs=1)`, `steps_per_epoch=S`), one process per row.
*Reference RAM*: the reference design's upsampled float32 features, views × 65536 px × 8448 × 4 B.
*Peak RSS*: `VmHWM` of the training process, which includes {idle / GB:.2f} GB for an interpreter that
only imports torch, zarr and ddpmseg. *steps/s (log)*: `(steps - 1) / (wall_time_s - time_to_first_step_s)`
of the training log, as asked; *2nd half*: the rate over the second half of the steps, from
per-step timestamps (when streamed, the first steps share the CPU with the background prefetch of the
next group of views, which a short capped epoch never reaches but a real epoch amortises over
thousands of steps per group); *epoch end*: time from the last step to the end of the epoch (waiting
for that prefetch to finish), included in the log's rate. *First step*: from the start of the sampler's
construction (loading resident activations) to the end of the first step.

{goal}
"""
    if written:
        notes += f"\n(The synthetic stores were written in this run: {written:.0f} s, not counted above.)\n"
    body = performance_doc.markdown_table(header, rows) + "\n" + notes
    performance_doc.report(NAME, "Training memory and throughput vs training views", body, threads, not args.print_only)


if __name__ == "__main__":
    main()
