"""ddpmseg.load_bundle: a bundle labelling images from Python as `ddpmseg predict` labels their files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import checkpoint_of, export, new_images
from PIL import Image

import ddpmseg
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.base.files import read_table
from ddpmseg.cli import main


def photo(path, width: int, height: int, orientation: int = 1) -> None:
    """A random RGB image file; with an EXIF orientation tag when not 1."""
    pixels = np.random.default_rng(width * height).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif)


def test_the_api_gives_the_labels_of_ddpmseg_predict(workflow_dir, tmp_path) -> None:
    assert export(workflow_dir, tmp_path / "bundle") == 0
    images = new_images(tmp_path / "new")
    photo(images / "wide.png", 56, 40)
    photo(images / "phone.jpg", 48, 24, orientation=6)  # shown 24 wide, 48 high
    ddpm = checkpoint_of(workflow_dir)
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out"), "--ddpm", str(ddpm),
                 "--non-square", "center_crop"]) == 0
    table = read_table(tmp_path / "out" / "predictions.csv").set_index("image")

    segmenter = ddpmseg.load_bundle(tmp_path / "bundle", ddpm=ddpm, non_square="center_crop")
    assert segmenter.settings.tta_views  # the run's TTA views are in play
    paths = sorted(images.iterdir())  # in the order and batches of `ddpmseg predict`: the same float sums
    for path, result in zip(paths, segmenter.predict_many(paths), strict=True):
        np.testing.assert_array_equal(result.labels, np.asarray(Image.open(tmp_path / "out" / "labels" / f"{path.stem}.png")))
        assert result.uncertainty.shape == result.labels.shape and result.uncertainty.dtype == np.float32
        assert (result.uncertainty >= 0).all() and (result.uncertainty[~result.inside] == 0).all()
        assert result.score == pytest.approx(table.loc[path.name, "uncertainty"], rel=1e-5)  # the table's rounding
    for path in paths:  # one at a time, from a PIL image or an array: the DDPM's batch of one rounds otherwise
        expected = np.asarray(Image.open(tmp_path / "out" / "labels" / f"{path.stem}.png"))
        with Image.open(path) as opened:
            from_pil = segmenter.predict(opened)
            shown = np.asarray(opened.convert("RGB"))
        np.testing.assert_array_equal(from_pil.labels, expected)
        assert from_pil.score == pytest.approx(table.loc[path.name, "uncertainty"], rel=1e-5, abs=1e-6)
        if path.suffix == ".png":  # an array as stored, named as its file
            np.testing.assert_array_equal(segmenter.predict(shown, name=path.name).labels, expected)
    assert segmenter.predict(images / "phone.jpg").labels.shape == (48, 24)
    assert (segmenter.predict(images / "wide.png").labels[:, :8] == 255).all()  # cut off by the center crop


def test_bad_inputs_are_one_clear_error(workflow_dir, tmp_path) -> None:
    assert export(workflow_dir, tmp_path / "bundle", "--include-ddpm") == 0
    with pytest.raises(DdpmsegError, match="non_square: 'stretch' is not one of resize, center_crop"):
        ddpmseg.load_bundle(tmp_path / "bundle", non_square="stretch")
    segmenter = ddpmseg.load_bundle(tmp_path / "bundle", tta=False)
    with pytest.raises(DdpmsegError, match=r"must be \(H, W, 3\) uint8 RGB, got \(32, 32\) float64"):
        segmenter.predict(np.zeros((32, 32)))
    with pytest.raises(DdpmsegError, match=r"image\.png: image is 40x32, not square; choose load_bundle\(\.\.\., non_square"):
        segmenter.predict(np.zeros((32, 40, 3), np.uint8))
    labels = segmenter.predict_many([np.zeros((32, 32, 3), np.uint8)] * 3)
    assert len(labels) == 3 and all(np.array_equal(result.labels, labels[0].labels) for result in labels)
