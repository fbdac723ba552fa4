rule extract_features:
    input:
        images=imageset_inputs,
        summary=paths.DATASET_SUMMARY,
        checkpoint=ddpm_checkpoint,
        check=ddpm_check,
    output:
        store=directory(paths.DDPM_STORE),
    log:
        paths.log("extract_features", paths.job_key(paths.DDPM_STORE)),
    benchmark:
        paths.benchmark("extract_features", paths.job_key(paths.DDPM_STORE))
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["gpu_per_job"],
    params:
        split=imageset_params,
        split_size=imageset_size,
        shard=shard_range,
        flags=lambda wc: ddpm_flags(ddpm_name(wc)),
        steps=config["features"]["steps"],
        blocks=sorted(config["features"]["blocks"]),
        noise_seed=lambda wc: int(wc.noise),
        batch_size=config["features"]["batch_size"],
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
    script:
        "../scripts/extract_features.py"


rule extract_rgb_features:
    input:
        images=imageset_inputs,
        summary=paths.DATASET_SUMMARY,
    output:
        store=directory(paths.RGB_STORE),
    log:
        paths.log("extract_rgb_features", paths.job_key(paths.RGB_STORE)),
    benchmark:
        paths.benchmark("extract_rgb_features", paths.job_key(paths.RGB_STORE))
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        split=imageset_params,
        split_size=imageset_size,
        shard=shard_range,
        image_size=image_size,
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
    script:
        "../scripts/extract_rgb_features.py"
