"""Check a Snakemake run through the SLURM executor (CI, see .ci/run).

usage: check_slurm.py RUN_LOG WORKDIR [--gpu-rules R1,R2,...] [--tables LOCAL_TABLES [--seed S --variants V1,...]]

(a) Every job of the run went through SLURM. From the run's Snakemake output (RUN_LOG): the planned
    jobs ("Job stats"), the SLURM run ID (the job name the plugin gives every sbatch job), and each
    executed job's rule, local or not, and resources. From the SLURM controller (`scontrol -o show
    job`, finished jobs are kept for MinJobAge): the jobs named with that run ID. Checked: only rules
    without an action (`all`) ran inside Snakemake ("localrule"); every other planned job is exactly
    one SLURM job of its rule (the plugin's comment `rule_<rule>[_wildcards_...]`), COMPLETED with
    exit code 0:0, whose working directory is WORKDIR, and whose per-job log is under
    WORKDIR/.snakemake/slurm_logs/rule_<rule>/; the GPUs each job asked sbatch for (TresPerJob) are
    the `gpu` resource Snakemake printed for that job (matched by "Job N has been submitted with SLURM
    jobid M"), and some job of every rule of --gpu-rules asked for at least one.
(b) With --tables: WORKDIR/results/tables/*.csv and miou.md equal LOCAL_TABLES' files byte for byte;
    with --seed S and --variants V1,... as well (the SLURM run made only seed S of those variants): the
    lines of seed S and those variants in the per-run tables (per_seed.csv, per_class.csv,
    per_image.csv) equal the local run's such lines, byte for byte, and the SLURM tables hold no others.
"""

import argparse
import difflib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

errors = []


def fail(message):
    errors.append(message)
    print(f"FAIL: {message}", file=sys.stderr)


def job_stats(text):
    """The first "Job stats" table of a Snakemake output: {rule: count}."""
    match = re.search(r"^Job stats:\n.*?\n-+ +-+\n(.*?)^total +(\d+)$", text, re.MULTILINE | re.DOTALL)
    if not match:
        sys.exit("check_slurm: no 'Job stats' table in the run log")
    counts = {}
    for line in match.group(1).strip().splitlines():
        rule, count = line.split()
        counts[rule] = int(count)
    assert sum(counts.values()) == int(match.group(2)), match.group(0)
    return counts


def executed_jobs(text):
    """Each job block Snakemake printed: (rule, local?, gpu resource, Snakemake job id)."""
    jobs = []
    for block in re.finditer(r"^(localrule|rule) (\w+):\n((?:    .*\n)*)", text, re.MULTILINE):
        kind, rule, body = block.groups()
        resources = re.search(r"^    resources: (.*)$", body, re.MULTILINE)
        gpu = re.search(r"(?:^|, )gpu=(\d+)", resources.group(1)) if resources else None
        job_id = re.search(r"^    jobid: (\d+)$", body, re.MULTILINE)
        jobs.append((rule, kind == "localrule", int(gpu.group(1)) if gpu else 0, job_id and job_id.group(1)))
    return jobs


def submissions(text):
    """{SLURM job id: Snakemake job id} from the plugin's "Job N has been submitted with SLURM jobid M"."""
    pattern = r"^Job (\d+) has been submitted with SLURM jobid (\d+)"
    return {slurm: job for job, slurm in re.findall(pattern, text, re.MULTILINE)}


