"""Labelling new images: outputs at the image's own size (resize undone, center-crop margins ignored),
palette PNGs, the table, resume, per-file failures, the folder's identity, TTA mapped back.

Most tests replace the DDPM features by the pixels' RGB values and use a hand-made ensemble whose
logits are those values (class = the dominant channel), so the right labels are known exactly; one test
runs the real tiny UNet end to end.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_FLAGS
from PIL import Image

import ddpmseg.use.labelling as labelling
from ddpmseg.classifier.mlp import build_classifier, load_ensemble, save_member
from ddpmseg.diffusion.model import load_ddpm
from ddpmseg.diffusion.flags import model_flags
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.features.extract import extract_to_store
from ddpmseg.data.listing import image_files
from ddpmseg.use.labelling import label_images, tta_image_index
from ddpmseg.prediction.predict import predict_image, uncertainty_score
from ddpmseg.use.settings import SegmenterSettings
from ddpmseg.use.segmenter import make_segmenter
from ddpmseg.features.store import FeatureStore
from ddpmseg.base.files import read_table
from ddpmseg.data.preprocess import to_original_size

IGNORE = 255
RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)
PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def colour_member(path, in_features: int = 3, number_class: int = 3) -> None:
    """A member whose logits are its first ``number_class`` inputs (values in [0, 1] pass the ReLUs)."""
    model = build_classifier(in_features, number_class).eval()
    with torch.no_grad():
        for linear in (model[0], model[3], model[6]):
            linear.weight.zero_()
            linear.bias.zero_()
            for k in range(number_class):
                linear.weight[k, k] = 1.0
    save_member(path, model, in_features=in_features, number_class=number_class, dropout=0.0)


def segmenter_for(tmp_path, checkpoint, *, members=None, **overrides):
    if members is None:
        members = [tmp_path / "m0.pth", tmp_path / "m1.pth"]
        for path in members:
            colour_member(path)
    settings = {
        "ddpm_flags": model_flags(TINY_FLAGS),
        "steps": [10],
        "blocks": [3],
        "noise_seed": 0,
        "feature_source": "ddpm",
        "image_size": TINY_FLAGS["image_size"],
        "non_square": "resize",
        "number_class": 3,
        "ignore_label": IGNORE,
        "class_names": ["red", "green", "blue"],
        "palette": PALETTE,
        "tta_views": [],
        "tta_seed": 0,
        **overrides,
    }
    return make_segmenter(member_paths=members, ddpm_checkpoint=checkpoint, settings=SegmenterSettings(**settings))


@pytest.fixture
def rgb_features(monkeypatch):
    """DDPM features replaced by each pixel's RGB in [0, 1]; counts the forward batches."""
    calls = []

    def layers(segmenter, images):
        calls.append(len(images))
        return [[torch.from_numpy(np.asarray(image, np.float32) / 255.0)] for image in images]

    monkeypatch.setattr(labelling, "image_layers", layers)
    return calls


