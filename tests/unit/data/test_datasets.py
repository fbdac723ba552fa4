"""Dataset layout, preprocessing, image and mask modes, and every bad-input case (one line naming the
file)."""

from __future__ import annotations


import numpy as np
import pytest
from conftest import make_dataset, write_sample
from PIL import Image

from ddpmseg.data.datasets import list_samples, load_sample, split_folder, summarize_split
from ddpmseg.data.preprocess import resize_mask, to_model_input
from ddpmseg.base.errors import DdpmsegError


def summarize(root, split="train", count=3, number_class=3, ignore_label=255):
    return summarize_split(split_folder(root, split), count, 32, number_class, ignore_label, training=split == "train")


def test_samples_sorted_and_first_count_taken(tmp_path) -> None:
    folder = tmp_path / "real" / "train"
    for stem in ["b", "a", "c"]:
        write_sample(folder, stem, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int64))
    samples = list_samples(folder, 2)
    assert [s.name for s in samples] == ["a", "b"]
    assert samples[0].mask_path.name == "a.npy"


def test_summary_counts_classes(tmp_path) -> None:
    root = make_dataset(tmp_path / "d")
    summary = summarize(root)
    assert summary["images"] == 3
    assert summary["class_pixels"] == [3 * 11 * 32, 3 * 11 * 32, 3 * 10 * 32]
    assert summary["original_sizes"] == {"32x32": 3}


def test_preprocessing_scales_and_resizes(tmp_path) -> None:
    folder = tmp_path / "real" / "train"
    image = np.full((10, 20, 3), 255, np.uint8)
    mask = np.zeros((10, 20), np.int64)
    mask[:, 10:] = 1
    write_sample(folder, "x", image, mask)
    rgb, resized = load_sample(list_samples(folder)[0], 8, 2, 255, non_square="resize")
    assert rgb.shape == (8, 8, 3) and resized.shape == (8, 8)
    assert resized[:, :4].max() == 0 and resized[:, 4:].min() == 1
    x = to_model_input(rgb)
    assert x.shape == (3, 8, 8) and np.allclose(x, 1.0)
    assert np.allclose(to_model_input(np.zeros((2, 2, 3), np.uint8)), -1.0)


