"""Stage apply: a folder of new images labelled by a run's members shard by shard as the rules call them (named
inputs, outputs, params), resuming from its progress folder, failing on an unreadable image, and gathered into
the same outputs as one labelling of the whole folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import finished_tiny_run, resolved_tiny_config, tiny_feature_width
from PIL import Image

from ddpmseg.use import labelling
from ddpmseg.use.run import run_segmenter
from ddpmseg.use.settings import SegmenterSettings
from ddpmseg.classifier.mlp import build_classifier, save_member
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.data.listing import image_files, image_shards
from ddpmseg.stages.apply import gather_labels, label_images
from ddpmseg.use.suggest import suggest_images
from ddpmseg.base.files import read_table


@pytest.fixture
def entry(tmp_path, tiny_checkpoint):
    """An apply: entry 'field' over 3 new images of a finished tiny run: the rules' settings."""
    config = resolved_tiny_config()
    config["datasets"]["tiny"]["non_square"] = "center_crop"
    work = tmp_path / "work"
    finished_tiny_run(work, tiny_checkpoint, config, in_features=tiny_feature_width(config, tiny_checkpoint))
    rng = np.random.default_rng(0)
    images = tmp_path / "new"
    images.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, size=(32, 40 + index, 3), dtype=np.uint8)).save(images / f"n{index}.png")
    return {
        "images": images,
        "work": work,
        "run": {
            "members": [str(work / f"results/models/tiny/final/seed1/member{m}.pt") for m in range(2)],
            "checkpoint": str(work / "resources/checkpoints/tiny_ddpm.pt"),
            "check": str(work / "results/ddpm/tiny_ddpm/check.json"),
            "settings": SegmenterSettings.of_run(config, dataset="tiny", variant="final", seed=1).plain(),
            "tta": False,
            "batch_size": 2,
            "non_square_setting": "apply.field.non_square",
        },
    }


def outputs(folder: Path) -> dict:
    """gather_labels' outputs in ``folder``, as the rule names them."""
    return {
        **{name: str(folder / name) for name in ("labels", "overlay", "uncertainty", "examples")},
        "predictions": str(folder / "predictions.csv"),
        "suggestions": str(folder / "suggest"),
    }


def label_and_gather(entry, out: Path, *, shard_size: int = 500, **changes) -> dict:
    """The entry's images labelled shard by shard (label_images) and gathered (gather_labels) into ``out``."""
    run = {**entry["run"], **changes}
    shards = image_shards(image_files([entry["images"]]), shard_size)
    folders = []
    for index, images in shards.items():
        folders.append(str(out / "shards" / f"shard{index}"))
        label_images(images=[str(p) for p in images], labelling_folder=folders[-1],
                     progress_folder=str(entry["work"] / f"results/progress/applied/field/shard{index}"),
                     **{key: run[key] for key in ("members", "checkpoint", "check", "settings", "tta", "batch_size",
                                                    "non_square_setting")})
    gather_labels(shards=folders, shard_images=[[str(p) for p in images] for images in shards.values()],
                  settings=run["settings"], example_count=2, top=2, **outputs(out))
    return outputs(out)


def test_every_image_is_labelled_at_its_size_and_the_progress_folder_goes(entry, tmp_path) -> None:
    files = label_and_gather(entry, tmp_path / "applied")
    for index in range(3):
        labels = np.asarray(Image.open(f"{files['labels']}/n{index}.png"))
        assert labels.shape == (32, 40 + index)
        assert Image.open(f"{files['overlay']}/n{index}.png").size == (40 + index, 32)
    table = read_table(files["predictions"])
    assert list(table["image"]) == ["n0.png", "n1.png", "n2.png"] and list(table["width"]) == [40, 41, 42]
    assert sorted(p.name for p in Path(files["examples"]).iterdir()) == ["n0.png", "n1.png"]
    assert not (entry["work"] / "results/progress/applied/field/shard0").exists()


