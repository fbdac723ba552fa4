import functools
import sys
from dataclasses import asdict, replace
from pathlib import Path

from snakemake.exceptions import WorkflowError

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config import paths
from ddpmseg.config.checks import check_config, check_paths
from ddpmseg.config.ddpms import (
    checkpoint_path,
    ddpm_image_inputs,
    ddpm_inputs,
    ddpm_init,
    ddpm_training_gpus,
    ddpm_training_nodes,
    ddpm_training_settings,
    resolve_diffusers,
    trained_ddpms,
)
from ddpmseg.config.imagesets import (
    SPLIT_COUNTS,
    dataset_root,
    imageset_count,
    imageset_folder,
    imageset_source,
    shards_of_test_split,
    stored_imagesets,
    features_folder,
    folder_runs,
    feature_folders,
    noise_seeds,
    parse_augmentation_set,
    parse_tta_set,
    run_stores,
    shard_count,
    shard_ranges,
    split_source,
    variant_tta_sets,
)
from ddpmseg.config.load import validate_config
from ddpmseg.data.listing import image_files, image_shards
from ddpmseg.config.paths import archive_name, name_constraint
from ddpmseg.config.registry import load_registry, resolve_registry
from ddpmseg.config.variants import classifier_settings, feature_source, tta_views
from ddpmseg.diffusion.flags import model_flags
from ddpmseg.stages.resources import local_gpu_limit, visible_gpu_count
from ddpmseg.use.settings import SegmenterSettings

try:
    # One line naming the key on a schema error (Snakemake's validate prints the whole schema).
    validate_config(
        config, schema=Path(workflow.basedir, "workflow/schemas/config.schema.yaml")
    )
    config.update(resolve_diffusers(resolve_registry(config, load_registry())))
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
RUNS = [
    {"dataset": d, "variant": v, "seed": s}
    for d in DATASETS
    for v in VARIANTS
    for s in SEEDS
]


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
    folder=r"noise\d+|rgb",


MISSING = object()


def config_setting(path, default=MISSING):
    """An input function of the config's value at ``path`` ("datasets/{dataset}/number_class", wildcards
    in braces), as lookup(dpath=...) gives it, by indexing: dpath walks the whole resolved config at every
    call, which took 70 % of a dry run of the paper's config (~1,000 jobs)."""
    parts = path.split("/")

    def value(wildcards):
        entry = config
        for part in parts:
            key = wildcards[part[1:-1]] if part.startswith("{") else part
            if not isinstance(entry, dict) or key not in entry:
                if default is MISSING:
                    raise WorkflowError(
                        f"the config has no {path} for {dict(wildcards)}"
                    )
                return default
            entry = entry[key]
        return entry

    return value


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
    return name_constraint(
        [n for n, entry in config[section].items() if entry["source"] == source]
    )


def dataset_inputs(wildcards):
    """The folders a dataset's splits are read from: each split's own for a user's dataset, so that adding,
    removing or replacing a file in one (which changes the folder's mtime) reruns what reads it, and a
    file beside them (notes.txt at the dataset's root) does not; the root for demo and registry datasets,
    which a rule makes."""
    dataset = dataset_config(wildcards)
    if dataset["source"] == "folders":
        return [
            dataset[k]
            for k in ("train_images", "train_masks", "test_images", "test_masks")
        ]
    if dataset["source"] == "folder":
        return [
            str(split_source(config, wildcards.dataset, s).images) for s in SPLIT_COUNTS
        ]
    return [dataset_root(config, wildcards.dataset)]


def splits_params(wildcards):
    """Each split's images, masks and non-square policy, as plain values."""
    return {
        split: split_source(config, wildcards.dataset, split).as_dict()
        for split in SPLIT_COUNTS
    }


def train_split(wildcards):
    return split_source(config, wildcards.dataset, "train").as_dict()


def test_split(wildcards):
    return split_source(config, wildcards.dataset, "test").as_dict()


def imageset_params(wildcards):
    """Where the images of an image set are: a split, augmented copies or a TTA view."""
    return imageset_source(config, wildcards.dataset, wildcards.imageset).as_dict()


