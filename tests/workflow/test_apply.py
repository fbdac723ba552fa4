"""apply: entries of the config plan label_images jobs (one per shard of images) and their gathering (labels and
suggestions) from a trained run, are in the default target, need no DDPM for the RGB control, relabel only the
shard of an added or changed image, and bad entries stop the real snakemake at parse time with one line."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CONFIG, dry_run, snakemake
from PIL import Image

from ddpmseg.cli import main
from ddpmseg.base.files import read_table

pytestmark = pytest.mark.workflow


def image_folder(path, count: int = 3, size: int = 40):
    """New images to label: non-square ones, as a user's would be."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, size=(size, size + 8 * index, 3), dtype=np.uint8)).save(path / f"new{index}.png")
    return path


def apply_config(images, **entry) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["tiny"]["non_square"] = "center_crop"
    config["apply"] = {"field": {"images": str(images), "dataset": "tiny", "variant": "final", "seed": 1, **entry}}
    return config


def test_apply_entries_plan_labelling_and_suggestions_from_the_run(tmp_path) -> None:
    config = apply_config(image_folder(tmp_path / "new"))
    config["apply"]["second"] = {**config["apply"]["field"], "variant": "baseline", "seed": 0}
    jobs = dry_run(tmp_path, config)
    assert jobs["label_images"] == 2 and jobs["gather_labels"] == 2  # one shard each; one pass labels and ranks
    without = copy.deepcopy(config)
    del without["apply"]
    plain = dry_run(tmp_path, without)
    assert "label_images" not in plain and plain["train_members"] == jobs["train_members"]


@pytest.mark.parametrize("files,message", [
    ([], "holds no .png/.jpg/.jpeg images"),
    (["a.png", "a.JPG"], "two images share the name 'a'"),
])
def test_an_apply_folder_without_labellable_images_stops_at_parse_time(tmp_path, files, message) -> None:
    """Not after the training: an empty folder, or two images whose outputs would share a name."""
    images = tmp_path / "new"
    images.mkdir()
    for name in files:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    result = snakemake(tmp_path, apply_config(images), "-n", timeout=120)
    assert result.returncode != 0
    last = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-1]
    assert last.startswith("config: apply.field.images: ") and message in last, last


def test_an_rgb_control_entry_needs_no_ddpm(tmp_path) -> None:
    config = apply_config(image_folder(tmp_path / "new"))
    config["variants"] = {"rgb_control": {"features": "rgb"}}
    config["apply"]["field"]["variant"] = "rgb_control"
    jobs = dry_run(tmp_path, config)
    assert jobs["label_images"] == 1 and jobs["gather_labels"] == 1
    assert not {"train_ddpm", "validate_ddpm", "extract_features"} & set(jobs), jobs


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda e: e.update(variant="nope"), "config: apply.field.variant: 'nope' is not a key of variants"),
        (lambda e: e.update(dataset="nope"), "config: apply.field.dataset: 'nope' is not a key of datasets"),
        (lambda e: e.update(seed=7), "config: apply.field.seed: 7 is not one of seeds [0, 1]"),
        (lambda e: e.update(images="no/such/folder"), "config: apply.field.images: no/such/folder does not exist"),
        (lambda e: e.update(suggest_top=0), "apply.field.suggest_top: 0 is less than the minimum of 1"),
        (lambda e: e.pop("seed"), "apply.field: 'seed' is a required property"),
    ],
)
def test_bad_apply_entries_stop_at_parse_time(tmp_path, edit, message) -> None:
    config = apply_config(image_folder(tmp_path / "new"))
    edit(config["apply"]["field"])
    result = snakemake(tmp_path, config, "-n", timeout=120)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines[-1] == message or message in lines[-1], lines[-5:]


