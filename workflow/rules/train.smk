# One job per member, or with training.fused_ensemble one job per run training all its members together
# (the same weights either way, up to float rounding): the outputs and the job's key follow that setting.
rule train_members:
    input:
        stores=train_stores,
    output:
        models=member_outputs(paths.MEMBER),
        logs=member_outputs(paths.MEMBER_LOG),
    log:
        paths.log("train_members", MEMBERS_JOB_KEY),
    benchmark:
        paths.benchmark("train_members", MEMBERS_JOB_KEY)
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 2 if config["training"]["fused_ensemble"] else 1
    resources:
        mem_mb=config["training"]["memory_budget_mb"] + 2048,
        runtime=600 if config["training"]["fused_ensemble"] else 240,
        gpu=config["gpu_per_job"],
    params:
        settings=classifier_params,
        original_images=config_setting("datasets/{dataset}/training_number"),
        number_class=config_setting("datasets/{dataset}/number_class"),
        ignore_label=config_setting("datasets/{dataset}/ignore_label"),
        seed=lambda wc: int(wc.seed),
        members=job_members,
        memory_budget_mb=config["training"]["memory_budget_mb"],
        progress_file=lambda wc: f"{paths.PROGRESS}/{MEMBERS_JOB_KEY}.pt".format(**wc),
    script:
        "../scripts/train_members.py"
