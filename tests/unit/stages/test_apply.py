"""Stage apply: a folder of new images labelled by a run's members as the rule calls it (named inputs,
outputs, params), resuming from its progress folder, and failing on an unreadable image."""

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
from ddpmseg.stages.apply import label_images
from ddpmseg.use.suggest import suggest_images
from ddpmseg.base.files import read_table


@pytest.fixture
def rule_arguments(tmp_path, tiny_checkpoint):
    """label_images' keyword arguments as the rule passes them, for entry 'field' over 3 new images."""
    config = resolved_tiny_config()
    config["datasets"]["tiny"]["non_square"] = "center_crop"
    work = tmp_path / "work"
    finished_tiny_run(work, tiny_checkpoint, config, in_features=tiny_feature_width(config, tiny_checkpoint))
    rng = np.random.default_rng(0)
    images = tmp_path / "new"
    images.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, size=(32, 40 + index, 3), dtype=np.uint8)).save(images / f"n{index}.png")
    applied = work / "results/applied/field"
    return {
        "images": str(images),
        "members": [str(work / f"results/models/tiny/final/seed1/member{m}.pt") for m in range(2)],
        "checkpoint": str(work / "resources/checkpoints/tiny_ddpm.pt"),
        "check": str(work / "results/ddpm/tiny_ddpm/check.json"),
        **{name: str(applied / name) for name in ("labels", "overlay", "uncertainty", "examples")},
        "predictions": str(applied / "predictions.csv"),
        "suggestions": str(applied / "suggest"),
        "settings": SegmenterSettings.of_run(config, dataset="tiny", variant="final", seed=1).plain(),
        "tta": False,
        "batch_size": 2,
        "example_count": 2,
        "top": 2,
        "progress_folder": str(work / "results/progress/applied/field"),
    }


def test_every_image_is_labelled_at_its_size_and_the_progress_folder_goes(rule_arguments) -> None:
    label_images(**rule_arguments)
    for index in range(3):
        labels = np.asarray(Image.open(f"{rule_arguments['labels']}/n{index}.png"))
        assert labels.shape == (32, 40 + index)
        assert Image.open(f"{rule_arguments['overlay']}/n{index}.png").size == (40 + index, 32)
    table = read_table(rule_arguments["predictions"])
    assert list(table["image"]) == ["n0.png", "n1.png", "n2.png"] and list(table["width"]) == [40, 41, 42]
    assert sorted(p.name for p in Path(rule_arguments["examples"]).iterdir()) == ["n0.png", "n1.png"]
    assert not Path(rule_arguments["progress_folder"]).exists()


def test_a_killed_job_resumes_with_the_images_it_had_not_labelled(rule_arguments, monkeypatch) -> None:
    args = rule_arguments
    segmenter = run_segmenter(members=args["members"], checkpoint=args["checkpoint"], check=args["check"],
                              settings=args["settings"])
    progress = Path(args["progress_folder"])
    done_before = progress / f"{segmenter.identity}-plain"
    labelling.label_images(segmenter, [Path(args["images"]) / "n1.png"], done_before, tta=False, progress=False)
    with_tta = progress / f"{segmenter.identity}-tta"  # labels of another TTA setting are not reused
    labelling.label_images(segmenter, [Path(args["images"]) / "n0.png"], with_tta, tta=True, progress=False)
    stale = progress / "another-identity-plain"
    stale.mkdir()
    labelled = []
    original = labelling.predictions

    def counting(segmenter, paths, *rest, **kwargs):
        labelled.extend(p.name for p in paths)
        return original(segmenter, paths, *rest, **kwargs)

    monkeypatch.setattr(labelling, "predictions", counting)
    label_images(**args)
    assert labelled == ["n0.png", "n2.png"]
    assert sorted(p.name for p in Path(args["labels"]).iterdir()) == ["n0.png", "n1.png", "n2.png"]
    assert not stale.exists() and not with_tta.exists()


def test_an_unreadable_image_fails_the_job_naming_it(rule_arguments) -> None:
    (Path(rule_arguments["images"]) / "broken.png").write_bytes(b"no image")
    with pytest.raises(DdpmsegError, match=r"1 of 4 images could not be labelled; first: .*broken\.png"):
        label_images(**rule_arguments)
    assert not Path(rule_arguments["labels"]).exists()




def test_the_suggestions_from_the_labelling_pass_equal_a_suggest_run(rule_arguments, tmp_path) -> None:
    """The job ranks the images from its own labelling (with TTA here) without a second DDPM pass: the same
    ranking and contact sheet as `ddpmseg suggest` on the same images."""
    args = {**rule_arguments, "tta": True}
    label_images(**args)
    segmenter = run_segmenter(members=args["members"], checkpoint=args["checkpoint"], check=args["check"],
                              settings=args["settings"])
    images = sorted(Path(args["images"]).iterdir())
    expected = suggest_images(segmenter, images, tmp_path / "alone", top=2, batch_size=args["batch_size"], progress=False)
    ranking = read_table(Path(args["suggestions"]) / "ranking.csv")
    assert list(ranking["image"]) == list(expected["image"]) and list(ranking["rank"]) == [1, 2, 3]
    np.testing.assert_allclose(ranking["uncertainty"], expected["uncertainty"], rtol=1e-5)
    sheets = [np.asarray(Image.open(folder / "contact_sheet.png")) for folder in (Path(args["suggestions"]), tmp_path / "alone")]
    np.testing.assert_array_equal(*sheets)


def test_an_rgb_control_run_labels_without_a_ddpm(rule_arguments, tmp_path) -> None:
    args = {**rule_arguments, "checkpoint": [], "check": [], "settings": {**rule_arguments["settings"], "feature_source": "rgb"}}
    members = []
    for member in range(2):
        torch.manual_seed(member)
        members.append(str(tmp_path / f"rgb{member}.pt"))
        number_class = args["settings"]["number_class"]
        save_member(members[-1], build_classifier(3, number_class).eval(), in_features=3, number_class=number_class,
                    dropout=0.0)
    label_images(**{**args, "members": members})
    assert len(read_table(args["predictions"])) == 3
    assert len(read_table(Path(args["suggestions"]) / "ranking.csv")) == 3
