rule predict_ensemble:
    input:
        stores=test_stores,
        tta_stores=tta_stores,
        tta_folders=tta_folders,
        models=ensemble_members,
    output:
        predictions=directory(paths.PREDICTIONS),
    log:
        paths.log("predict_ensemble", paths.RUN),
    benchmark:
        paths.benchmark("predict_ensemble", paths.RUN)
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        tta_views=lambda wc: tta_views(config, wc.variant),
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
        palette=lookup(dpath="datasets/{dataset}/palette", within=config, default=None),
    script:
        "../scripts/predict_ensemble.py"