def test_mask_at_another_resolution_with_the_same_aspect_ratio_is_resized_on_its_own(tmp_path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    mask = np.zeros((25, 50), np.int64)  # 50x25 mask beside a 101x50 image: 2:1 within a pixel
    mask[:, 20:] = 1
    image = np.zeros((50, 101, 3), np.uint8)
    image[:, 40:] = 255
    Image.fromarray(image).save(images / "a.png")
    np.save(masks / "a.npy", mask)
    rgb, resized = load_sample(list_samples(images, masks=masks)[0], 10, 2, 255, non_square="resize")
    assert resized.tolist() == resize_mask(mask, 10).tolist()
    assert rgb.shape == (10, 10, 3)
    cropped_rgb, cropped = load_sample(list_samples(images, masks=masks)[0], 10, 2, 255, non_square="center_crop")
    assert cropped.tolist() == resize_mask(mask[:, 12:37], 10).tolist()  # the central 25x25 of the mask
    assert cropped_rgb.shape == (10, 10, 3)


@pytest.mark.parametrize(
    "damage,pattern",
    [
        ("missing_mask", r"001\.png: missing mask 001\.npy"),
        ("mask_size", r"001\.npy: mask size 16x32 has another aspect ratio than its image's 32x32"),
        ("bad_label", r"001\.npy: label\(s\) 7 outside \[0, 3\) and not the ignore_label 255"),
        ("unreadable", r"001\.png: unreadable image"),
        ("duplicate_stem", r"two images with the same stem '001' \(001\.jpg, 001\.png\)"),
        ("empty", r"train: empty split"),
        ("too_few", r"train: split has 3 images, the config asks for 5"),
        ("float_mask", r"001\.npy: mask must hold integer class ids, got dtype float64 with value 0\.5"),
        ("nan_mask", r"001\.npy: mask must hold integer class ids, got dtype float32 with value nan"),
        ("not_npy", r"001\.npy: not a NumPy array file \(masks must be written with numpy\.save\)"),
        ("broken_image_link", r"002\.png: broken symbolic link \(its target .*gone\.png does not exist\)"),
        ("broken_mask_link", r"001\.npy: broken symbolic link \(its target .*gone\.npy does not exist\)"),
        ("all_ignored", r"001\.npy: every pixel is the ignore_label 255 at 32x32; a training mask needs labelled pixels"),
        ("small_only", r"001\.npy: no class has 20 pixels at 32x32, and smaller annotations are ignored in training"),
        ("mask_3d", r"001\.npy: mask must be a 2-D array"),
    ],
)
def test_bad_input_names_file_and_problem(tmp_path, damage: str, pattern: str) -> None:
    root = make_dataset(tmp_path / "d")
    folder = root / "real" / "train"
    count = 3
    if damage == "missing_mask":
        (folder / "001.npy").unlink()
    elif damage == "mask_size":
        np.save(folder / "001.npy", np.zeros((32, 16), np.int64))
    elif damage == "bad_label":
        mask = np.load(folder / "001.npy")
        mask[0, 0] = 7
        np.save(folder / "001.npy", mask)
    elif damage == "unreadable":
        (folder / "001.png").write_bytes(b"not a png")
    elif damage == "duplicate_stem":
        (folder / "001.jpg").write_bytes((folder / "001.png").read_bytes())
    elif damage == "empty":
        for path in folder.iterdir():
            path.unlink()
    elif damage == "too_few":
        count = 5
    elif damage == "float_mask":
        np.save(folder / "001.npy", np.full((32, 32), 0.5))
    elif damage == "mask_3d":
        np.save(folder / "001.npy", np.zeros((32, 32, 3), np.int64))
    elif damage == "nan_mask":
        mask = np.load(folder / "001.npy").astype(np.float32)
        mask[3, 3] = np.nan
        np.save(folder / "001.npy", mask)
    elif damage == "not_npy":
        (folder / "001.npy").write_text("0 1 2\n")
    elif damage == "broken_image_link":
        (folder / "002.png").unlink()
        (folder / "002.png").symlink_to(folder / "gone.png")
    elif damage == "broken_mask_link":
        (folder / "001.npy").unlink()
        (folder / "001.npy").symlink_to(folder / "gone.npy")
    elif damage == "all_ignored":
        np.save(folder / "001.npy", np.full((32, 32), 255, np.uint8))
    elif damage == "small_only":
        mask = np.full((32, 32), 255, np.uint8)
        mask[0, :19] = 1
        mask[5, :19] = 2
        np.save(folder / "001.npy", mask)
    with pytest.raises(DdpmsegError, match=pattern) as info:
        summarize(root, count=count)
    assert "\n" not in str(info.value)


def test_ignore_label_and_integral_float_masks_are_accepted(tmp_path) -> None:
    folder = tmp_path / "real" / "train"
    mask = np.full((8, 8), 255.0)
    mask[:4] = 1.0
    write_sample(folder, "x", np.zeros((8, 8, 3), np.uint8), mask.astype(np.float32))
    write_sample(folder, "y", np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint16))
    summary = summarize_split(folder, 2, 8, 3, 255)
    assert summary["class_pixels"] == [0, 32 + 64, 0] and summary["ignored_pixels"] == 32


def test_non_square_needs_a_policy_and_center_crop_keeps_the_middle(tmp_path) -> None:
    folder = tmp_path / "real" / "train"
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, 5:15] = 255  # the central 10 x 10 square is white
    mask = np.zeros((10, 20), np.int64)
    mask[:, 5:15] = 1
    write_sample(folder, "x", image, mask)
    sample = list_samples(folder)[0]
    with pytest.raises(DdpmsegError, match=r"x\.png: image is 20x10, not square; choose the dataset's non_square policy"):
        load_sample(sample, 8, 2, 255)
    rgb, cropped = load_sample(sample, 8, 2, 255, non_square="center_crop")
    assert (rgb == 255).all() and (cropped == 1).all()
    rgb, stretched = load_sample(sample, 8, 2, 255, non_square="resize")
    assert (stretched == 0).any() and (stretched == 1).any()


def test_separate_folders_with_png_and_uint16_masks(tmp_path) -> None:
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem, size in (("a", (12, 16)), ("b", (20, 20)), ("c", (30, 18))):
        Image.fromarray(np.zeros(size + (3,), np.uint8)).save(images / f"{stem}.jpg")
    Image.fromarray(np.full((12, 16), 2, np.uint8)).save(masks / "a.png")  # 8-bit PNG
    Image.fromarray(np.full((20, 20), 255, np.uint16)).save(masks / "b.png")  # 16-bit PNG, all ignored
    np.save(masks / "c.npy", np.ones((30, 18), np.uint16))
    samples = list_samples(images, masks=masks)
    assert [s.mask_path.name for s in samples] == ["a.png", "b.png", "c.npy"]
    summary = summarize_split(images, 3, 8, 3, 255, masks=masks, non_square="center_crop")
    assert summary["original_sizes"] == {"16x12": 1, "20x20": 1, "18x30": 1}
    assert summary["class_pixels"] == [0, 64, 64] and summary["ignored_pixels"] == 64