def imageset_inputs(wildcards):
    folder = imageset_folder(wildcards.dataset, wildcards.imageset)
    return [folder] if folder else dataset_inputs(wildcards)


def imageset_size(wildcards):
    return imageset_count(config, wildcards.dataset, wildcards.imageset)


def ddpm_files(name):
    """The files a DDPM's rules read: its checkpoint, or a diffusers folder's files that count."""
    return ddpm_inputs(config, name)


def ddpm_checkpoint(wildcards):
    return ddpm_files(ddpm_name(wildcards))


def ddpm_check(wildcards):
    return paths.DDPM_CHECK.format(ddpm=ddpm_name(wildcards))


def archive_path(dataset):
    return paths.ARCHIVE.format(
        archive=archive_name(config["datasets"][dataset]["url"])
    )


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


def shard_range(wildcards):
    ranges = shard_ranges(imageset_size(wildcards), config["features"]["shard_size"])
    return list(ranges[int(wildcards.shard)])


def train_stores(wildcards):
    """Stores of the training images, then of their augmented copies if the variant augments."""
    return run_stores(
        config, wildcards.dataset, wildcards.variant, int(wildcards.seed), "train"
    )


def test_stores(wildcards):
    return run_stores(
        config, wildcards.dataset, wildcards.variant, int(wildcards.seed), "test"
    )


def tta_stores(wildcards):
    """Stores of every TTA view of the test split, view after view."""
    return run_stores(
        config, wildcards.dataset, wildcards.variant, int(wildcards.seed), "tta"
    )


def tta_folders(wildcards):
    return [
        imageset_folder(wildcards.dataset, ttaset)
        for ttaset in variant_tta_sets(config, wildcards.variant)
    ]


def shard_runs_of(wildcards):
    """The runs one test shard of a feature folder serves."""
    return folder_runs(config, wildcards.dataset, wildcards.folder)


def shard_uses_ddpm(wildcards):
    return wildcards.folder != paths.RGB_FOLDER


def shard_checkpoint(wildcards):
    return ddpm_checkpoint(wildcards) if shard_uses_ddpm(wildcards) else []


def shard_check(wildcards):
    return ddpm_check(wildcards) if shard_uses_ddpm(wildcards) else []


def shard_gpu(wildcards):
    return config["gpu_per_job"] if shard_uses_ddpm(wildcards) else 0


def shard_noise_seed(wildcards):
    if not shard_uses_ddpm(wildcards):
        return None
    return int(wildcards.folder.removeprefix("noise"))


def shard_runs(wildcards):
    """Each run the shard serves: variant, seed, the image sets it reads (test, then its TTA views) and its
    views, as plain values."""
    return [
        {
            "variant": run["variant"],
            "seed": run["seed"],
            "imagesets": ["test", *variant_tta_sets(config, run["variant"])],
            "views": tta_views(config, run["variant"]),
        }
        for run in shard_runs_of(wildcards)
    ]


def shard_imagesets(wildcards):
    """Where the images of every image set the shard's runs read are (test first), as plain values."""
    names = [name for run in shard_runs(wildcards) for name in run["imagesets"]]
    return {
        name: imageset_source(config, wildcards.dataset, name).as_dict()
        for name in dict.fromkeys(names)
    }


def shard_tta_folders(wildcards):
    return {
        name: imageset_folder(wildcards.dataset, name)
        for name in shard_imagesets(wildcards)
        if name != "test"
    }


def shard_members(wildcards):
    """Every member of every run the shard serves, run after run."""
    return [
        paths.MEMBER.format(**run, member=m)
        for run in shard_runs_of(wildcards)
        for m in MEMBERS
    ]


def test_shard_range(wildcards):
    return list(shards_of_test_split(config, wildcards.dataset)[int(wildcards.shard)])


def run_test_shards(wildcards):
    """The test shards of a run's feature folder, in order."""
    folder = features_folder(config, wildcards.variant, int(wildcards.seed))
    shards = shards_of_test_split(config, wildcards.dataset)
    return [
        paths.TEST_SHARD.format(dataset=wildcards.dataset, folder=folder, shard=k)
        for k in range(len(shards))
    ]