def bands(height: int, width: int, colours) -> tuple[np.ndarray, np.ndarray]:
    """Vertical bands of equal width, (image (H, W, 3), class id of each column)."""
    column_class = (np.arange(width) * len(colours) // width).astype(np.int64)
    image = np.array(colours, np.uint8)[column_class][None].repeat(height, axis=0)
    return image, column_class


def write_png(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def read_labels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


def boundary_columns(column_class: np.ndarray, reach: int = 1) -> np.ndarray:
    """Columns within ``reach`` of a change of class (where resampling may pick either side)."""
    changes = np.flatnonzero(np.diff(column_class)) + 0.5
    return np.array([np.min(np.abs(changes - c)) <= reach + 0.5 for c in range(len(column_class))])


def test_non_square_image_under_resize_is_labelled_at_its_own_size(tmp_path, tiny_checkpoint, rgb_features) -> None:
    image, column_class = bands(24, 48, [RED, GREEN, BLUE])
    write_png(tmp_path / "in" / "wide.png", image)
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, non_square="resize")
    summary = label_images(segmenter, [tmp_path / "in" / "wide.png"], tmp_path / "out", progress=False)
    assert (summary.labelled, summary.skipped, summary.failed) == (1, 0, [])

    labels = read_labels(tmp_path / "out" / "labels" / "wide.png")
    assert labels.shape == (24, 48)
    with Image.open(tmp_path / "out" / "labels" / "wide.png") as png:
        assert png.getpalette()[:9] == [v for colour in PALETTE for v in colour]
    # labelled at the image's own pixels, the bands' borders fall where the image's do
    np.testing.assert_array_equal(labels, np.broadcast_to(column_class, labels.shape))
    # which the model's 32 px labels scaled up by nearest neighbour miss at some border columns
    square = labelling.model_square(image, segmenter, "wide.png")
    labeller = labelling.EnsembleLabeller(segmenter, tta=False, batch_size=1)
    coarse, _ = labeller.label(labelling.image_layers(segmenter, [square])[0], (32, 32))
    nearest, _ = to_original_size(coarse, 24, 48, "resize", IGNORE)
    wrong = nearest != column_class[None, :]
    assert wrong.any() and not wrong[:, ~boundary_columns(column_class)].any()
    for folder in ("overlay", "uncertainty"):
        with Image.open(tmp_path / "out" / folder / "wide.png") as png:
            assert png.size == (48, 24)


def test_center_crop_margins_carry_ignore_label_and_table_counts_them(tmp_path, tiny_checkpoint, rgb_features) -> None:
    image, column_class = bands(24, 48, [RED, GREEN, BLUE])  # bands 0-15, 16-31, 32-47; crop 12-35
    write_png(tmp_path / "in" / "wide.png", image)
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, non_square="center_crop")
    label_images(segmenter, [tmp_path / "in" / "wide.png"], tmp_path / "out", progress=False)

    labels = read_labels(tmp_path / "out" / "labels" / "wide.png")
    assert labels.shape == (24, 48)
    assert (labels[:, :12] == IGNORE).all() and (labels[:, 36:] == IGNORE).all()
    inside = labels[:, 12:36]
    np.testing.assert_array_equal(inside, np.broadcast_to(column_class[12:36], inside.shape))
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlay" / "wide.png"))
    np.testing.assert_array_equal(overlay[:, :12], image[:, :12])  # margins shown as they are
    assert (overlay[:, 12:36] != image[:, 12:36]).any()
    uncertainty = np.asarray(Image.open(tmp_path / "out" / "uncertainty" / "wide.png"))
    assert uncertainty.shape[:2] == (24, 48) and (uncertainty[:, :12] == 255).all()  # white: not seen

    table = read_table(tmp_path / "out" / "predictions.csv")
    assert list(table.columns) == ["image", "width", "height", "uncertainty", "red", "green", "blue", "ignored"]
    row = table.iloc[0]
    assert (row["image"], row["width"], row["height"]) == ("wide.png", 48, 24)
    assert row["ignored"] == pytest.approx(0.5)
    assert row[["red", "green", "blue"]].sum() == pytest.approx(1.0, abs=1e-5)  # the table's rounding
    for k, name in enumerate(["red", "green", "blue"]):
        assert row[name] == pytest.approx((inside == k).mean(), abs=1e-6)
    assert row["uncertainty"] == pytest.approx(0.0, abs=1e-6)  # identical members never disagree


