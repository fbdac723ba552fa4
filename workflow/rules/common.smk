import math

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ddpmseg.config import check_config, shard_ranges, variant_settings
from ddpmseg.ddpm import model_flags
from ddpmseg.errors import DdpmsegError

validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except DdpmsegError as error:
    raise WorkflowError(f"config: {error}") from None

DATASETS = list(config["datasets"])
VARIANTS = list(config["variants"])
SEEDS = [int(s) for s in config["seeds"]]
MEMBERS = list(range(config["ensemble_size"]))
SPLITS = {"train": "training_number", "test": "testing_number"}


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    ddpm="|".join(config["ddpms"]),
    split="train|test",
    seed=r"\d+",
    member=r"\d+",
    shard=r"\d+",


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def ddpm_name(wildcards):
    return dataset_config(wildcards)["ddpm"]


def ddpm_flags(name):
    """All create_model_and_diffusion arguments, as a plain dict (tracked by the params trigger)."""
    return model_flags(config["ddpms"][name]["flags"])


def dataset_root(wildcards):
    dataset = dataset_config(wildcards)
    if dataset["source"] == "demo":
        return f"resources/datasets/{wildcards.dataset}"
    return dataset["path"]


def checkpoint_path(name):
    ddpm = config["ddpms"][name]
    if ddpm["source"] == "demo":
        return f"resources/checkpoints/{name}.pt"
    return ddpm["checkpoint"]


def split_count(dataset, split):
    return config["datasets"][dataset][SPLITS[split]]


def shard_stores(dataset, split):
    ranges = shard_ranges(split_count(dataset, split), config["features"]["shard_size"])
    return [
        f"results/features/{dataset}/{split}/shard{k}.zarr" for k in range(len(ranges))
    ]


def train_stores(wildcards):
    return shard_stores(wildcards.dataset, "train")


def test_stores(wildcards):
    return shard_stores(wildcards.dataset, "test")


def shard_range(wildcards):
    ranges = shard_ranges(
        split_count(wildcards.dataset, wildcards.split),
        config["features"]["shard_size"],
    )
    return list(ranges[int(wildcards.shard)])


def ensemble_members(wildcards):
    return [
        f"results/models/{wildcards.dataset}/{wildcards.variant}/seed{wildcards.seed}/member{m}.pt"
        for m in MEMBERS
    ]


def run_scores():
    return [
        f"results/scores/{d}/{v}/seed{s}/summary.csv"
        for d in DATASETS
        for v in VARIANTS
        for s in SEEDS
    ]


def class_names(wildcards):
    return dataset_config(wildcards).get("class_names")


def palette(wildcards):
    return dataset_config(wildcards).get("palette")


def demo_dataset_for(ddpm):
    """The generated demo dataset whose unlabelled images train demo DDPM ``ddpm``."""
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "demo" and dataset["ddpm"] == ddpm:
            return f"resources/datasets/{name}"
    raise WorkflowError(
        f"config: ddpms.{ddpm}: source demo needs a dataset with source demo that uses it"
    )
