rule download_archive:
    output:
        archive="resources/archives/{archive}",
    log:
        "logs/download_archive/{archive}.log",
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    params:
        verify=lambda wc: archive_download(wc.archive),
        retries=config["download"]["retries"],
        backoff_s=config["download"]["backoff_s"],
        timeout_s=config["download"]["timeout_s"],
    script:
        "../scripts/download_archive.py"


rule extract_dataset:
    input:
        archive=lambda wc: archive_path(wc.dataset),
    output:
        dataset=directory("resources/datasets/{dataset}"),
    log:
        "logs/extract_dataset/{dataset}.log",
    wildcard_constraints:
        dataset=names_with_source("datasets", "registry"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        prefix=lookup(dpath="datasets/{dataset}/archive_prefix", within=config),
        verify=lambda wc: archive_download(archive_path(wc.dataset).rsplit("/", 1)[-1]),
    script:
        "../scripts/extract_dataset.py"


rule download_checkpoint:
    output:
        checkpoint="resources/checkpoints/{ddpm}.pt",
    log:
        "logs/download_checkpoint/{ddpm}.log",
    wildcard_constraints:
        ddpm=names_with_source("ddpms", "registry"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=240,
    params:
        verify=lambda wc: checkpoint_download(wc.ddpm),
        retries=config["download"]["retries"],
        backoff_s=config["download"]["backoff_s"],
        timeout_s=config["download"]["timeout_s"],
    script:
        "../scripts/download_checkpoint.py"
