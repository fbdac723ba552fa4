rule extract_features:
    input:
        images=imageset_inputs,
        summary="results/datasets/{dataset}/summary.json",
        checkpoint=lambda wc: checkpoint_path(ddpm_name(wc)),
        check=lambda wc: f"results/ddpm/{ddpm_name(wc)}/check.json",
    output:
        store=directory(
            "results/features/{dataset}/{imageset}/noise{noise}/shard{shard}.zarr"
        ),
    log:
        "logs/extract_features/{dataset}/{imageset}/noise{noise}/shard{shard}.log",
    benchmark:
        "results/benchmarks/extract_features/{dataset}/{imageset}/noise{noise}/shard{shard}.tsv"
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["gpu_per_job"],
    params:
        split=imageset_source,
        split_size=lambda wc: imageset_count(config, wc.dataset, wc.imageset),
        shard=shard_range,
        flags=lambda wc: ddpm_flags(ddpm_name(wc)),
        steps=config["features"]["steps"],
        blocks=sorted(config["features"]["blocks"]),
        noise_seed=lambda wc: int(wc.noise),
        batch_size=config["features"]["batch_size"],
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
    script:
        "../scripts/extract_features.py"


rule extract_rgb_features:
    input:
        images=imageset_inputs,
        summary="results/datasets/{dataset}/summary.json",
    output:
        store=directory("results/features/{dataset}/{imageset}/rgb/shard{shard}.zarr"),
    log:
        "logs/extract_rgb_features/{dataset}/{imageset}/rgb/shard{shard}.log",
    benchmark:
        "results/benchmarks/extract_rgb_features/{dataset}/{imageset}/rgb/shard{shard}.tsv"
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        split=imageset_source,
        split_size=lambda wc: imageset_count(config, wc.dataset, wc.imageset),
        shard=shard_range,
        image_size=image_size,
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
    script:
        "../scripts/extract_rgb_features.py"
