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
        number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
        ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
        class_names=lookup(
            dpath="datasets/{dataset}/class_names", within=config, default=None
        ),
    script:
        "../scripts/score_predictions.py"
