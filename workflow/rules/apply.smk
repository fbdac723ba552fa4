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
        labels=directory(f"{paths.APPLIED}/labels"),
        overlay=directory(f"{paths.APPLIED}/overlay"),
        uncertainty=directory(f"{paths.APPLIED}/uncertainty"),
        examples=report(
            directory(f"{paths.APPLIED}/examples"),
            patterns=["{image}.png"],
            caption="../report/applied.rst",
            category="Applied to new images",
            subcategory="{apply}",
            labels={"entry": "{apply}", "image": "{image}"},
        ),
        predictions=f"{paths.APPLIED}/predictions.csv",
        suggestions=directory(f"{paths.APPLIED}/suggest"),
    log:
        paths.log("label_images", "{apply}"),
    benchmark:
        paths.benchmark("label_images", "{apply}")
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
        progress_folder=lambda wc: f"{paths.PROGRESS}/applied/{wc.apply}",
    script:
        "../scripts/label_images.py"
