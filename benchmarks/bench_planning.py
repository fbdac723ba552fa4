"""How long Snakemake takes to plan a config, this checkout beside an earlier revision, in one run.

For each checkout (this one, and ``--baseline REV`` checked out as a git worktree under the work
directory), a fresh process runs ``snakemake -n --quiet rules`` on the config (default
``config/paper.yaml``) in an empty working directory, ``--repeats`` times; the table gives the best wall
time, its CPU time, the jobs planned, and whether parsing the Snakefile imports torch (a parse with a
``torch`` that raises on import). Planning needs no network and writes nothing but Snakemake's metadata.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common
import performance_doc
from performance_doc import fmt

NAME = "planning"
GOAL_S = 10.0
DEFAULT_BASELINE = "db5ed2a"  # the last revision before the test split's features were computed in memory
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def checkout(revision: str, workdir: Path) -> Path:
    """A worktree of ``revision`` under ``workdir`` (made once, reused)."""
    folder = workdir / f"checkout-{revision}"
    if not (folder / "Snakefile").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(common.REPO), "worktree", "add", "--force", "--detach", str(folder), revision],
                       check=True, capture_output=True, text=True)
    return folder


def plan(repo: Path, config: Path, workdir: Path, *args: str, env: dict[str, str] | None = None):
    """(wall s, CPU s of the child, its output, return code) of one dry run of ``repo``'s Snakefile."""
    run_dir = workdir / "plan-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    command = [SNAKEMAKE, "-s", str(repo / "Snakefile"), "--directory", str(run_dir), "--configfile", str(config),
               "--cores", "2", "-n", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": str(repo), **(env or {})}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout + done.stderr, done.returncode


def imports_torch_at_parse(repo: Path, config: Path, workdir: Path) -> bool:
    """Whether parsing the Snakefile imports torch: a parse with a torch package that raises fails."""
    fake = workdir / "no-torch" / "torch"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('torch imported while parsing')\n")
    *_, code = plan(repo, config, workdir, "--quiet", "all", "--list-rules",
                    env={"PYTHONPATH": f"{fake.parent}:{repo}"})
    return code != 0


def jobs_planned(output: str) -> int:
    found = re.search(r"^total\s+(\d+)", output, re.M)
    return int(found.group(1)) if found else 0


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=common.REPO / "config" / "paper.yaml", help="the config planned")
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="the revision planned beside this checkout")
    p.add_argument("--repeats", type=int, default=None, help="dry runs per checkout (default 3, --quick 1)")
    args = common.parse_args(p)
    repeats = args.repeats or (1 if args.quick else 3)
    threads = common.set_threads(args.threads)
    workdir = args.workdir / "planning"
    workdir.mkdir(parents=True, exist_ok=True)
    checkouts = {f"baseline {args.baseline}": checkout(args.baseline, workdir), "this checkout": common.REPO}
    rows, best = [], {}
    for label, repo in checkouts.items():
        runs = []
        for _ in range(repeats):
            wall, cpu, output, code = plan(repo, args.config.resolve(), workdir, "--quiet", "rules")
            if code != 0:
                raise SystemExit(f"{label}: snakemake -n failed:\n{output[-3000:]}")
            runs.append((wall, cpu, jobs_planned(output), len(output.splitlines())))
        wall, cpu, jobs, lines = min(runs)
        best[label] = wall
        torch = "yes" if imports_torch_at_parse(repo, args.config.resolve(), workdir) else "no"
        rows.append([label, jobs, fmt(wall, 1), fmt(cpu, 1), lines, torch])
    ratio = best[f"baseline {args.baseline}"] / best["this checkout"]
    body = "\n".join([
        performance_doc.markdown_table(
            ["checkout", "jobs planned", f"best wall s of {repeats}", "CPU s", "lines printed", "parse imports torch"],
            rows),
        "",
        f"This checkout plans {args.config.name} {fmt(ratio, 1)}× as fast as {args.baseline} "
        f"(goal: ≤ {GOAL_S:g} s on 2 idle cores: {'met' if best['this checkout'] <= GOAL_S else 'not met'}).",
    ])
    performance_doc.report(NAME, f"Planning {args.config.name} (snakemake -n --quiet rules)", body, threads,
                           write=not args.print_only)


if __name__ == "__main__":
    main()
