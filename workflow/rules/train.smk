rule train_member:
    input:
        stores=train_stores,
    output:
        model="results/models/{dataset}/{variant}/seed{seed}/member{member}.pt",
        log_json="results/models/{dataset}/{variant}/seed{seed}/member{member}.json",
    log:
        "logs/train_member/{dataset}/{variant}/seed{seed}/member{member}.log",
    benchmark:
        "results/benchmarks/train_member/{dataset}/{variant}/seed{seed}/member{member}.tsv"
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=config["gpu_per_job"],
    params:
        settings=lambda wc: variant_settings(config, wc.variant),
        number_class=lambda wc: dataset_config(wc)["number_class"],
        ignore_label=lambda wc: dataset_config(wc)["ignore_label"],
        seed=lambda wc: int(wc.seed),
        member=lambda wc: int(wc.member),
    script:
        "../scripts/train_member.py"