def test_rerun_skips_finished_images_and_keeps_every_row(tmp_path, tiny_checkpoint, rgb_features, monkeypatch) -> None:
    paths = []
    for name, colour in (("a", RED), ("b", BLUE)):
        paths.append(tmp_path / "in" / f"{name}.png")
        write_png(paths[-1], np.full((32, 32, 3), colour, np.uint8))
    segmenter = segmenter_for(tmp_path, tiny_checkpoint)
    out = tmp_path / "out"
    assert label_images(segmenter, paths, out, progress=False).labelled == 2
    outputs = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".json") and p.name != labelling.MARKER)
    assert len(outputs) == 8
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}

    def no_prediction(*args, **kwargs):
        raise AssertionError("nothing should be predicted again")

    monkeypatch.setattr(labelling, "predictions", no_prediction)
    summary = label_images(segmenter, paths, out, progress=False)
    assert (summary.labelled, summary.skipped) == (0, 2)
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes
    table = read_table(out / "predictions.csv")
    assert list(table["image"]) == ["a.png", "b.png"]
    assert list(table["red"]) == [1.0, 0.0] and list(table["blue"]) == [0.0, 1.0]

    monkeypatch.undo()
    monkeypatch.setattr(labelling, "image_layers", lambda s, images: [[torch.from_numpy(i / 255.0).float()] for i in images])
    (out / "overlay" / "b.png").unlink()  # interrupted before b was complete
    summary = label_images(segmenter, paths, out, progress=False)
    assert (summary.labelled, summary.skipped) == (1, 1)
    assert (out / "overlay" / "b.png").is_file()

    write_png(paths[0], np.full((32, 32, 3), GREEN, np.uint8))  # a new image under an old name
    summary = label_images(segmenter, paths, out, progress=False)
    assert (summary.labelled, summary.skipped) == (1, 1)
    assert list(read_table(out / "predictions.csv")["green"]) == [1.0, 0.0]


def test_an_unreadable_or_non_square_file_fails_alone(tmp_path, tiny_checkpoint, rgb_features) -> None:
    folder = tmp_path / "in"
    write_png(folder / "a.png", np.full((32, 32, 3), RED, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png at all")
    write_png(folder / "c.png", np.full((32, 32, 3), GREEN, np.uint8))
    write_png(folder / "wide.png", np.full((20, 40, 3), GREEN, np.uint8))
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, non_square=None)
    summary = label_images(segmenter, image_files([folder]), tmp_path / "out", batch_size=4, progress=False)
    assert summary.labelled == 2
    reasons = dict(summary.failed)
    assert set(reasons) == {folder / "broken.png", folder / "wide.png"}
    assert "broken.png: unreadable image" in reasons[folder / "broken.png"]
    assert "wide.png: image is 40x20, not square" in reasons[folder / "wide.png"]
    assert all("\n" not in reason for reason in reasons.values())
    assert list(read_table(tmp_path / "out" / "predictions.csv")["image"]) == ["a.png", "c.png"]
    assert not (tmp_path / "out" / "labels" / "broken.png").exists()


def test_a_folder_of_another_segmenter_is_refused(tmp_path, tiny_checkpoint, rgb_features) -> None:
    write_png(tmp_path / "in" / "a.png", np.full((32, 32, 3), RED, np.uint8))
    images = [tmp_path / "in" / "a.png"]
    out = tmp_path / "out"
    out.mkdir()  # an existing empty folder is fine
    label_images(segmenter_for(tmp_path, tiny_checkpoint), images, out, progress=False)
    other = segmenter_for(tmp_path, tiny_checkpoint, noise_seed=1)
    with pytest.raises(DdpmsegError, match="holds labels of another segmenter") as error:
        label_images(other, images, out, progress=False)
    assert other.identity in str(error.value)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DdpmsegError, match="foreign: exists and is not an empty folder"):
        label_images(other, images, foreign, progress=False)


def test_a_folder_labelled_with_tta_is_not_resumed_without_it(tmp_path, tiny_checkpoint, rgb_features) -> None:
    write_png(tmp_path / "in" / "a.png", np.full((32, 32, 3), RED, np.uint8))
    images, out = [tmp_path / "in" / "a.png"], tmp_path / "out"
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, tta_views=[["HorizontalFlip"]])
    assert label_images(segmenter, images, out, tta=True, progress=False).labelled == 1
    with pytest.raises(DdpmsegError, match="holds labels made with TTA on, asked for TTA off"):
        label_images(segmenter, images, out, tta=False, progress=False)
    assert label_images(segmenter, images, out, tta=True, progress=False).skipped == 1
    plain = segmenter_for(tmp_path, tiny_checkpoint)  # no views: TTA on or off gives the same labels
    label_images(plain, images, tmp_path / "plain", tta=False, progress=False)
    assert label_images(plain, images, tmp_path / "plain", tta=True, progress=False).skipped == 1


