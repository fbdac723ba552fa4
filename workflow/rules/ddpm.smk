rule train_ddpm:
    input:
        image_files=training_images,
        init=training_init,
    output:
        checkpoint=paths.CHECKPOINT,
        log_json=paths.DDPM_TRAINING_LOG,
        samples=report(
            paths.DDPM_SAMPLES,
            caption="../report/ddpm_samples.rst",
            category="DDPM samples",
            labels={"ddpm": "{ddpm}"},
        ),
    log:
        paths.log("train_ddpm", "{ddpm}"),
    benchmark:
        paths.benchmark("train_ddpm", "{ddpm}")
    wildcard_constraints:
        ddpm=names_with_source("ddpms", "train"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: training_threads
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=training_gpu_resource,
        gres=training_gres,
        nodes=training_nodes,
    params:
        # The resumable whole training state: not an output, so that Snakemake keeps it when a job
        # fails or reruns (the stage starts afresh when the settings it was saved under changed).
        state=lambda wc: paths.DDPM_STATE.format(ddpm=wc.ddpm),
        images=config_setting("ddpms/{ddpm}/images"),
        flags=lambda wc: ddpm_flags(wc.ddpm),
        training=ddpm_training_params,
        non_square=config_setting("ddpms/{ddpm}/training/non_square", default=None),
    script:
        "../scripts/train_ddpm.py"