def classifier_params(wildcards):
    """The member-training settings of the variant, as plain values."""
    return asdict(classifier_settings(config, wildcards.variant))


def run_of(wildcards):
    return {
        "dataset": wildcards.dataset,
        "variant": wildcards.variant,
        "seed": wildcards.seed,
    }


def ensemble_members(wildcards):
    return [paths.MEMBER.format(**run_of(wildcards), member=m) for m in MEMBERS]


def run_scores():
    return [paths.score_table("summary").format(**run) for run in RUNS]


def training_images(wildcards):
    """What a trained DDPM's training reads: its folders' image files, or a generated dataset's folder."""
    return ddpm_image_inputs(config, wildcards.ddpm)


def training_init(wildcards):
    """The checkpoint a trained DDPM is fine-tuned from (a DDPM's is made by its rule), or none."""
    init = ddpm_init(config, wildcards.ddpm)
    if init is None:
        return []
    kind, value = init
    return [checkpoint_path(config, value) if kind == "ddpm" else value]


def training_gpus(wildcards):
    """GPUs on each node of a DDPM's training job."""
    return ddpm_training_gpus(config, wildcards.ddpm)


def training_nodes(wildcards):
    return ddpm_training_nodes(config, wildcards.ddpm)


def training_gpu_resource(wildcards):
    """The job's gpu resource: its GPUs when it runs on one node. On several, 0: the SLURM plugin makes
    gpu a job-wide --gpus, which the job step that runs the rule (on one node) would ask for as well;
    their GPUs go per node in gres instead."""
    return training_gpus(wildcards) if training_nodes(wildcards) == 1 else 0


def training_gres(wildcards):
    """sbatch --gres of a training job on several nodes with GPUs: gpu:G, G on each node; else none."""
    gpus = training_gpus(wildcards)
    return f"gpu:{gpus}" if training_nodes(wildcards) > 1 and gpus else ""


def training_threads(wildcards):
    """CPU threads of a DDPM's training job on each node: 2 per GPU (one process each and its data), at
    least 2. A SLURM job asks for them all (--cpus-per-task): 4 for one GPU never started on CI's 2-CPU
    node.
    """
    return max(2, 2 * training_gpus(wildcards))


def ddpm_training_params(wildcards):
    return ddpm_training_settings(config["ddpms"][wildcards.ddpm])


# train_members: one job per run (training.fused_ensemble) or per member.
FUSED = config["training"]["fused_ensemble"]
MEMBERS_JOB_KEY = paths.RUN if FUSED else paths.job_key(paths.MEMBER)


def member_outputs(template):
    """A train_members job's files of ``template``: every member's of the run, or its one member's."""
    if FUSED:
        return expand(template, member=MEMBERS, allow_missing=True)
    return [template]


def job_members(wildcards):
    return MEMBERS if FUSED else [int(wildcards.member)]


def extraction_benchmarks(dataset):
    """Benchmark files of a dataset's extraction jobs: every store some variant uses, the DDPM's
    (extract_features, once per noise seed) and the RGB control's (extract_rgb_features).
    """
    jobs = {
        "ddpm": ("extract_features", paths.DDPM_STORE, {"noise": noise_seeds(config)}),
        "rgb": ("extract_rgb_features", paths.RGB_STORE, {"noise": [None]}),
    }
    files = []
    for source, (rule, store, noises) in jobs.items():
        key = paths.benchmark(rule, paths.job_key(store))
        for imageset in stored_imagesets(config, dataset, source):
            count = imageset_count(config, dataset, imageset)
            shards = shard_count(count, config["features"]["shard_size"])
            files += [
                key.format(dataset=dataset, imageset=imageset, noise=noise, shard=k)
                for noise in noises["noise"]
                for k in range(shards)
            ]
    return files