def slurm_jobs(run_id):
    """All jobs slurmctld knows whose name is the run ID: a list of {field: value}."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=False)
    if out.returncode != 0 and "No jobs in the system" not in out.stderr + out.stdout:
        sys.exit(f"check_slurm: scontrol show job failed: {out.stderr.strip()}")
    jobs = []
    for line in out.stdout.splitlines():
        fields = dict(token.split("=", 1) for token in line.split(" ") if "=" in token)
        if fields.get("JobName") == run_id:
            jobs.append(fields)
    return jobs


def requested_gpus(fields):
    """GPUs a job asked for: TresPerJob=gres:gpu:1 (SLURM 22) or gres/gpu:1 (newer)."""
    match = re.search(r"gres[:/]gpu(?::[^:,]+)?:(\d+)", fields.get("TresPerJob", ""))
    return int(match.group(1)) if match else 0


def check_jobs(log_path, workdir, gpu_rules):
    text = Path(log_path).read_text()
    planned = job_stats(text)
    run_id = re.search(r"^SLURM run ID: (\S+)$", text, re.MULTILINE)
    if not run_id:
        sys.exit("check_slurm: no 'SLURM run ID' in the run log: was the slurm executor used?")
    run_id = run_id.group(1)

    executed = executed_jobs(text)
    if Counter(rule for rule, *_ in executed) != Counter(planned):
        fail(f"jobs executed {dict(Counter(r for r, *_ in executed))} != planned {planned}")
    local = Counter(rule for rule, is_local, *_ in executed if is_local)
    if set(local) - {"all"}:
        fail(f"jobs run inside Snakemake, not on SLURM: {dict(local)}")
    remote = Counter(rule for rule, is_local, *_ in executed if not is_local)
    # A rule's jobs may differ in GPUs (a test shard of RGB features needs no DDPM): checked per job.
    job_gpus = {job_id: gpu for _, is_local, gpu, job_id in executed if not is_local}
    rule_gpus = {}
    for rule, is_local, gpu, _ in executed:
        if not is_local:
            rule_gpus.setdefault(rule, set()).add(gpu)
    submitted = submissions(text)

    jobs = slurm_jobs(run_id)
    by_rule = Counter()
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    for job in jobs:
        job_id, comment = job.get("JobId"), job.get("Comment", "")
        rule = next(
            (r for r in remote if comment == f"rule_{r}" or comment.startswith(f"rule_{r}_wildcards_")),
            None,
        )
        if rule is None:
            fail(f"SLURM job {job_id}: comment {comment!r} names no rule of the run")
            continue
        by_rule[rule] += 1
        if job.get("JobState") != "COMPLETED" or job.get("ExitCode") != "0:0":
            fail(f"SLURM job {job_id} ({rule}): {job.get('JobState')}, exit {job.get('ExitCode')}")
        if Path(job.get("WorkDir", "")).resolve() != workdir:
            fail(f"SLURM job {job_id} ({rule}): WorkDir {job.get('WorkDir')} is not {workdir}")
        if not list((slurm_logs / f"rule_{rule}").rglob(f"{job_id}.log")):
            fail(f"SLURM job {job_id} ({rule}): no log {slurm_logs}/rule_{rule}/**/{job_id}.log")
        snakemake_job = submitted.get(job_id)
        if snakemake_job not in job_gpus:
            fail(f"SLURM job {job_id} ({rule}): no Snakemake job was submitted as it")
        elif requested_gpus(job) != job_gpus[snakemake_job]:
            fail(
                f"SLURM job {job_id} ({rule}): requested {requested_gpus(job)} GPUs "
                f"(TresPerJob={job.get('TresPerJob')}), the job's gpu resource is {job_gpus[snakemake_job]}"
            )
    if by_rule != remote:
        fail(f"SLURM jobs per rule {dict(by_rule)} != Snakemake's remote jobs {dict(remote)}")
    for rule in gpu_rules:
        if rule in planned and not max(rule_gpus.get(rule, {0})):
            fail(f"rule {rule} ran without requesting a GPU")
    if gpu_rules and not [r for r in gpu_rules if r in planned]:
        fail(f"none of the GPU rules {gpu_rules} ran")

    print(
        f"SLURM run {run_id}: {sum(by_rule.values())} SLURM jobs for {sum(planned.values())} "
        f"planned jobs ({sum(local.values())} local: {dict(local)})"
    )
    for rule in remote:
        each = "/".join(str(g) for g in sorted(rule_gpus[rule]))
        print(f"  {rule:<22} {by_rule[rule]:>3} SLURM jobs, COMPLETED 0:0, --gpus {each} each")


def check_tables(local, slurm):
    names = sorted(p.name for p in local.iterdir() if p.suffix == ".csv" or p.name == "miou.md")
    theirs = sorted(p.name for p in slurm.iterdir() if p.suffix == ".csv" or p.name == "miou.md")
    if names != theirs or "miou.md" not in names:
        fail(f"tables differ in files: local {names}, SLURM {theirs}")
    for name in names:
        a, b = local / name, slurm / name
        if not b.is_file():
            continue
        if a.read_bytes() != b.read_bytes():
            diff = difflib.unified_diff(
                a.read_text().splitlines(), b.read_text().splitlines(), str(a), str(b), lineterm="", n=0
            )
            fail(f"{name} differs:\n" + "\n".join(list(diff)[:20]))
    if not errors:
        print(f"tables identical ({', '.join(names)}): {local} == {slurm}")


PER_RUN_TABLES = ("per_seed.csv", "per_class.csv", "per_image.csv")


def run_lines(path, seed, variants):
    """The header and the lines of one seed and the given variants of a per-run table."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    seed_column, variant_column = header.index("seed"), header.index("variant")
    return [lines[0]] + [
        line for line in lines[1:]
        if line.split(",")[seed_column] == str(seed) and line.split(",")[variant_column] in variants
    ]


def check_run_tables(local, slurm, seed, variants):
    for name in PER_RUN_TABLES:
        ours, theirs = run_lines(local / name, seed, variants), run_lines(slurm / name, seed, variants)
        if len(ours) < 2:
            fail(f"{name}: the local run has no line of seed {seed} and variants {variants}")
        if len(slurm.joinpath(name).read_text().splitlines()) != len(theirs):
            fail(f"{name}: the SLURM run has lines of other seeds or variants than seed {seed}, {variants}")
        if ours != theirs:
            diff = difflib.unified_diff(ours, theirs, str(local / name), str(slurm / name), lineterm="", n=0)
            fail(f"{name} (seed {seed}, {', '.join(variants)}) differs:\n" + "\n".join(list(diff)[:20]))
    if not errors:
        print(f"lines of seed {seed}, {', '.join(variants)} identical ({', '.join(PER_RUN_TABLES)}): {local} == {slurm}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_log")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--gpu-rules", default="", help="comma-separated rules that must request a GPU")
    parser.add_argument("--tables", type=Path, help="the local run's results/tables to compare with")
    parser.add_argument("--seed", type=int, help="with --tables and --variants: the one seed the SLURM run made")
    parser.add_argument("--variants", default="", help="with --seed: the comma-separated variants the SLURM run made")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    check_jobs(args.run_log, workdir, [r for r in args.gpu_rules.split(",") if r])
    if args.tables and args.seed is not None:
        variants = [v for v in args.variants.split(",") if v]
        if not variants:
            sys.exit("check_slurm: --seed needs --variants")
        check_run_tables(args.tables, workdir / "results" / "tables", args.seed, variants)
    elif args.tables:
        check_tables(args.tables, workdir / "results" / "tables")
    if errors:
        sys.exit(f"check_slurm: {len(errors)} check(s) failed")


if __name__ == "__main__":
    main()
