rule score_predictions:
    input:
        predictions=paths.PREDICTIONS,
        dataset=dataset_inputs,
    output:
        summary=paths.score_table("summary"),
        per_class=paths.score_table("per_class"),
        per_image=paths.score_table("per_image"),
    log:
        paths.log("score_predictions", paths.RUN),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        split=test_split,
        testing_number=config_setting("datasets/{dataset}/testing_number"),
        image_size=image_size,
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
        class_names=config_setting("datasets/{dataset}/class_names", default=None),
    script:
        "../scripts/score_predictions.py"
