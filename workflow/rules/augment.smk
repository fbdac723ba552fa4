rule augment_training_set:
    input:
        dataset=dataset_inputs,
        summary=paths.DATASET_SUMMARY,
    output:
        images=directory(paths.AUGMENTED),
    log:
        paths.log("augment_training_set", paths.job_key(paths.AUGMENTED)),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        split=train_split,
        settings=lambda wc: asdict(parse_augmentation_set(wc.augset)),
        training_number=lookup(
            dpath="datasets/{dataset}/training_number", within=config
        ),
        image_size=image_size,
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
    script:
        "../scripts/augment_training_set.py"