def benchmark_files():
    """The benchmark files of every job of the heavy rules that the default target runs, as those
    rules name them (each is written when its job ends). No DDPM is trained when every variant is
    the RGB control."""
    uses_ddpm = any(feature_source(config, v) == "ddpm" for v in VARIANTS)
    files = [
        paths.benchmark("train_ddpm", paths.job_key(paths.CHECKPOINT)).format(ddpm=name)
        for name in (trained_ddpms(config) if uses_ddpm else [])
    ]
    for d in DATASETS:
        files += extraction_benchmarks(d)
    training = paths.benchmark("train_members", MEMBERS_JOB_KEY)
    files += [
        training.format(**run, member=m)
        for run in RUNS
        for m in ([None] if FUSED else MEMBERS)
    ]
    if config["features"]["store_test"]:
        prediction = paths.benchmark("predict_ensemble", paths.RUN)
        files += [prediction.format(**run) for run in RUNS]
    else:
        shard = paths.benchmark("predict_test_shard", paths.job_key(paths.TEST_SHARD))
        files += [
            shard.format(dataset=d, folder=folder, shard=k)
            for d in DATASETS
            for folder in feature_folders(config, d)
            for k in range(len(shards_of_test_split(config, d)))
        ]
    labelling = paths.benchmark("label_images", paths.job_key(paths.APPLIED_SHARD))
    files += [
        labelling.format(apply=name, shard=k)
        for name in config["apply"]
        for k in applied_shard_map(name)
    ]
    return files


def member_runs():
    """(dataset, variant, seed, member) of every ensemble member, in table order."""
    return [{**run, "member": m} for run in RUNS for m in MEMBERS]


def applied_run(wildcards):
    """(dataset, variant, seed) of the run an apply: entry labels its images with."""
    entry = config["apply"][wildcards.apply]
    return entry["dataset"], entry["variant"], int(entry["seed"])


@functools.cache
def applied_shard_map(name):
    """The shards of an apply: entry's images: {shard index: image files}."""
    entry = config["apply"][name]
    return image_shards(image_files([entry["images"]]), entry["shard_size"])


def applied_shard_images(wildcards):
    return [
        str(path) for path in applied_shard_map(wildcards.apply)[int(wildcards.shard)]
    ]


def applied_shards(wildcards):
    return [
        paths.APPLIED_SHARD.format(apply=wildcards.apply, shard=k)
        for k in applied_shard_map(wildcards.apply)
    ]


def applied_shard_image_lists(wildcards):
    return [
        [str(path) for path in images]
        for images in applied_shard_map(wildcards.apply).values()
    ]


def applied_members(wildcards):
    dataset, variant, seed = applied_run(wildcards)
    run = {"dataset": dataset, "variant": variant, "seed": seed}
    return [paths.MEMBER.format(**run, member=m) for m in MEMBERS]


def applied_checkpoint(wildcards):
    """The DDPM checkpoint of an apply: entry's run; none for the RGB control, which needs no DDPM."""
    dataset, variant, _ = applied_run(wildcards)
    if feature_source(config, variant) == "rgb":
        return []
    return ddpm_files(config["datasets"][dataset]["ddpm"])


def applied_check(wildcards):
    dataset, variant, _ = applied_run(wildcards)
    if feature_source(config, variant) == "rgb":
        return []
    return paths.DDPM_CHECK.format(ddpm=config["datasets"][dataset]["ddpm"])


def applied_settings(wildcards):
    """Every setting the run's labels depend on (ddpmseg.use.settings.SegmenterSettings), as plain values."""
    dataset, variant, seed = applied_run(wildcards)
    settings = SegmenterSettings.of_run(
        config, dataset=dataset, variant=variant, seed=seed
    )
    policy = config["apply"][wildcards.apply].get("non_square")
    return (replace(settings, non_square=policy) if policy else settings).plain()


def applied_outputs():
    """What the apply: entries produce (in the default target)."""
    return [
        f"{paths.APPLIED}/{output}".format(apply=name)
        for name in config["apply"]
        for output in ("predictions.csv", "examples", "suggest")
    ]


def limit_local_gpu_jobs():
    """Jobs that request a GPU run at most one per GPU of this machine, and unlimited on a machine
    without one (the request is only a counter in a local run); see stages.resources.local_gpu_limit.
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
