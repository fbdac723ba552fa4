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
        counts=split_counts,
        image_size=image_size,
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
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
