import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from ddpmseg.use.bundle import run_settings
from ddpmseg.config.checks import (
    SPLIT_COUNTS,
    archive_name,
    augmentation_set,
    check_config,
    check_paths,
    classifier_settings,
    ddpm_image_inputs,
    ddpm_init,
    ddpm_training_gpus,
    ddpm_training_settings,
    feature_imagesets,
    feature_source,
    features_folder,
    imageset_count,
    imageset_split,
    local_gpu_limit,
    name_constraint,
    noise_seeds,
    parse_augmentation_set,
    parse_tta_set,
    resolve_registry,
    shard_ranges,
    tta_views,
    validate_config,
    variant_settings,
    variant_tta_sets,
    visible_gpu_count,
)
from ddpmseg.diffusion.model import model_flags
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config.registry import load_registry

try:
    # One line naming the key on a schema error (Snakemake's validate prints the whole schema).
    validate_config(
        config, schema=Path(workflow.basedir, "workflow/schemas/config.schema.yaml")
    )
    config.update(resolve_registry(config, load_registry()))
    check_config(config)
    check_paths(config)
except DdpmsegError as error:
    # One line, and the last one: a WorkflowError would be followed by Snakemake's location of the raise.
    print(f"config: {error}", file=sys.stderr)
    sys.exit(1)

DATASETS = list(config["datasets"])
VARIANTS = list(config["variants"])
SEEDS = [int(s) for s in config["seeds"]]
MEMBERS = list(range(config["ensemble_size"]))


wildcard_constraints:
    dataset=name_constraint(DATASETS),
    variant=name_constraint(VARIANTS),
    ddpm=name_constraint(list(config["ddpms"])),
    imageset=r"train|test|aug-[^/]+|tta-[^/]+",
    augset=r"aug-[^/]+",
    ttaset=r"tta-[^/]+",
    seed=r"\d+",
    noise=r"\d+",
    member=r"\d+",
    shard=r"\d+",


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def split_counts(wildcards):
    """How many images of each split a dataset uses: {"train": training_number, "test": testing_number}."""
    return {
        split: dataset_config(wildcards)[key] for split, key in SPLIT_COUNTS.items()
    }


def ddpm_name(wildcards):
    return dataset_config(wildcards)["ddpm"]


def ddpm_flags(name):
    """All create_model_and_diffusion arguments, as a plain dict (tracked by the params trigger)."""
    return model_flags(config["ddpms"][name]["flags"])


def image_size(wildcards):
    return ddpm_flags(ddpm_name(wildcards))["image_size"]


def names_with_source(section, source):
    """A wildcard regex of the entries of a config section with the given source (never empty)."""
    names = [n for n, entry in config[section].items() if entry["source"] == source]
    return "|".join(names) if names else "(?!)"


def dataset_inputs(wildcards):
    """The folders a dataset's splits are read from (made by a rule for demo and registry datasets)."""
    dataset = dataset_config(wildcards)
    if dataset["source"] in ("demo", "registry"):
        return [f"resources/datasets/{wildcards.dataset}"]
    if dataset["source"] == "folder":
        return [dataset["path"]]
    return [
        dataset[k] for k in ("train_images", "train_masks", "test_images", "test_masks")
    ]


def split_source(dataset, split):
    """Where a split's images and masks are, as plain values: {images, masks, non_square}."""
    entry = config["datasets"][dataset]
    if entry["source"] == "folders":
        images, masks = entry[f"{split}_images"], entry[f"{split}_masks"]
    else:
        root = (
            entry["path"]
            if entry["source"] == "folder"
            else f"resources/datasets/{dataset}"
        )
        images, masks = f"{root}/real/{split}", None
    return {"images": images, "masks": masks, "non_square": entry.get("non_square")}


def imageset_source(wildcards):
    """Where the images of an image set are: a split, augmented copies or a TTA view."""
    imageset = wildcards.imageset
    if imageset.startswith("aug-"):
        folder = f"results/augmented/{wildcards.dataset}/{imageset}/real/train"
    elif imageset.startswith("tta-"):
        folder = f"results/tta/{wildcards.dataset}/{imageset}/real/test"
    else:
        return split_source(wildcards.dataset, imageset)
    return {"images": folder, "masks": None, "non_square": None}


def imageset_inputs(wildcards):
    if wildcards.imageset.startswith("aug-"):
        return [f"results/augmented/{wildcards.dataset}/{wildcards.imageset}"]
    if wildcards.imageset.startswith("tta-"):
        return [f"results/tta/{wildcards.dataset}/{wildcards.imageset}"]
    return dataset_inputs(wildcards)


