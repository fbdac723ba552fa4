rule generate_demo_dataset:
    output:
        dataset=directory(paths.DATASET),
    log:
        paths.log("generate_demo_dataset", "{dataset}"),
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
