rule validate_dataset:
    input:
        dataset=validated_folders,
    output:
        summary="results/datasets/{dataset}/summary.json",
    log:
        "logs/validate_dataset/{dataset}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        splits=lambda wc: {s: split_source(wc.dataset, s) for s in ("train", "test")},
        counts=lambda wc: {
            "train": dataset_config(wc)["training_number"],
            "test": dataset_config(wc)["testing_number"],
        },
        image_size=image_size,
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
    script:
        "../scripts/validate_dataset.py"


rule validate_ddpm:
    input:
        checkpoint=lambda wc: checkpoint_path(wc.ddpm),
    output:
        check="results/ddpm/{ddpm}/check.json",
    log:
        "logs/validate_ddpm/{ddpm}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        flags=lambda wc: ddpm_flags(wc.ddpm),
        verify=lambda wc: checkpoint_download(wc.ddpm),
    script:
        "../scripts/validate_ddpm.py"