def checkpoint_path(name):
    ddpm = config["ddpms"][name]
    if ddpm["source"] == "file":
        return ddpm["checkpoint"]
    return f"resources/checkpoints/{name}.pt"


def archive_path(dataset):
    return f"resources/archives/{archive_name(config['datasets'][dataset]['url'])}"


def download_verification(url, sha256, lock_key):
    """What a downloaded (or hand-placed) file is checked against."""
    return {
        "url": url,
        "sha256": sha256,
        "lock_file": config["download"]["lock_file"],
        "lock_key": lock_key,
    }


def archive_download(archive):
    """URL and digest of an archive, by its file name (one archive may hold several datasets)."""
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "registry" and archive_name(dataset["url"]) == archive:
            return download_verification(
                dataset["url"], dataset["sha256"], f"archives/{archive}"
            )
    raise WorkflowError(f"no registry dataset is downloaded as {archive}")


def checkpoint_download(name):
    ddpm = config["ddpms"][name]
    if ddpm["source"] != "registry":
        return None
    return download_verification(ddpm["url"], ddpm["sha256"], f"checkpoints/{name}.pt")


def shard_stores(dataset, imageset, folder):
    """The stores of an image set's features in ``folder`` (``noise<n>``: the DDPM's under noise seed
    n; ``rgb``: the RGB control's), shard after shard."""
    count = imageset_count(config, dataset, imageset)
    ranges = shard_ranges(count, config["features"]["shard_size"])
    return [
        f"results/features/{dataset}/{imageset}/{folder}/shard{k}.zarr"
        for k in range(len(ranges))
    ]


def run_features_folder(wildcards):
    """The stores' folder of run (variant, seed): its feature source's (config.features_folder)."""
    return features_folder(config, wildcards.variant, int(wildcards.seed))


def shard_range(wildcards):
    count = imageset_count(config, wildcards.dataset, wildcards.imageset)
    ranges = shard_ranges(count, config["features"]["shard_size"])
    return list(ranges[int(wildcards.shard)])


def train_stores(wildcards):
    """Stores of the training images, then of their augmented copies if the variant augments."""
    folder = run_features_folder(wildcards)
    stores = shard_stores(wildcards.dataset, "train", folder)
    augmented = augmentation_set(config, wildcards.dataset, wildcards.variant)
    if augmented:
        stores += shard_stores(wildcards.dataset, augmented, folder)
    return stores


def test_stores(wildcards):
    return shard_stores(wildcards.dataset, "test", run_features_folder(wildcards))


