rule download_archive:
    output:
        archive=paths.ARCHIVE,
    log:
        paths.log("download_archive", "{archive}"),
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
        dataset=directory(paths.DATASET),
    log:
        paths.log("extract_dataset", "{dataset}"),
    wildcard_constraints:
        dataset=names_with_source("datasets", "registry"),
    conda:
        "../../envs/ddpmseg.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        prefix=config_setting("datasets/{dataset}/archive_prefix"),
        verify=lambda wc: archive_download(Path(archive_path(wc.dataset)).name),
    script:
        "../scripts/extract_dataset.py"


rule download_checkpoint:
    output:
        checkpoint=paths.CHECKPOINT,
    log:
        paths.log("download_checkpoint", "{ddpm}"),
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
