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
        training_number=lambda wc: dataset_config(wc)["training_number"],
        image_size=image_size,
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
    script:
        "../scripts/augment_training_set.py"


rule make_tta_view:
    input:
        dataset=dataset_inputs,
        summary="results/datasets/{dataset}/summary.json",
    output:
        images=directory("results/tta/{dataset}/{ttaset}"),
    log:
        "logs/make_tta_view/{dataset}/{ttaset}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        split=lambda wc: split_source(wc.dataset, "test"),
        view=lambda wc: tta_view_of(wc.ttaset),
        seed=lambda wc: int(wc.ttaset.split("-")[1][1:]),
        testing_number=lambda wc: dataset_config(wc)["testing_number"],
        image_size=image_size,
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
    script:
        "../scripts/make_tta_view.py"