def test_rgb_png_mask_and_two_masks_are_refused(tmp_path) -> None:
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(masks / "a.png")
    with pytest.raises(DdpmsegError, match=r"a\.png: mask PNG must be single-channel \(mode RGB\)"):
        summarize_split(images, 1, 4, 3, 255, masks=masks)
    np.save(masks / "a.npy", np.zeros((4, 4), np.int64))
    with pytest.raises(DdpmsegError, match=r"a\.png: two masks \(a\.npy, a\.png\); keep one"):
        list_samples(images, masks=masks)


def test_all_ignored_test_masks_are_listed_not_refused(tmp_path) -> None:
    root = make_dataset(tmp_path / "d")
    np.save(root / "real" / "test" / "001.npy", np.full((32, 32), 255, np.uint8))
    summary = summarize(root, split="test", count=2)
    assert summary["unscored_masks"] == ["001"] and summary["ignored_pixels"] == 32 * 32
    with pytest.raises(DdpmsegError, match=r"test/001\.npy: every pixel is the ignore_label"):
        summarize_split(split_folder(root, "test"), 2, 32, 3, 255, training=True)


def test_mask_suffixes_match_in_any_case(tmp_path) -> None:
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / f"{stem}.PNG", format="PNG")
    Image.fromarray(np.ones((4, 4), np.uint8)).save(masks / "a.PNG", format="PNG")
    np.save(masks / "b.npy", np.ones((4, 4), np.uint8))
    (masks / "b.npy").rename(masks / "b.NPY")
    samples = list_samples(images, masks=masks)
    assert [s.mask_path.name for s in samples] == ["a.PNG", "b.NPY"]
    assert summarize_split(images, 2, 4, 3, 255, masks=masks)["class_pixels"] == [0, 32, 0]
    archive = tmp_path / "real" / "train"
    write_sample(archive, "x", np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8))
    (archive / "x.npy").rename(archive / "x.NPY")
    assert list_samples(archive)[0].mask_path.name == "x.NPY"
    np.save(masks / "b.npy", np.ones((4, 4), np.uint8))
    with pytest.raises(DdpmsegError, match=r"b\.PNG: two masks \(b\.NPY, b\.npy\); keep one"):
        list_samples(images, masks=masks)


def test_orphan_masks_and_subfolders_are_one_warning_line(tmp_path, capsys) -> None:
    root = make_dataset(tmp_path / "d")
    folder = root / "real" / "train"
    for stem in ("x", "y", "z"):
        np.save(folder / f"{stem}.npy", np.zeros((32, 32), np.uint8))
    (folder / "extra").mkdir()
    (folder / "notes.txt").write_text("")
    (folder / ".hidden").write_text("")
    summarize(root)
    err = capsys.readouterr().err
    expected = (f"ddpmseg warning: {folder}: 3 masks without an image (e.g. x.npy), 1 subfolder ignored (e.g. extra), "
                "1 file of other types ignored (e.g. notes.txt)\n")
    assert err == expected
    summarize(root, split="test", count=2)
    assert capsys.readouterr().err == ""  # a clean split: no warning


def test_orphan_masks_in_a_separate_mask_folder_are_named(tmp_path, capsys) -> None:
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "a.jpg")
    np.save(masks / "a.npy", np.ones((4, 4), np.uint8))
    Image.fromarray(np.ones((4, 4), np.uint8)).save(masks / "lost.png")
    summary = summarize_split(images, 1, 4, 3, 255, masks=masks)
    assert capsys.readouterr().err == f"ddpmseg warning: {images}: 1 mask in {masks} without an image (e.g. lost.png)\n"
    assert summary["unused"] == f"{images}: 1 mask in {masks} without an image (e.g. lost.png)"


def test_images_shown_turned_are_read_as_shown_and_named_in_one_warning(tmp_path, capsys) -> None:
    """A sideways-stored photo with EXIF orientation 6 and a mask made on the image as shown: aligned."""
    folder = tmp_path / "real" / "train"
    folder.mkdir(parents=True)
    shown = np.zeros((48, 24, 3), np.uint8)
    shown[:24] = 255  # the top half white, as a viewer shows it
    image = Image.fromarray(np.rot90(shown, k=1).copy())  # stored turned anticlockwise: 24 x 48
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(folder / "photo.png", exif=exif.tobytes())
    mask = np.zeros((48, 24), np.int64)
    mask[:24] = 1
    np.save(folder / "photo.npy", mask)
    summary = summarize_split(folder, 1, 16, 2, 255, non_square="resize", training=True)
    assert summary["original_sizes"] == {"24x48": 1}
    assert "1 image with an EXIF orientation (e.g. photo.png), read as viewers show them" in capsys.readouterr().err
    image, resized = load_sample(list_samples(folder, 1)[0], 16, 2, 255, "resize")
    assert (image[:7] == 255).all() and (image[9:] == 0).all()  # bilinear: one blended row between
    assert (resized[:8] == 1).all() and (resized[8:] == 0).all()
