rule make_report_figures:
    input:
        miou_csv=rules.make_tables.output.miou,
        per_class_csv=rules.make_tables.output.per_class,
        per_image_csv=rules.make_tables.output.per_image,
        member_logs=[paths.MEMBER_LOG.format(**run) for run in member_runs()],
        predictions=[paths.PREDICTIONS.format(**run) for run in RUNS],
        benchmarks=benchmark_files(),
    output:
        miou=report(
            f"{paths.REPORT}/tables/miou.html",
            caption="../report/miou.rst",
            category="Tables",
            labels={"table": "mIoU per variant and dataset"},
        ),
        per_class_table=report(
            f"{paths.REPORT}/tables/per_class_iou.html",
            caption="../report/per_class_table.rst",
            category="Tables",
            labels={"table": "IoU per class"},
        ),
        resources=report(
            f"{paths.REPORT}/tables/resources.html",
            caption="../report/resources.rst",
            category="Resources",
            labels={"table": "wall time and peak memory per rule"},
        ),
        resources_csv=f"{paths.REPORT}/tables/resources.csv",
        per_class=[
            report(
                f"{paths.REPORT}/per_class_iou/{d}.png",
                caption="../report/per_class_iou.rst",
                category="IoU per class",
                labels={"dataset": d},
            )
            for d in DATASETS
        ],
        curves=[
            report(
                f"{paths.REPORT}/training_curves/{d}/{v}.png",
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
                f"{paths.REPORT}/examples/{d}/{v}/{rank}.png",
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
        paths.log("make_report_figures"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        member_runs=member_runs(),
        prediction_runs=RUNS,
        datasets=DATASETS,
        variants=VARIANTS,
        class_names={d: config["datasets"][d].get("class_names") for d in DATASETS},
        palettes={d: config["datasets"][d].get("palette") for d in DATASETS},
        number_class={d: config["datasets"][d]["number_class"] for d in DATASETS},
    script:
        "../scripts/make_report_figures.py"
