rule train_ddpm:
    input:
        image_files=training_images,
        init=training_init,
    output:
        checkpoint="resources/checkpoints/{ddpm}.pt",
        log_json="results/ddpm/{ddpm}/training.json",
        samples=report(
            "results/ddpm/{ddpm}/samples.png",
            caption="../report/ddpm_samples.rst",
            category="DDPM samples",
            labels={"ddpm": "{ddpm}"},
        ),
    log:
        "logs/train_ddpm/{ddpm}.log",
    benchmark:
        "results/benchmarks/train_ddpm/{ddpm}.tsv"
    wildcard_constraints:
        ddpm=names_with_source("ddpms", "train"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: training_threads
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=lambda wc: ddpm_training_gpus(config, wc.ddpm),
    params:
        # The resumable whole training state: not an output, so that Snakemake keeps it when a job
        # fails or reruns (the stage starts afresh when the settings it was saved under changed).
        state="results/ddpm/{ddpm}/state.pt",
        images=lookup(dpath="ddpms/{ddpm}/images", within=config),
        flags=lambda wc: ddpm_flags(wc.ddpm),
        training=lambda wc: ddpm_training_settings(config["ddpms"][wc.ddpm]),
        non_square=lambda wc: config["ddpms"][wc.ddpm]["training"].get("non_square"),
    script:
        "../scripts/train_ddpm.py"
