if config["training"]["fused_ensemble"]:

    rule train_ensemble:
        input:
            stores=train_stores,
        output:
            models=expand(
                "results/models/{{dataset}}/{{variant}}/seed{{seed}}/member{member}.pt",
                member=MEMBERS,
            ),
            logs=expand(
                "results/models/{{dataset}}/{{variant}}/seed{{seed}}/member{member}.json",
                member=MEMBERS,
            ),
        log:
            "logs/train_ensemble/{dataset}/{variant}/seed{seed}.log",
        benchmark:
            "results/benchmarks/train_ensemble/{dataset}/{variant}/seed{seed}.tsv"
        conda:
            "../../envs/ddpmseg.yaml"
        threads: 2
        resources:
            mem_mb=config["training"]["memory_budget_mb"] + 2048,
            runtime=600,
            gpu=config["gpu_per_job"],
        params:
            settings=lambda wc: classifier_settings(
                variant_settings(config, wc.variant)
            ),
            original_images=lookup(
                dpath="datasets/{dataset}/training_number", within=config
            ),
            number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
            ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
            seed=lambda wc: int(wc.seed),
            members=MEMBERS,
            memory_budget_mb=config["training"]["memory_budget_mb"],
            progress_file=lambda wc: f"results/progress/{wc.dataset}/{wc.variant}/seed{wc.seed}/ensemble.pt",
        script:
            "../scripts/train_ensemble.py"

else:

    rule train_member:
        input:
            stores=train_stores,
        output:
            models=["results/models/{dataset}/{variant}/seed{seed}/member{member}.pt"],
            logs=["results/models/{dataset}/{variant}/seed{seed}/member{member}.json"],
        log:
            "logs/train_member/{dataset}/{variant}/seed{seed}/member{member}.log",
        benchmark:
            "results/benchmarks/train_member/{dataset}/{variant}/seed{seed}/member{member}.tsv"
        conda:
            "../../envs/ddpmseg.yaml"
        threads: 1
        resources:
            mem_mb=config["training"]["memory_budget_mb"] + 2048,
            runtime=240,
            gpu=config["gpu_per_job"],
        params:
            settings=lambda wc: classifier_settings(
                variant_settings(config, wc.variant)
            ),
            original_images=lookup(
                dpath="datasets/{dataset}/training_number", within=config
            ),
            number_class=lookup(dpath="datasets/{dataset}/number_class", within=config),
            ignore_label=lookup(dpath="datasets/{dataset}/ignore_label", within=config),
            seed=lambda wc: int(wc.seed),
            members=lambda wc: [int(wc.member)],
            memory_budget_mb=config["training"]["memory_budget_mb"],
            progress_file=lambda wc: f"results/progress/{wc.dataset}/{wc.variant}/seed{wc.seed}/member{wc.member}.pt",
        script:
            "../scripts/train_member.py"
