rule generate_demo_dataset:
    output:
        dataset=directory("resources/datasets/{dataset}"),
    log:
        "logs/generate_demo_dataset/{dataset}.log",
    wildcard_constraints:
        dataset=names_with_source("datasets", "demo"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed=config["demo"]["seed"],
        image_size=config["demo"]["image_size"],
        train=config["demo"]["train_images"],
        test=config["demo"]["test_images"],
        unlabelled=config["demo"]["unlabelled_images"],
    script:
        "../scripts/generate_demo_dataset.py"


rule train_demo_ddpm:
    input:
        dataset=lambda wc: demo_dataset_for(wc.ddpm),
    output:
        checkpoint="resources/checkpoints/{ddpm}.pt",
        log_json="results/ddpm/{ddpm}/training.json",
    log:
        "logs/train_demo_ddpm/{ddpm}.log",
    benchmark:
        "results/benchmarks/train_demo_ddpm/{ddpm}.tsv"
    wildcard_constraints:
        ddpm=names_with_source("ddpms", "demo"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=config["gpu_per_job"],
    params:
        flags=lambda wc: ddpm_flags(wc.ddpm),
        iterations=config["demo"]["ddpm_training"]["iterations"],
        batch_size=config["demo"]["ddpm_training"]["batch_size"],
        lr=config["demo"]["ddpm_training"]["lr"],
        seed=config["demo"]["ddpm_training"]["seed"],
    script:
        "../scripts/train_demo_ddpm.py"
