rule make_tta_view:
    input:
        dataset=dataset_inputs,
        summary=paths.DATASET_SUMMARY,
    output:
        images=directory(paths.TTA_VIEW),
    log:
        paths.log("make_tta_view", paths.job_key(paths.TTA_VIEW)),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        split=test_split,
        view=lambda wc: list(parse_tta_set(wc.ttaset).view),
        seed=lambda wc: parse_tta_set(wc.ttaset).seed,
        testing_number=config_setting("datasets/{dataset}/testing_number"),
        image_size=image_size,
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
    script:
        "../scripts/make_tta_view.py"
