# The test split predicted by every run: from features computed in memory, one job per shard of test images
# and feature folder (noise seed, or rgb) serving every run of that folder, gathered per run
# (features.store_test false, the default); or from the test split's stores, one job per run.
if config["features"]["store_test"]:

    rule predict_ensemble:
        input:
            stores=test_stores,
            tta_stores=tta_stores,
            tta_folders=tta_folders,
            models=ensemble_members,
        output:
            predictions=directory(paths.PREDICTIONS),
        log:
            paths.log("predict_ensemble", paths.RUN),
        benchmark:
            paths.benchmark("predict_ensemble", paths.RUN)
        conda:
            "../../envs/ddpmseg.yaml"
        threads: 2
        resources:
            mem_mb=8000,
            runtime=60,
        params:
            tta_views=lambda wc: tta_views(config, wc.variant),
            number_class=config_setting("datasets/{dataset}/number_class"),
            ignore_label=config_setting("datasets/{dataset}/ignore_label"),
            palette=config_setting("datasets/{dataset}/palette", default=None),
        script:
            "../scripts/predict_ensemble.py"

else:

    rule predict_test_shard:
        input:
            dataset=dataset_inputs,
            summary=paths.DATASET_SUMMARY,
            checkpoint=shard_checkpoint,
            check=shard_check,
            views=lambda wc: list(shard_tta_folders(wc).values()),
            models=shard_members,
        output:
            predictions=temp(directory(paths.TEST_SHARD)),
        log:
            paths.log("predict_test_shard", paths.job_key(paths.TEST_SHARD)),
        benchmark:
            paths.benchmark("predict_test_shard", paths.job_key(paths.TEST_SHARD))
        conda:
            "../../envs/ddpmseg.yaml"
        threads: 2
        resources:
            mem_mb=8000,
            runtime=120,
            gpu=shard_gpu,
        params:
            runs=shard_runs,
            imagesets=shard_imagesets,
            tta_folders=shard_tta_folders,
            shard=test_shard_range,
            testing_number=config_setting("datasets/{dataset}/testing_number"),
            flags=lambda wc: ddpm_flags(ddpm_name(wc)),
            steps=config["features"]["steps"],
            blocks=sorted(config["features"]["blocks"]),
            noise_seed=shard_noise_seed,
            batch_size=config["features"]["batch_size"],
            number_class=config_setting("datasets/{dataset}/number_class"),
            ignore_label=config_setting("datasets/{dataset}/ignore_label"),
            palette=config_setting("datasets/{dataset}/palette", default=None),
        script:
            "../scripts/predict_test_shard.py"

    rule collect_predictions:
        input:
            shards=run_test_shards,
        output:
            predictions=directory(paths.PREDICTIONS),
        log:
            paths.log("collect_predictions", paths.RUN),
        conda:
            "../../envs/ddpmseg.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            variant=lambda wc: wc.variant,
            seed=lambda wc: int(wc.seed),
        script:
            "../scripts/collect_predictions.py"
