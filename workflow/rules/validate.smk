rule validate_dataset:
    input:
        dataset=dataset_root,
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
        image_size=lambda wc: ddpm_flags(ddpm_name(wc))["image_size"],
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
        training_number=lambda wc: dataset_config(wc)["training_number"],
        testing_number=lambda wc: dataset_config(wc)["testing_number"],
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
        steps=config["features"]["steps"],
        blocks=config["features"]["blocks"],
    script:
        "../scripts/validate_ddpm.py"
