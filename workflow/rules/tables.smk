rule make_tables:
    input:
        scores=run_scores(),
    output:
        **{name: paths.TABLE.format(table=file) for name, file in paths.TABLES.items()},
    log:
        paths.log("make_tables"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=RUNS,
        variants=VARIANTS,
        datasets=DATASETS,
    script:
        "../scripts/make_tables.py"