def tta_stores(wildcards):
    """Stores of every TTA view of the test split, view after view."""
    return [
        store
        for ttaset in variant_tta_sets(config, wildcards.variant)
        for store in shard_stores(
            wildcards.dataset, ttaset, run_features_folder(wildcards)
        )
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


def training_images(wildcards):
    """What a trained DDPM's training reads: its folders' image files, or a generated dataset's folder."""
    return ddpm_image_inputs(config, wildcards.ddpm)


def training_init(wildcards):
    """The checkpoint a trained DDPM is fine-tuned from (a DDPM's is made by its rule), or none."""
    init = ddpm_init(config, wildcards.ddpm)
    if init is None:
        return []
    kind, value = init
    return [checkpoint_path(value) if kind == "ddpm" else value]


def training_threads(wildcards):
    """CPU threads of a DDPM's training job: 2 per GPU (one process each and its data), at least 2. A
    SLURM job asks for them all (--cpus-per-task): 4 for one GPU never started on CI's 2-CPU node.
    """
    return max(2, 2 * ddpm_training_gpus(config, wildcards.ddpm))


def trained_ddpms():
    """The trained DDPMs that the datasets' features need (their own and those they fine-tune from),
    in config order."""
    needed = []
    pending = [config["datasets"][d]["ddpm"] for d in DATASETS]
    while pending:
        name = pending.pop(0)
        if name in needed or config["ddpms"][name]["source"] != "train":
            continue
        needed.append(name)
        init = ddpm_init(config, name)
        pending += [init[1]] if init and init[0] == "ddpm" else []
    return [name for name in config["ddpms"] if name in needed]


def training_benchmarks(dataset, variant, seed):
    """Benchmark files of the training jobs of a run (train_ensemble or train_member, see train.smk)."""
    if config["training"]["fused_ensemble"]:
        return [f"results/benchmarks/train_ensemble/{dataset}/{variant}/seed{seed}.tsv"]
    return [
        f"results/benchmarks/train_member/{dataset}/{variant}/seed{seed}/member{m}.tsv"
        for m in MEMBERS
    ]


def extraction_benchmarks(dataset):
    """Benchmark files of a dataset's extraction jobs: every store some variant uses, the DDPM's
    (extract_features, once per noise seed) and the RGB control's (extract_rgb_features).
    """
    jobs = {
        "ddpm": ("extract_features", [f"noise{n}" for n in noise_seeds(config)]),
        "rgb": ("extract_rgb_features", ["rgb"]),
    }
    files = []
    for source, (rule, folders) in jobs.items():
        for imageset in feature_imagesets(config, dataset, source):
            for folder in folders:
                shards = len(shard_stores(dataset, imageset, folder))
                files += [
                    f"results/benchmarks/{rule}/{dataset}/{imageset}/{folder}/shard{k}.tsv"
                    for k in range(shards)
                ]
    return files


def benchmark_files():
    """The benchmark files of every job of the heavy rules that the default target runs, as those
    rules name them (each is written when its job ends). No DDPM is trained when every variant is
    the RGB control."""
    uses_ddpm = any(feature_source(config, v) == "ddpm" for v in VARIANTS)
    files = [
        f"results/benchmarks/train_ddpm/{name}.tsv"
        for name in (trained_ddpms() if uses_ddpm else [])
    ]
    for d in DATASETS:
        files += extraction_benchmarks(d)
    for d in DATASETS:
        for v in VARIANTS:
            for s in SEEDS:
                files += training_benchmarks(d, v, s)
    files += [
        f"results/benchmarks/predict_ensemble/{d}/{v}/seed{s}.tsv"
        for d in DATASETS
        for v in VARIANTS
        for s in SEEDS
    ]
    files += [f"results/benchmarks/label_images/{name}.tsv" for name in config["apply"]]
    return files


def member_runs():
    """(dataset, variant, seed, member) of every ensemble member, in table order."""
    return [
        {"dataset": d, "variant": v, "seed": s, "member": m}
        for d in DATASETS
        for v in VARIANTS
        for s in SEEDS
        for m in MEMBERS
    ]


def prediction_runs():
    return [
        {"dataset": d, "variant": v, "seed": s}
        for d in DATASETS
        for v in VARIANTS
        for s in SEEDS
    ]


def validated_folders(wildcards):
    """The folders validate_dataset reads, each split's own: adding, removing or replacing a file in
    one (which changes the folder's mtime) reruns the validation."""
    dataset = dataset_config(wildcards)
    if dataset["source"] == "folder":
        return [f"{dataset['path']}/real/{split}" for split in ("train", "test")]
    return dataset_inputs(wildcards)


def applied_run(wildcards):
    """(dataset, variant, seed) of the run an apply: entry labels its images with."""
    entry = config["apply"][wildcards.apply]
    return entry["dataset"], entry["variant"], int(entry["seed"])


def applied_members(wildcards):
    dataset, variant, seed = applied_run(wildcards)
    return [
        f"results/models/{dataset}/{variant}/seed{seed}/member{m}.pt" for m in MEMBERS
    ]


def applied_checkpoint(wildcards):
    """The DDPM checkpoint of an apply: entry's run; none for the RGB control, which needs no DDPM."""
    dataset, variant, _ = applied_run(wildcards)
    if feature_source(config, variant) == "rgb":
        return []
    return checkpoint_path(config["datasets"][dataset]["ddpm"])


def applied_check(wildcards):
    dataset, variant, _ = applied_run(wildcards)
    if feature_source(config, variant) == "rgb":
        return []
    return f"results/ddpm/{config['datasets'][dataset]['ddpm']}/check.json"


def applied_settings(wildcards):
    """Every setting the run's labels depend on (ddpmseg.use.bundle.run_settings), as one params dict."""
    dataset, variant, seed = applied_run(wildcards)
    return run_settings(config, dataset=dataset, variant=variant, seed=seed)


def applied_outputs():
    """What the apply: entries produce (in the default target)."""
    return [
        f"results/applied/{name}/{output}"
        for name in config["apply"]
        for output in ("predictions.csv", "examples", "suggest")
    ]


def limit_local_gpu_jobs():
    """Jobs that request a GPU run at most one per GPU of this machine, and unlimited on a machine
    without one (the request is only a counter in a local run); see config.local_gpu_limit.
    """
    if not workflow.is_main_process:
        return
    limit = local_gpu_limit(
        visible_gpus=visible_gpu_count(),
        limit_given=workflow.global_resources.get("gpu").value is not None,
        cluster=workflow.resource_settings.nodes is not None,
    )
    if limit is not None:
        workflow.register_resource("gpu", limit)


limit_local_gpu_jobs()
