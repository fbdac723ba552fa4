rule validate_dataset:
    input:
        dataset=dataset_inputs,
    output:
        summary=paths.DATASET_SUMMARY,
    log:
        paths.log("validate_dataset", "{dataset}"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        splits=splits_params,
        counts=split_counts,
        image_size=image_size,
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
    script:
        "../scripts/validate_dataset.py"


rule validate_ddpm:
    input:
        checkpoint=lambda wc: ddpm_files(wc.ddpm),
    output:
        check=paths.DDPM_CHECK,
    log:
        paths.log("validate_ddpm", "{ddpm}"),
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
