# apply: entries of the config: new images labelled by a trained run, one job per shard of images, and ranked
# by what to annotate next (README: "Use what you trained").
APPLIED_EXAMPLES = 3  # panels (image | overlay | uncertainty) per entry in the report


rule label_images:
    input:
        images=applied_shard_images,
        members=applied_members,
        checkpoint=applied_checkpoint,
        check=applied_check,
    output:
        labelling_folder=directory(paths.APPLIED_SHARD),
    log:
        paths.log("label_images", paths.job_key(paths.APPLIED_SHARD)),
    benchmark:
        paths.benchmark("label_images", paths.job_key(paths.APPLIED_SHARD))
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
        tta=config_setting("apply/{apply}/tta"),
        batch_size=config_setting("apply/{apply}/batch_size"),
        non_square_setting=lambda wc: f"apply.{wc.apply}.non_square",
        progress_folder=lambda wc: f"{paths.PROGRESS}/applied/{wc.apply}/shard{wc.shard}",
    script:
        "../scripts/label_images.py"


rule gather_labels:
    input:
        shards=applied_shards,
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
        paths.log("gather_labels", "{apply}"),
    wildcard_constraints:
        apply=name_constraint(list(config["apply"])),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        shard_images=applied_shard_image_lists,
        settings=applied_settings,
        example_count=APPLIED_EXAMPLES,
        top=config_setting("apply/{apply}/suggest_top"),
    script:
        "../scripts/gather_labels.py"
