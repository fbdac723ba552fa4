"""Where the workflow keeps things: every path template under ``resources/`` and ``results/`` (and
``logs/``), the one place they are written. The rules use them as Snakemake patterns, ``common.smk``'s
input functions and the package (bundles of a finished run, the estimate) format them."""

from __future__ import annotations

import re
from pathlib import Path

from ..base.errors import DdpmsegError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Downloads and what the workflow makes of them, under resources/.
DATASET = "resources/datasets/{dataset}"
ARCHIVE = "resources/archives/{archive}"
CHECKPOINT = "resources/checkpoints/{ddpm}.pt"

# Everything computed, under results/. A run is (dataset, variant, seed).
RUN = "{dataset}/{variant}/seed{seed}"
DATASET_SUMMARY = "results/datasets/{dataset}/summary.json"
DDPM_CHECK = "results/ddpm/{ddpm}/check.json"
DDPM_TRAINING_LOG = "results/ddpm/{ddpm}/training.json"
DDPM_SAMPLES = "results/ddpm/{ddpm}/samples.png"
# A trained DDPM's whole training state: not an output, so that Snakemake keeps it when a job fails.
DDPM_STATE = "results/ddpm/{ddpm}/state.pt"
AUGMENTED = "results/augmented/{dataset}/{augset}"
TTA_VIEW = "results/tta/{dataset}/{ttaset}"
# The stores of an image set's features, in a folder per feature source: the DDPM's under each noise
# seed, or the RGB control's.
FEATURES = "results/features/{dataset}/{imageset}"
NOISE_FOLDER = "noise{noise}"
RGB_FOLDER = "rgb"
DDPM_STORE = FEATURES + "/" + NOISE_FOLDER + "/shard{shard}.zarr"
RGB_STORE = FEATURES + "/" + RGB_FOLDER + "/shard{shard}.zarr"
MEMBER = "results/models/" + RUN + "/member{member}.pt"
MEMBER_LOG = "results/models/" + RUN + "/member{member}.json"
PREDICTIONS = "results/predictions/" + RUN
# The test split predicted in shards, every run of one feature folder (noise seed, or rgb) in one job.
TEST_SHARD = "results/prediction_shards/{dataset}/{folder}/shard{shard}"
SCORES = "results/scores/" + RUN  # summary.csv, per_class.csv, per_image.csv
TABLE = "results/tables/{table}"
TABLES = {"markdown": "miou.md", "miou": "miou.csv", "per_seed": "per_seed.csv", "per_class": "per_class.csv",
          "per_image": "per_image.csv"}
REPORT = "results/report"
APPLIED = "results/applied/{apply}"
APPLIED_SHARD = APPLIED + "/shards/shard{shard}"
# Resumable state of jobs, outside their declared outputs (which Snakemake deletes when a job fails).
PROGRESS = "results/progress"


def store(*, dataset: str, imageset: str, folder: str, shard: int) -> str:
    """The store of one shard of an image set's features in ``folder`` (``noise<n>`` or ``rgb``)."""
    return f"{FEATURES}/{folder}/shard{shard}.zarr".format(dataset=dataset, imageset=imageset)


def score_table(table: str) -> str:
    """A run's score table (``summary``, ``per_class`` or ``per_image``)."""
    return f"{SCORES}/{table}.csv"


def job_key(template: str) -> str:
    """What names one job of a rule, from its output's template: the part below ``results/<stage>/``
    (``{dataset}/{variant}/seed{seed}`` of ``results/predictions/{dataset}/{variant}/seed{seed}``)."""
    return Path(*Path(template).parts[2:]).with_suffix("").as_posix()


def log(rule: str, key: str | None = None) -> str:
    """A job's log file: ``logs/<rule>/<key>.log``, or ``logs/<rule>.log`` for a rule of one job."""
    return f"logs/{rule}.log" if key is None else f"logs/{rule}/{key}.log"


def benchmark(rule: str, key: str) -> str:
    """A job's benchmark file (``results/benchmarks/<rule>/<key>.tsv``), read by the report."""
    return f"results/benchmarks/{rule}/{key}.tsv"


def archive_name(url: str) -> str:
    """File name an archive is stored under in ``resources/archives/``: the last part of its URL."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise DdpmsegError(f"{url}: cannot name the archive after this URL")
    return name


def name_constraint(names: list[str]) -> str:
    """A wildcard regex matching exactly the given names (regex characters in them taken literally)."""
    return "|".join(re.escape(name) for name in names) if names else "(?!)"