def test_the_demo_runs_apply_entry_labels_its_folder(demo_run) -> None:
    """The session's demo run has an apply entry over the custom dataset's test images (non-square,
    mixed sizes, center_crop): each is labelled at its own size, ranked, and shown in the report."""
    workdir, config = demo_run
    entry = config["apply"]["new_fields"]
    images = sorted(Path(entry["images"]).iterdir())
    applied = workdir / "results/applied/new_fields"
    for image in images:
        width, height = Image.open(image).size
        labels = np.asarray(Image.open(applied / "labels" / f"{image.stem}.png"))
        assert labels.shape == (height, width), image.name
        side = min(width, height)  # center_crop: the margins outside the central square are ignored
        assert (labels == 255).sum() == width * height - side * side
        assert (labels[labels != 255] < 3).all()
    table = read_table(applied / "predictions.csv")
    assert list(table["image"]) == [p.name for p in images]
    assert sorted(read_table(applied / "suggest/ranking.csv")["image"]) == sorted(p.name for p in images)
    assert (applied / "suggest/contact_sheet.png").is_file()
    assert sorted(p.stem for p in (applied / "examples").glob("*.png")) == [p.stem for p in images[:3]]
    assert (workdir / "logs/label_images/new_fields/shards/shard0.log").is_file()  # 3 images: one shard
    assert not (workdir / "results/progress/applied/new_fields/shard0").exists()


def test_an_added_or_changed_image_relabels_only_its_shard(demo_run, tmp_path) -> None:
    workdir, config = demo_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run, symlinks=True)
    config = copy.deepcopy(config)
    config["apply"]["new_fields"] = {**config["apply"]["new_fields"], "images": str(image_folder(tmp_path / "new", 6)),
                                     "shard_size": 2}
    result = snakemake(run, config)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = sorted((run / "results/applied/new_fields/shards").iterdir())
    assert len(shards) > 1
    # Snakemake marks a folder of linked (older) files with a hidden .snakemake_timestamp
    labels = (run / "results/applied/new_fields/labels").iterdir()
    assert sorted(p.name for p in labels if not p.name.startswith(".")) == [f"new{i}.png" for i in range(6)]
    assert dry_run(run, config) == {}
    Image.fromarray(np.zeros((40, 44, 3), np.uint8)).save(tmp_path / "new" / "added.png")
    assert dry_run(run, config) == {"label_images": 1, "gather_labels": 1, "make_report_figures": 1, "all": 1}
    (tmp_path / "new" / "added.png").unlink()
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "new" / "new1.png")  # overwritten in place
    assert dry_run(run, config) == {"label_images": 1, "gather_labels": 1, "make_report_figures": 1, "all": 1}


def test_a_bundle_of_the_demo_run_labels_as_its_apply_entry(demo_run, tmp_path, capsys) -> None:
    """`ddpmseg export` of the run an apply entry uses, then `ddpmseg predict` on the same folder with a
    .tar bundle: the same label PNGs as the workflow's label_images job."""
    workdir, config = demo_run
    entry = config["apply"]["new_fields"]
    bundle = tmp_path / "run.tar"
    assert main(["export", "--dataset", entry["dataset"], "--variant", entry["variant"], "--seed", str(entry["seed"]),
                 "--workdir", str(workdir), "--config", "test-config.yaml", "--out", str(bundle), "--tar"]) == 0
    checkpoint = workdir / "resources/checkpoints/tiny_ddpm.pt"  # a bundle without the DDPM names it, not its path
    assert main(["predict", str(bundle), entry["images"], "--out", str(tmp_path / "out"), "--ddpm", str(checkpoint)]) == 0
    assert "3 labelled" in capsys.readouterr().out
    for image in sorted(Path(entry["images"]).iterdir()):
        by_bundle = np.asarray(Image.open(tmp_path / "out" / "labels" / f"{image.stem}.png"))
        by_workflow = np.asarray(Image.open(workdir / "results/applied/new_fields/labels" / f"{image.stem}.png"))
        assert np.array_equal(by_bundle, by_workflow), image.name