def test_two_images_with_one_name_are_refused_before_work(tmp_path, tiny_checkpoint, monkeypatch) -> None:
    for folder in ("one", "two"):
        write_png(tmp_path / folder / "x.png", np.full((32, 32, 3), RED, np.uint8))
    monkeypatch.setattr(labelling, "predictions", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(DdpmsegError, match="two images share the name 'x'"):
        label_images(segmenter_for(tmp_path, tiny_checkpoint), image_files([tmp_path / "one", tmp_path / "two"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tta_views_are_mapped_back_before_the_vote(tmp_path, tiny_checkpoint, rgb_features) -> None:
    """Two mirrored views outvote the plain image: unless they are flipped back, the result is mirrored."""
    image, column_class = bands(32, 32, [RED, BLUE])
    write_png(tmp_path / "in" / "half.png", image)
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, tta_views=[["HorizontalFlip"], ["HorizontalFlip"]])
    label_images(segmenter, [tmp_path / "in" / "half.png"], tmp_path / "out", progress=False)
    assert rgb_features == [1, 1, 1]  # the image and its two views
    expected = np.where(column_class == 0, 0, 2)[None].repeat(32, axis=0)
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "labels" / "half.png"), expected)


def test_tta_seed_index_depends_on_the_file_name_only(tmp_path) -> None:
    assert tta_image_index(tmp_path / "a" / "x.png") == tta_image_index(tmp_path / "b" / "x.png")
    assert tta_image_index(tmp_path / "x.png") == zlib.crc32(b"x.png") % 2**31
    assert tta_image_index(tmp_path / "x.png") != tta_image_index(tmp_path / "y.png")


def test_image_files_from_files_and_folders(tmp_path) -> None:
    for name in ("b.PNG", "a.jpg", "notes.txt"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    found = image_files([tmp_path / "in", tmp_path / "in" / "a.jpg"])
    assert found == [tmp_path / "in" / "a.jpg", tmp_path / "in" / "b.PNG"]
    with pytest.raises(DdpmsegError, match="missing: no such image file or folder"):
        image_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DdpmsegError, match="empty: folder holds no"):
        image_files([tmp_path / "empty"])


def test_real_ddpm_features_with_tta_end_to_end(tmp_path, tiny_checkpoint) -> None:
    """The tiny UNet's features, random members, a non-square image and a TTA view; batch of 2."""
    probe = segmenter_for(tmp_path, tiny_checkpoint, steps=[10, 400], blocks=[0, 2, 3])
    width = sum(layer.shape[-1] for layer in labelling.image_layers(probe, [np.zeros((32, 32, 3), np.uint8)])[0])
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        members.append(tmp_path / f"random{seed}.pth")
        save_member(members[-1], build_classifier(width, 3), in_features=width, number_class=3, dropout=0.0)
    segmenter = segmenter_for(
        tmp_path, tiny_checkpoint, members=members, steps=[10, 400], blocks=[0, 2, 3], tta_views=[["ToGray"]]
    )
    rng = np.random.default_rng(0)
    paths = [tmp_path / "in" / f"{k}.jpg" for k in range(3)]
    for k, path in enumerate(paths):
        write_png(path, rng.integers(0, 256, size=(30 + k, 40, 3), dtype=np.uint8))
    summary = label_images(segmenter, paths, tmp_path / "out", batch_size=2, progress=False, examples=1)
    assert (summary.labelled, summary.failed) == (3, [])
    for k in range(3):
        labels = read_labels(tmp_path / "out" / "labels" / f"{k}.png")
        assert labels.shape == (30 + k, 40) and labels.max() < 3
    table = read_table(tmp_path / "out" / "predictions.csv")
    assert list(table["height"]) == [30, 31, 32] and (table["uncertainty"] > 0).all()
    np.testing.assert_allclose(table[["red", "green", "blue"]].sum(axis=1), 1.0, rtol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out" / "examples").iterdir()) == ["0.png"]
    with Image.open(tmp_path / "out" / "examples" / "0.png") as example:  # small images are enlarged to be seen
        assert example.height >= labelling.EXAMPLE_MIN_HEIGHT

    wrong = segmenter_for(tmp_path / "in", tiny_checkpoint, steps=[10, 400], blocks=[0, 2, 3])  # 3-input members
    with pytest.raises(DdpmsegError, match=f"member takes 3 features, the segmenter's feature settings give {width}"):
        label_images(wrong, paths, tmp_path / "out2", progress=False)


def test_member_for_other_classes_is_refused(tmp_path, tiny_checkpoint) -> None:
    save_member(tmp_path / "four.pth", build_classifier(3, 4), in_features=3, number_class=4, dropout=0.0)
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, members=[tmp_path / "four.pth"])
    write_png(tmp_path / "in" / "a.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DdpmsegError, match="four.pth: member predicts 4 classes, the segmenter has 3"):
        label_images(segmenter, [tmp_path / "in" / "a.png"], tmp_path / "out", progress=False)


def test_table_columns_cannot_clash_with_class_names(tmp_path, tiny_checkpoint) -> None:
    segmenter = segmenter_for(tmp_path, tiny_checkpoint, class_names=["red", "width", "blue"])
    write_png(tmp_path / "in" / "a.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DdpmsegError, match="class name 'width'"):
        label_images(segmenter, [tmp_path / "in" / "a.png"], tmp_path / "out", progress=False)


def test_table_is_a_plain_csv(tmp_path, tiny_checkpoint, rgb_features) -> None:
    write_png(tmp_path / "in" / "NA.png", np.full((32, 32, 3), GREEN, np.uint8))
    label_images(segmenter_for(tmp_path, tiny_checkpoint), [tmp_path / "in" / "NA.png"], tmp_path / "out", progress=False)
    assert pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False)["image"].tolist() == ["NA.png"]


def test_labels_equal_the_workflows_prediction_from_a_feature_store(tmp_path, tiny_checkpoint) -> None:
    """Same preprocessing, noise, block order and float16 rounding as extract_to_store + predict_image."""
    steps, blocks = [10, 400], [3, 0, 2]
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    image = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    write_png(tmp_path / "in" / "x.png", image)
    extract_to_store(
        model, diffusion, image[None], np.zeros((1, 32, 32)), ["x"], steps=steps, blocks=blocks, noise_seed=5,
        batch_size=1, out=tmp_path / "store.zarr", attrs={"checkpoint_sha256": "x"}, progress=False,
    )
    store = FeatureStore(tmp_path / "store.zarr")
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(tmp_path / f"random{seed}.pth")
        save_member(members[-1], build_classifier(store.feature_dim, 3), in_features=store.feature_dim, number_class=3, dropout=0.0)
    expected, js = predict_image(load_ensemble(members), store.activations(0), 32, 3)

    segmenter = segmenter_for(tmp_path, tiny_checkpoint, members=members, steps=steps, blocks=blocks, noise_seed=5)
    label_images(segmenter, [tmp_path / "in" / "x.png"], tmp_path / "out", progress=False)
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "labels" / "x.png"), expected.numpy())
    score = read_table(tmp_path / "out" / "predictions.csv")["uncertainty"].iloc[0]
    assert score == pytest.approx(uncertainty_score(js), rel=1e-5)


def test_rgb_control_needs_no_ddpm(tmp_path) -> None:
    """The RGB control's features are the pixels' values in [-1, 1]; its DDPM file need not exist."""
    members = [tmp_path / "m0.pth"]
    colour_member(members[0])
    segmenter = segmenter_for(tmp_path, tmp_path / "no_ddpm.pt", members=members, feature_source="rgb", steps=[], blocks=[])
    image, column_class = bands(32, 32, [RED, GREEN, BLUE])
    write_png(tmp_path / "in" / "bands.png", image)
    label_images(segmenter, [tmp_path / "in" / "bands.png"], tmp_path / "out", progress=False)
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "labels" / "bands.png"), column_class[None].repeat(32, axis=0))
