from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ddpmseg.config import (
    augmentation_set,
    check_config,
    classifier_settings,
    imageset_count,
    imageset_split,
    parse_augmentation_set,
    shard_ranges,
    tta_views,
    variant_settings,
    variant_tta_sets,
)
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


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    ddpm="|".join(config["ddpms"]),
    imageset=r"train|test|aug-[^/]+|tta-[^/]+",
    augset=r"aug-[^/]+",
    ttaset=r"tta-[^/]+",
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


def image_size(wildcards):
    return ddpm_flags(ddpm_name(wildcards))["image_size"]


def dataset_root(wildcards):
    dataset = dataset_config(wildcards)
    if dataset["source"] == "demo":
        return f"resources/datasets/{wildcards.dataset}"
    return dataset["path"]


def imageset_root(wildcards):
    """Folder (archive layout) holding the images of an image set."""
    if wildcards.imageset.startswith("aug-"):
        return f"results/augmented/{wildcards.dataset}/{wildcards.imageset}"
    if wildcards.imageset.startswith("tta-"):
        return f"results/tta/{wildcards.dataset}/{wildcards.imageset}"
    return dataset_root(wildcards)


def checkpoint_path(name):
    ddpm = config["ddpms"][name]
    if ddpm["source"] == "demo":
        return f"resources/checkpoints/{name}.pt"
    return ddpm["checkpoint"]


def shard_stores(dataset, imageset):
    count = imageset_count(config, dataset, imageset)
    ranges = shard_ranges(count, config["features"]["shard_size"])
    return [
        f"results/features/{dataset}/{imageset}/shard{k}.zarr"
        for k in range(len(ranges))
    ]


def shard_range(wildcards):
    count = imageset_count(config, wildcards.dataset, wildcards.imageset)
    ranges = shard_ranges(count, config["features"]["shard_size"])
    return list(ranges[int(wildcards.shard)])


def train_stores(wildcards):
    """Stores of the training images, then of their augmented copies if the variant augments."""
    stores = shard_stores(wildcards.dataset, "train")
    augmented = augmentation_set(config, wildcards.dataset, wildcards.variant)
    if augmented:
        stores += shard_stores(wildcards.dataset, augmented)
    return stores


def test_stores(wildcards):
    return shard_stores(wildcards.dataset, "test")


def tta_stores(wildcards):
    """Stores of every TTA view of the test split, view after view."""
    return [
        store
        for ttaset in variant_tta_sets(config, wildcards.variant)
        for store in shard_stores(wildcards.dataset, ttaset)
    ]


def tta_folders(wildcards):
    return [
        f"results/tta/{wildcards.dataset}/{ttaset}"
        for ttaset in variant_tta_sets(config, wildcards.variant)
    ]


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


def demo_dataset_for(ddpm):
    """The generated demo dataset whose unlabelled images train demo DDPM ``ddpm``."""
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "demo" and dataset["ddpm"] == ddpm:
            return f"resources/datasets/{name}"
    raise WorkflowError(
        f"config: ddpms.{ddpm}: source demo needs a dataset with source demo that uses it"
    )


def tta_view_of(ttaset):
    """The view (list of transform names) behind a TTA image-set name."""
    for variant in VARIANTS:
        for view, name in zip(
            tta_views(config, variant), variant_tta_sets(config, variant)
        ):
            if name == ttaset:
                return view
    raise WorkflowError(f"no variant uses the TTA view {ttaset}")
