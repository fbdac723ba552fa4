"""A diffusers DDPM (a tiny random UNet2DModel and DDPMScheduler saved by save_pretrained, no network) as the
tiny demo's feature source, through the real snakemake to the tables, and a bundle holding the folder that
labels the test images as the workflow did; a changed file of its folder reruns from its validation; blocks beyond its UNet
stop the parse in one line. Small on purpose (one seed, one member, one epoch, one shard): CI's time is short."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CONFIG, dry_run, make_diffusers_folder, snakemake
from PIL import Image

from ddpmseg.base.files import load_json
from ddpmseg.cli import main
from ddpmseg.diffusion.diffusers_folder import file_digests, folder_digest, folder_files
from ddpmseg.features.store import FeatureStore

pytestmark = pytest.mark.workflow

pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install -e '.[diffusers]'")


def _config() -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["tiny"]["ddpm"] = "hub"
    config["ddpms"] = {"hub": {"source": "diffusers", "path": "hub-ddpm"}}  # relative to the working directory
    config["features"].update(blocks=[1, 2], shard_size=8)  # the 5 training images in one shard
    config["variants"] = {"baseline": {}}
    config["variant_defaults"] = {"max_epochs": 1, "epochs_before_stopping": 1, "patience": 5}
    config["seeds"], config["ensemble_size"] = [0], 1
    return config


def test_a_diffusers_folder_is_the_demos_feature_source_end_to_end(tmp_path, capsys) -> None:
    folder = make_diffusers_folder(tmp_path / "hub-ddpm")
    config = _config()

    result = snakemake(tmp_path, config, "results/tables/miou.csv", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (tmp_path / "resources" / "checkpoints").exists()  # nothing downloaded or trained
    summary = pd.read_csv(tmp_path / "results/tables/miou.csv")
    assert list(zip(summary["dataset"], summary["variant"])) == [("tiny", "baseline")]
    assert summary["mean"].between(0, 100).all()
    check = load_json(tmp_path / "results/ddpm/hub/check.json")
    assert check["sha256"] == folder_digest(folder) and check["files"] == file_digests(folder)
    assert check["flags"]["library"] == "diffusers" and check["decoder_blocks"] == 4
    store = FeatureStore(tmp_path / "results/features/tiny/train/noise0/shard0.zarr")
    assert store.attrs["checkpoint_sha256"] == check["sha256"] and len(store) == 5
    assert store.feature_dim == 2 * (64 + 32)  # steps x channels of blocks 1 and 2 (python -m ddpmseg.blocks)

    # a bundle with the folder in it labels the test images as the workflow's test prediction did
    bundle = tmp_path / "run.tar"
    assert main(["export", "--dataset", "tiny", "--variant", "baseline", "--seed", "0", "--workdir", str(tmp_path),
                 "--config", "test-config.yaml", "--out", str(bundle), "--tar", "--include-ddpm"]) == 0
    test_images = tmp_path / "resources/datasets/tiny/real/test"
    assert main(["predict", str(bundle), str(test_images), "--out", str(tmp_path / "out")]) == 0
    assert "3 labelled" in capsys.readouterr().out
    for image in sorted(test_images.glob("*.png")):
        by_bundle = np.asarray(Image.open(tmp_path / "out/labels" / image.name))
        by_workflow = np.load(tmp_path / "results/predictions/tiny/baseline/seed0/labels" / f"{image.stem}.npy")
        assert np.array_equal(by_bundle, by_workflow), image.name

    # a bundle that references the folder names it and takes it, or a copy of it in the hub's flat layout, and
    # no other
    referenced = tmp_path / "referenced"
    assert main(["export", "--dataset", "tiny", "--variant", "baseline", "--seed", "0", "--workdir", str(tmp_path),
                 "--config", "test-config.yaml", "--out", str(referenced)]) == 0
    manifest = load_json(referenced / "manifest.json")["ddpm"]
    assert manifest["file"] is None and manifest["sha256"] == check["sha256"]
    assert manifest["where"] == {"source": "diffusers", "folder_name": "hub-ddpm", "files": check["files"]}
    flat = tmp_path / "flat"
    flat.mkdir()
    for source, name in zip(folder_files(folder), ("config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json")):
        shutil.copyfile(source, flat / name)
    assert main(["predict", str(referenced), str(test_images), "--out", str(tmp_path / "out-flat"), "--ddpm", str(flat)]) == 0
    for image in sorted(test_images.glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out-flat/labels" / image.name)),
                              np.asarray(Image.open(tmp_path / "out/labels" / image.name))), image.name
    other = make_diffusers_folder(tmp_path / "other", seed=1)
    assert folder_digest(other) != folder_digest(folder)
    capsys.readouterr()
    assert main(["predict", str(referenced), str(test_images), "--out", str(tmp_path / "out-other"), "--ddpm", str(other)]) == 1
    assert f"DDPM checkpoint sha256 {folder_digest(other)} differs from the bundle's {check['sha256']}" in capsys.readouterr().err

    # other weights under the same configs: its validation and everything after it rerun
    shutil.copyfile(other / "unet/diffusion_pytorch_model.safetensors", folder / "unet/diffusion_pytorch_model.safetensors")
    jobs = dry_run(tmp_path, config)
    assert {"validate_ddpm", "extract_features", "train_members", "predict_test_shard"} <= set(jobs)
    assert "validate_dataset" not in jobs and "generate_demo_dataset" not in jobs

    # blocks beyond the folder's UNet stop the parse with one line
    config["features"]["blocks"] = [1, 4]
    result = snakemake(tmp_path, config, "-n", timeout=120)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert lines[-1] == ("config: features.blocks: block 4 is beyond the model's 4 decoder blocks (0..3), of DDPM hub "
                         "(python -m ddpmseg.blocks CONFIG hub lists its blocks)")
