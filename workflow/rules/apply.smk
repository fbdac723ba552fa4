# apply: entries of the config: new images labelled by a trained run, and ranked by what to annotate next
# (README: "Use what you trained").
APPLIED_EXAMPLES = 3  # panels (image | overlay | uncertainty) per entry in the report


rule label_images:
    input:
        images=lookup(dpath="apply/{apply}/images", within=config),
        members=applied_members,
        checkpoint=applied_checkpoint,
        check=applied_check,
    output:
        labels=directory("results/applied/{apply}/labels"),
        overlay=directory("results/applied/{apply}/overlay"),
        uncertainty=directory("results/applied/{apply}/uncertainty"),
        examples=report(
            directory("results/applied/{apply}/examples"),
            patterns=["{image}.png"],
            caption="../report/applied.rst",
            category="Applied to new images",
            subcategory="{apply}",
            labels={"entry": "{apply}", "image": "{image}"},
        ),
        predictions="results/applied/{apply}/predictions.csv",
        suggestions=directory("results/applied/{apply}/suggest"),
    log:
        "logs/label_images/{apply}.log",
    benchmark:
        "results/benchmarks/label_images/{apply}.tsv"
    wildcard_constraints:
        apply=name_constraint(list(config["apply"])),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["gpu_per_job"],
    params:
        settings=applied_settings,
        tta=lookup(dpath="apply/{apply}/tta", within=config),
        batch_size=lookup(dpath="apply/{apply}/batch_size", within=config),
        example_count=APPLIED_EXAMPLES,
        top=lookup(dpath="apply/{apply}/suggest_top", within=config),
        progress_folder=lambda wc: f"results/progress/applied/{wc.apply}",
    script:
        "../scripts/label_images.py"
