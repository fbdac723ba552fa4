"""An ensemble of 10 members trained one after another against trained together in one job.

Sequential: ``train_member`` for members 0..9. Fused: ``train_ensemble(sampler, 21, settings, seed,
members=range(10), steps_per_epoch=S)``, one batched computation. Both at S steps per member, on a
few views of paper-shaped activations resident in memory, each mode in its own process.
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import GB, fmt

from ddpmseg.store import FeatureStore

NAME = "ensemble"
MEMBERS = 10
GOAL = 3.0


def job_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """One training job as the pipeline runs it: read the stores, train the given members, exit."""
    from ddpmseg.classifier import TrainSettings, train_ensemble, train_member
    from ddpmseg.sampler import PixelSampler

    sampler = PixelSampler(FeatureStore(payload["paths"]), common.IGNORE_LABEL, payload["indices"])
    settings = TrainSettings(max_epochs=1, epochs_before_stopping=10**6)
    members = payload["members"]
    if len(members) == 1:
        train_member(sampler, common.NUMBER_CLASS, settings, 0, members[0], payload["steps"], progress=False)
    else:
        train_ensemble(sampler, common.NUMBER_CLASS, settings, 0, members, payload["steps"], progress=False)
    return {}


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["mode"] == "job":
        return job_worker(payload)
    from ddpmseg.classifier import TrainSettings, train_ensemble, train_member
    from ddpmseg.sampler import PixelSampler

    started = time.perf_counter()
    sampler = PixelSampler(FeatureStore(payload["paths"]), common.IGNORE_LABEL, payload["indices"])
    built = time.perf_counter() - started
    settings = TrainSettings(max_epochs=1, epochs_before_stopping=10**6)
    steps, members = payload["steps"], range(MEMBERS)

    def run(steps: int) -> list[dict[str, Any]]:
        if payload["mode"] == "fused":
            results = train_ensemble(sampler, common.NUMBER_CLASS, settings, 0, members, steps, progress=False)
        else:
            results = [
                train_member(sampler, common.NUMBER_CLASS, settings, 0, m, steps, progress=False) for m in members
            ]
        return [log for _, log in results]

    run(payload["warmup_steps"])  # one-time costs (allocator, kernels) out of the timing
    started = time.perf_counter()
    logs = run(steps)
    wall = time.perf_counter() - started
    return {
        "pixels": len(sampler),
        "build_s": built,
        "wall_s": wall,
        "steps": [log["steps"] for log in logs],
        "final_losses": [log["final_loss"] for log in logs],
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=None, help="training views (default 3, --quick 1)")
    p.add_argument("--steps", type=int, default=None, help="steps per member S (default 500, --quick 30)")
    args = common.parse_args(p)
    if args.worker:
        return common.serve_worker(worker, args.worker)
    views = args.views or (1 if args.quick else 3)
    steps = args.steps or (30 if args.quick else 500)
    threads = common.set_threads(args.threads)

    dataset = common.SyntheticDataset(args.workdir, args.shard_size)
    paths, indices = dataset.store_and_indices(views)
    payload = {"threads": threads, "paths": paths, "indices": indices, "steps": steps, "warmup_steps": 3}
    results = {}
    for mode in ("sequential", "fused"):
        print(f"{mode} ...", flush=True)
        results[mode] = common.run_worker(__file__, {**payload, "mode": mode})
    jobs = {}
    for mode, groups in (("jobs", [[m] for m in range(MEMBERS)]), ("one job", [list(range(MEMBERS))])):
        print(f"as pipeline jobs: {mode} ...", flush=True)
        started = time.perf_counter()
        for members in groups:
            common.run_worker(__file__, {**payload, "mode": "job", "members": members})
        jobs[mode] = time.perf_counter() - started
    seq, fused = results["sequential"], results["fused"]
    assert seq["steps"] == fused["steps"] == [steps] * MEMBERS, "both modes must train every member S steps"
    speedup = seq["wall_s"] / fused["wall_s"]
    member_steps = MEMBERS * steps
    rows = [
        [
            f"{MEMBERS} × `train_member`, one after another",
            fmt(seq["wall_s"]),
            fmt(member_steps / seq["wall_s"], 0),
            fmt(seq["build_s"]),
            fmt(seq["peak_rss_bytes"] / GB),
        ],
        [
            f"`train_ensemble`, {MEMBERS} members fused",
            fmt(fused["wall_s"]),
            fmt(member_steps / fused["wall_s"], 0),
            fmt(fused["build_s"]),
            fmt(fused["peak_rss_bytes"] / GB),
        ],
        ["speedup (sequential / fused)", f"{speedup:.2f}×", "", "", ""],
        [f"{MEMBERS} `train_member` jobs, one after another (process start, store reading, training)",
         fmt(jobs["jobs"]), fmt(member_steps / jobs["jobs"], 0), "", ""],
        [f"one `train_ensemble` job ({MEMBERS} members)", fmt(jobs["one job"]), fmt(member_steps / jobs["one job"], 0), "", ""],
        ["speedup (jobs / one job)", f"{jobs['jobs'] / jobs['one job']:.2f}×", "", "", ""],
    ]
    header = ["training", "wall time (s)", "member-steps/s", "sampler construction (s)", "peak RSS (GB)"]
    loss_gap = max(abs(a - b) for a, b in zip(seq["final_losses"], fused["final_losses"]))
    ok = "met" if speedup >= GOAL else "NOT met"
    notes = f"""
{views} view(s) of paper-shaped random activations ({seq['pixels']:,} labelled pixels, 8448 features),
resident in memory; {MEMBERS} members × S = {steps} steps of batch 64 (`TrainSettings(max_epochs=1)`,
`steps_per_epoch=S`). Each mode runs in its own process, so each has its own peak RSS; there the
sampler is built once (timed apart, not in the wall time) and both modes first run a 3-step warm-up
of themselves. Largest difference of a member's final loss between the two modes:
{loss_gap:.2e} (the fused products round differently; the data order is the same).

Goal: fused ≥ {GOAL:g}× faster on CPU: **{ok}** ({speedup:.2f}× in one process;
{jobs['jobs'] / jobs['one job']:.2f}× as pipeline jobs, where each separate job also starts Python and reads the stores).
At 8448 features a member's step is compute-bound (its matrix products are the same FLOPs fused or
not), so fusing saves only the per-step overheads and the repeated job start-up.
"""
    common.report(NAME, "Ensemble training: sequential vs fused", common.markdown_table(header, rows) + "\n" + notes,
                  threads, not args.no_readme)


if __name__ == "__main__":
    main()
