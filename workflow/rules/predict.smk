rule predict_ensemble:
    input:
        stores=test_stores,
        tta_stores=tta_stores,
        tta_folders=tta_folders,
        members=ensemble_members,
    output:
        predictions=directory("results/predictions/{dataset}/{variant}/seed{seed}"),
    log:
        "logs/predict_ensemble/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/predict_ensemble/{dataset}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        tta_views=lambda wc: tta_views(config, wc.variant),
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
        palette=lambda wc: dataset_config(wc).get("palette"),
    script:
        "../scripts/predict_ensemble.py"


rule score_predictions:
    input:
        predictions="results/predictions/{dataset}/{variant}/seed{seed}",
        stores=test_stores,
    output:
        summary="results/scores/{dataset}/{variant}/seed{seed}/summary.csv",
        per_class="results/scores/{dataset}/{variant}/seed{seed}/per_class.csv",
        per_image="results/scores/{dataset}/{variant}/seed{seed}/per_image.csv",
    log:
        "logs/score_predictions/{dataset}/{variant}/seed{seed}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
        class_names=lambda wc: dataset_config(wc).get("class_names"),
    script:
        "../scripts/score_predictions.py"
