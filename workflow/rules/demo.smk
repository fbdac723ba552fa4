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
