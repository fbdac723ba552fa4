rule augment_training_set:
    input:
        dataset=dataset_inputs,
        summary="results/datasets/{dataset}/summary.json",
    output:
        images=directory("results/augmented/{dataset}/{augset}"),
    log:
        "logs/augment_training_set/{dataset}/{augset}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        split=lambda wc: split_source(wc.dataset, "train"),
        settings=lambda wc: vars(parse_augmentation_set(wc.augset)),
        training_number=lookup(
            dpath="datasets/{dataset}/training_number", within=config
        ),
        image_size=image_size,
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
    script:
        "../scripts/augment_training_set.py"
