"""Training memory and throughput of ddpmseg, resident against streamed, over a real epoch.

For the training views of each configuration (paper-shaped random activations, 60 and 150 views: horse_21's
augmented sets), a fresh process builds ``PixelSampler(FeatureStore(paths), 255, memory_budget_mb=B)``
and runs ``train_member`` over one epoch of batch 64; it reports its peak RSS (VmHWM), steps/s after the
first step, the time to the first step and whether the activations were streamed. The same views run
resident too (a budget that holds them), beside the default budget that streams them: the ratio of
their rates is what streaming costs.
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
GOAL_RATIO = 0.9


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--views", type=int, nargs="+", default=None, help="training views under the budget (default 60 150)")
    p.add_argument("--resident-views", type=int, nargs="*", default=None,
                   help="of these, also run with every view resident (default 60)")
    p.add_argument("--steps", type=int, default=None, help="training steps S (default: the full epoch; --quick 100)")
    p.add_argument("--minutes", type=float, default=None,
                   help="cut each configuration's epoch after this much training (default 10; the table says how far it got)")
    p.add_argument("--budget-mb", type=float, default=None, help="memory_budget_mb B (default 2048, --quick 256)")
    args = common.parse_args(p)
    if args.worker:
        return workers.serve_worker(workers.ddpmseg_training_worker, args.worker)
    views = args.views or ([6, 8] if args.quick else [60, 150])
    resident_views = args.resident_views if args.resident_views is not None else ([6] if args.quick else [60])
    steps = args.steps or (100 if args.quick else None)
    minutes = args.minutes or 10.0
    budget = args.budget_mb or (256.0 if args.quick else 2048.0)
    threads = common.set_threads(args.threads)

    dataset = synthetic.SyntheticDataset(args.workdir, args.shard_size)
    _, written = dataset.ensure(max(views + resident_views))
    idle = workers.run_worker(__file__, {"threads": threads, "idle": True})["peak_rss_bytes"]
    configurations = sorted({(count, None) for count in resident_views} | {(count, budget) for count in views},
                            key=lambda c: (c[0], c[1] is not None))
    rows, measured = [], []
    for count, budget_mb in configurations:
        paths, indices = dataset.store_and_indices(count)
        payload = {"threads": threads, "paths": paths, "indices": indices, "budget_mb": budget_mb, "steps": steps,
                   "seconds": 60 * minutes}
        print(f"{count} views, budget {budget_mb or 'none'} ...", flush=True)
        r = workers.run_worker(__file__, payload)
        measured.append(r)
        mode = f"streamed, buffer {r['buffer_views']} views" if r["streamed"] else "resident"
        rows.append(
            [
                count,
                f"{r['pixels'] / 1e6:.2f} M",
                fmt(count * synthetic.REFERENCE_BYTES_PER_VIEW / GB, 0),
                "none" if budget_mb is None else f"{budget_mb:g}",
                mode,
                fmt(r["peak_rss_bytes"] / GB),
                fmt(r["steps_per_s"], 0),
                fmt(r["second_half_steps_per_s"], 0),
                fmt(r["cpu_ms_per_step"]),
                fmt(r["epoch_end_s"]),
                fmt(r["time_to_first_step_s"]),
                f"{r['steps']} of {r['epoch_steps']}" + (" (cut)" if r["cut"] else ""),
                fmt(r["other_cpu_percent"], 0),
            ]
        )
    header = [
        "views",
        "labelled pixels",
        "reference RAM (GB)",
        "budget (MB)",
        "activations",
        "peak RSS (GB)",
        "steps/s (log)",
        "steps/s (2nd half)",
        "CPU per step (ms)",
        "epoch end (s)",
        "first step (s)",
        "steps",
        "other work (% CPU)",
    ]
    results = dict(zip(configurations, measured))
    largest = results[max(views), budget]
    peak = largest["peak_rss_bytes"] / GB
    if max(views) >= GOAL_VIEWS:
        goal = f"Goal: peak RSS ≤ {GOAL_GB:g} GB at {GOAL_VIEWS} views: **{'met' if peak <= GOAL_GB else 'NOT met'}** ({peak:.2f} GB)."
    else:
        goal = (
            f"Goal: peak RSS ≤ {GOAL_GB:g} GB at {GOAL_VIEWS} views: not measured here (largest set "
            f"{max(views)} views: {peak:.2f} GB)."
        )
    for count in sorted(set(views) & set(resident_views)):
        resident, streamed = results[count, None], results[count, budget]
        if not streamed["streamed"]:
            continue
        ratio = streamed["steps_per_s"] / resident["steps_per_s"]
        full = all(r["steps"] == r["full_epoch_steps"] for r in (resident, streamed))
        span = "over a full epoch" if full else f"over {resident['steps']} and {streamed['steps']} steps, not a full epoch"
        verdict = ("met" if ratio >= GOAL_RATIO else "NOT met") if full else "not measured"
        goal += (
            f"\nGoal: streamed ≥ {GOAL_RATIO:g}× the resident rate (steps/s (log)), same {count} views, {span}: "
            f"**{verdict}** ({ratio:.2f}×)."
        )
    span = "the full epoch" if steps is None else f"S = {steps} steps"
    notes = f"""
Paper shapes (8448 features per pixel, 25.2 M float16 activations per view), random N(0, 1)
activations and blob-shaped 21-class labels with about 7 % ignore pixels; batch 64, one epoch of
{span} (`TrainSettings(max_epochs=1)`), cut after {minutes:g} minutes of training; one process per row,
run one after the other. *Budget*: `memory_budget_mb` (none: every view resident, whatever its size).
*Reference RAM*: the reference design's upsampled float32 features, views × 65536 px × 8448 × 4 B.
*Peak RSS*: `VmHWM` of the training process, which includes {idle / GB:.2f} GB for an interpreter that
only imports torch, zarr and ddpmseg. *steps/s (log)*: `(steps - 1) / (wall_time_s - time_to_first_step_s)`
of the training log, which counts the loading of every streamed group after the first; *2nd half*:
the rate over the second half of the steps, from per-step timestamps; *CPU per step*: the process's
CPU time (every thread) per step after the first, loads included (with `--threads 1`, what other work
skews least; with more, torch's threads spin while they wait for a descheduled one); *epoch end*: time from the last
step to the end of the epoch, included in the log's rate. *First step*: from the start of the
sampler's construction (loading resident activations) to the end of the first step. *Steps*: those
trained of the epoch's (cut: the time limit ended it). *Other work*: the share of the machine's CPU
time that other processes used while the row ran; above a few % the row's rate is skewed.

{goal}
"""
    if written:
        notes += f"\n(The synthetic stores were written in this run: {written:.0f} s, not counted above.)\n"
    body = performance_doc.markdown_table(header, rows) + "\n" + notes
    performance_doc.report(NAME, "Training memory and throughput, resident vs streamed", body, threads, not args.print_only)


if __name__ == "__main__":
    main()