def test_shards_gather_into_the_files_of_one_labelling_of_the_folder(entry, tmp_path) -> None:
    """One image per shard or all in one: the same files, byte for byte (one image per DDPM pass, so that a
    batch's other images cannot change the features' last bits); the labels are hard links to the shards'."""
    for index in range(3, 6):
        Image.fromarray(np.full((36, 30, 3), 40 * index, np.uint8)).save(entry["images"] / f"n{index}.png")
    one = label_and_gather(entry, tmp_path / "one", batch_size=1)
    sharded = label_and_gather(entry, tmp_path / "sharded", shard_size=1, batch_size=1)
    assert len(list((tmp_path / "sharded" / "shards").iterdir())) > 1
    for name in one:
        first, second = Path(one[name]), Path(sharded[name])
        if first.is_file():
            assert first.read_bytes() == second.read_bytes(), name
            continue
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file()), name
        for file in files:
            assert (first / file).read_bytes() == (second / file).read_bytes(), (name, file)
    label = Path(sharded["labels"]) / "n0.png"
    assert label.stat().st_nlink == 2  # a hard link to the shard's file, not a copy


def test_a_killed_job_resumes_with_the_images_it_had_not_labelled(entry, monkeypatch) -> None:
    run = entry["run"]
    segmenter = run_segmenter(members=run["members"], checkpoint=run["checkpoint"], check=run["check"],
                              settings=run["settings"])
    progress = entry["work"] / "results/progress/applied/field/shard0"
    done_before = progress / f"{segmenter.identity}-plain"
    labelling.label_images(segmenter, [entry["images"] / "n1.png"], done_before, tta=False, progress=False)
    with_tta = progress / f"{segmenter.identity}-tta"  # labels of another TTA setting are not reused
    labelling.label_images(segmenter, [entry["images"] / "n0.png"], with_tta, tta=True, progress=False)
    stale = progress / "another-identity-plain"
    stale.mkdir()
    labelled = []
    original = labelling.predictions

    def counting(segmenter, paths, *rest, **kwargs):
        labelled.extend(p.name for p in paths)
        return original(segmenter, paths, *rest, **kwargs)

    monkeypatch.setattr(labelling, "predictions", counting)
    out = entry["work"] / "results/applied/field/shards/shard0"
    label_images(images=[str(p) for p in sorted(entry["images"].iterdir())], labelling_folder=str(out),
                 progress_folder=str(progress), **run)
    assert labelled == ["n0.png", "n2.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["n0.png", "n1.png", "n2.png"]
    assert not stale.exists() and not with_tta.exists() and not progress.exists()


def test_an_unreadable_image_fails_the_job_naming_it(entry, tmp_path) -> None:
    (entry["images"] / "broken.png").write_bytes(b"no image")
    with pytest.raises(DdpmsegError, match=r"1 of 4 images could not be labelled; first: .*broken\.png"):
        label_and_gather(entry, tmp_path / "applied")
    assert not (tmp_path / "applied" / "labels").exists()


def test_the_suggestions_from_the_labelling_pass_equal_a_suggest_run(entry, tmp_path) -> None:
    """The entry ranks the images from its own labelling (with TTA here) without a second DDPM pass: the same
    ranking and contact sheet as `ddpmseg suggest` on the same images."""
    files = label_and_gather(entry, tmp_path / "applied", tta=True)
    run = entry["run"]
    segmenter = run_segmenter(members=run["members"], checkpoint=run["checkpoint"], check=run["check"],
                              settings=run["settings"])
    images = sorted(entry["images"].iterdir())
    expected = suggest_images(segmenter, images, tmp_path / "alone", top=2, batch_size=run["batch_size"], progress=False)
    ranking = read_table(Path(files["suggestions"]) / "ranking.csv")
    assert list(ranking["image"]) == list(expected["image"]) and list(ranking["rank"]) == [1, 2, 3]
    np.testing.assert_allclose(ranking["uncertainty"], expected["uncertainty"], rtol=1e-5)
    sheets = [np.asarray(Image.open(folder / "contact_sheet.png")) for folder in (Path(files["suggestions"]), tmp_path / "alone")]
    np.testing.assert_array_equal(*sheets)


def test_an_rgb_control_run_labels_without_a_ddpm(entry, tmp_path) -> None:
    members = []
    number_class = entry["run"]["settings"]["number_class"]
    for member in range(2):
        torch.manual_seed(member)
        members.append(str(tmp_path / f"rgb{member}.pt"))
        save_member(members[-1], build_classifier(3, number_class).eval(), in_features=3, number_class=number_class,
                    dropout=0.0)
    files = label_and_gather(entry, tmp_path / "applied", checkpoint=[], check=[], members=members,
                             settings={**entry["run"]["settings"], "feature_source": "rgb"})
    assert len(read_table(files["predictions"])) == 3
