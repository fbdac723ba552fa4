rule make_report_figures:
    input:
        miou_csv="results/tables/miou.csv",
        per_class_csv="results/tables/per_class.csv",
        per_image_csv="results/tables/per_image.csv",
        member_logs=[
            f"results/models/{r['dataset']}/{r['variant']}/seed{r['seed']}/member{r['member']}.json"
            for r in member_runs()
        ],
        predictions=[
            f"results/predictions/{r['dataset']}/{r['variant']}/seed{r['seed']}"
            for r in prediction_runs()
        ],
        benchmarks=benchmark_files(),
    output:
        miou=report(
            "results/report/tables/miou.html",
            caption="../report/miou.rst",
            category="Tables",
            labels={"table": "mIoU per variant and dataset"},
        ),
        per_class_table=report(
            "results/report/tables/per_class_iou.html",
            caption="../report/per_class_table.rst",
            category="Tables",
            labels={"table": "IoU per class"},
        ),
        resources=report(
            "results/report/tables/resources.html",
            caption="../report/resources.rst",
            category="Resources",
            labels={"table": "wall time and peak memory per rule"},
        ),
        resources_csv="results/report/tables/resources.csv",
        per_class=[
            report(
                f"results/report/per_class_iou/{d}.png",
                caption="../report/per_class_iou.rst",
                category="IoU per class",
                labels={"dataset": d},
            )
            for d in DATASETS
        ],
        curves=[
            report(
                f"results/report/training_curves/{d}/{v}.png",
                caption="../report/training_curves.rst",
                category="Training curves",
                subcategory=d,
                labels={"dataset": d, "variant": v},
            )
            for d in DATASETS
            for v in VARIANTS
        ],
        examples=[
            report(
                f"results/report/examples/{d}/{v}/{rank}.png",
                caption="../report/examples.rst",
                category="Example predictions",
                subcategory=d,
                labels={"dataset": d, "variant": v, "example": rank},
            )
            for d in DATASETS
            for v in VARIANTS
            for rank in ("best", "worst")
        ],
    log:
        "logs/make_report_figures.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        member_runs=member_runs(),
        prediction_runs=prediction_runs(),
        datasets=DATASETS,
        variants=VARIANTS,
        class_names={d: config["datasets"][d].get("class_names") for d in DATASETS},
        palettes={d: config["datasets"][d].get("palette") for d in DATASETS},
        number_class={d: config["datasets"][d]["number_class"] for d in DATASETS},
    script:
        "../scripts/make_report_figures.py"
