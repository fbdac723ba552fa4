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
        training_number=config_setting("datasets/{dataset}/training_number"),
        image_size=image_size,
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
    script:
        "../scripts/augment_training_set.py"
