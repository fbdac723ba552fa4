"""What to label next: an ensemble trained on an image is surer of it than of a corrupted one, the
ranking says so, and the contact sheet shows the most uncertain images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS, colour_scene
from PIL import Image

import ddpmseg.use.labelling as labelling
from ddpmseg.classifier.mlp import build_classifier, save_member
from ddpmseg.diffusion.flags import model_flags
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.use.settings import SegmenterSettings
from ddpmseg.use.segmenter import make_segmenter
from ddpmseg.use.suggest import (
    CAPTION_HEIGHT,
    GAP,
    THUMBNAIL_HEIGHT,
    suggest_images,
    thumbnail,
)
from ddpmseg.base.files import read_table
from ddpmseg.prediction.visualize import uncertainty_colour_table, uncertainty_legend
from ddpmseg.features.upsample import LayerGroups

SIZE = TINY_FLAGS["image_size"]
SETTINGS = {
    "ddpm_flags": model_flags(TINY_FLAGS),
    "steps": [10, 200],
    "blocks": [0, 2, 3],
    "noise_seed": 0,
    "feature_source": "ddpm",
    "image_size": SIZE,
    "non_square": "resize",
    "number_class": 5,
    "ignore_label": 255,
    "class_names": ["a", "b", "c", "d", "disc"],
    "palette": [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)],
    "tta_views": [],
    "tta_seed": 0,
}


def scene() -> tuple[np.ndarray, np.ndarray]:
    """The four-quadrant scene at the model's size, with region ids 0..4 as classes."""
    image, _ = colour_scene(SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    region = (yy >= SIZE // 2) * 2 + (xx >= SIZE // 2)
    region[(yy - SIZE / 2 + 0.5) ** 2 + (xx - SIZE / 2 + 0.5) ** 2 < (SIZE / 5) ** 2] = 4
    return image, region


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_checkpoint):
    """Three members trained briefly on the scene's DDPM features, and the scene's file."""
    folder = tmp_path_factory.mktemp("trained")
    image, region = scene()
    Image.fromarray(image).save(folder / "scene.png")
    probe = make_segmenter(member_paths=[tiny_checkpoint], ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**SETTINGS))
    layers = labelling.image_layers(probe, [image])[0]
    groups = LayerGroups.from_layers([layer[None] for layer in layers], SIZE)
    pixels = torch.arange(SIZE * SIZE)
    features = groups.features(torch.zeros_like(pixels), pixels // SIZE, pixels % SIZE)
    targets = torch.from_numpy(region.ravel()).long()
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = build_classifier(features.shape[1], 5)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(40):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(features), targets).backward()
            optimizer.step()
        members.append(folder / f"member{seed}.pth")
        save_member(members[-1], model.eval(), in_features=features.shape[1], number_class=5, dropout=0.0)
    segmenter = make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**SETTINGS))
    return segmenter, folder / "scene.png"


def test_trained_image_ranks_below_corrupted_ones(tmp_path, trained, capsys) -> None:
    segmenter, scene_path = trained
    rng = np.random.default_rng(0)
    image, _ = scene()
    noisy = np.clip(image.astype(int) + rng.normal(0, 90, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    images = [scene_path, tmp_path / "noisy.png", tmp_path / "noise.png", tmp_path / "broken.png"]

    ranking = suggest_images(segmenter, images, tmp_path / "out", top=2, batch_size=2, progress=False)
    assert "broken.png: unreadable image" in capsys.readouterr().err
    assert ranking["image"].iloc[-1] == "scene.png"
    assert set(ranking["image"].iloc[:2]) == {"noisy.png", "noise.png"}
    scores = dict(zip(ranking["image"], ranking["uncertainty"], strict=True))
    assert scores["scene.png"] < 0.5 * min(scores["noisy.png"], scores["noise.png"])

    written = read_table(tmp_path / "out" / "ranking.csv")
    assert list(written.columns) == ["rank", "image", "uncertainty"]
    assert list(written["rank"]) == [1, 2, 3] and list(written["image"]) == list(ranking["image"])
    assert written["uncertainty"].is_monotonic_decreasing
    with Image.open(tmp_path / "out" / "contact_sheet.png") as sheet:
        legend = uncertainty_legend(min(sheet.width, 480), bar_height=16, font_size=14)
        assert sheet.height == 2 * (CAPTION_HEIGHT + THUMBNAIL_HEIGHT + GAP) + legend.shape[0]
        sheet_pixels = np.asarray(sheet.convert("RGB"))
    # each row shows its image (then its map): the most uncertain first, the scene not at all
    for row, name in enumerate(ranking["image"].iloc[:2]):
        top = row * (CAPTION_HEIGHT + THUMBNAIL_HEIGHT + GAP) + CAPTION_HEIGHT
        shown = np.asarray(thumbnail(np.asarray(Image.open(tmp_path / name).convert("RGB"))))
        np.testing.assert_array_equal(sheet_pixels[top : top + THUMBNAIL_HEIGHT, : shown.shape[1]], shown)
        beside = sheet_pixels[top : top + THUMBNAIL_HEIGHT, shown.shape[1] + GAP :]
        # its uncertainty on the colour scale, not blank
        colours = {tuple(colour) for colour in uncertainty_colour_table()}
        assert beside.std() > 0 and {tuple(p) for p in beside[:, : shown.shape[1]].reshape(-1, 3)} <= colours


def test_suggest_needs_a_readable_image_and_a_positive_top(tmp_path, trained) -> None:
    segmenter, scene_path = trained
    (tmp_path / "broken.png").write_bytes(b"nope")
    with pytest.raises(DdpmsegError, match="none of the 1 images could be read"):
        suggest_images(segmenter, [tmp_path / "broken.png"], tmp_path / "out", top=1, progress=False)
    with pytest.raises(DdpmsegError, match="--top 0 must be at least 1"):
        suggest_images(segmenter, [scene_path], tmp_path / "out", top=0, progress=False)
