rule score_predictions:
    input:
        predictions=paths.PREDICTIONS,
        stores=test_stores,
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
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
        class_names=lookup(
            dpath="datasets/{dataset}/class_names", within=config, default=None
        ),
    script:
        "../scripts/score_predictions.py"
