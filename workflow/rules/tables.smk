rule make_tables:
    input:
        scores=run_scores(),
    output:
        markdown="results/tables/miou.md",
        miou="results/tables/miou.csv",
        per_seed="results/tables/per_seed.csv",
        per_class="results/tables/per_class.csv",
        per_image="results/tables/per_image.csv",
    log:
        "logs/make_tables.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=[
            {"dataset": d, "variant": v, "seed": s}
            for d in DATASETS
            for v in VARIANTS
            for s in SEEDS
        ],
        variants=VARIANTS,
        datasets=DATASETS,
    script:
        "../scripts/make_tables.py"
