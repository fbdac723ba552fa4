"""Dataset layout, preprocessing, image and mask modes, and every bad-input case (one line naming the
file)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from conftest import make_dataset, write_sample
from PIL import Image

from ddpmseg.data.datasets import (
    list_samples,
    load_sample,
    nearest_indices,
    read_image,
    read_mask,
    remove_small_annotations,
    resize_mask,
    split_dir,
    summarize_split,
    to_model_input,
)
from ddpmseg.base.errors import DdpmsegError


def summarize(root, split="train", count=3, number_class=3, ignore_label=255):
    return summarize_split(split_dir(root, split), count, 32, number_class, ignore_label, training=split == "train")


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


@pytest.mark.parametrize(
    "source,target,indices",
    [
        (4, 2, [0, 2]),  # down by 2: floor(i * 2), not the pixel centres [1, 3]
        (5, 3, [0, 1, 3]),  # down by 5/3: 0, 1.67, 3.33
        (2, 5, [0, 0, 0, 1, 1]),  # up by 5/2: 0, 0.4, 0.8, 1.2, 1.6
        (48, 64, [0, 0, 1, 2, 3, 3, 4, 5]),  # up by 4/3 (first 8): 0, 0.75, 1.5, 2.25, 3, 3.75, 4.5, 5.25
        (100, 64, [0, 1, 3, 4, 6, 7, 9, 10]),  # down by 1.5625 (first 8): 0, 1.56, 3.13, 4.69, 6.25, ...
        (3, 3, [0, 1, 2]),
    ],
)
def test_mask_resize_takes_the_references_source_indices(source, target, indices) -> None:
    assert nearest_indices(source, target)[: len(indices)].tolist() == indices
    mask = np.arange(source)[:, None] * 1000 + np.arange(source)[None, :]
    resized = resize_mask(mask, target)
    expected_rows = nearest_indices(source, target)
    assert resized.tolist() == (expected_rows[:, None] * 1000 + expected_rows[None, :]).tolist()


def test_mask_resize_rounds_in_double_precision_as_opencv() -> None:
    # 32 * 186 / 64 = 93 exactly, but OpenCV computes 32 * (1 / (64 / 186)) = 92.99999999999999 -> 92
    assert nearest_indices(186, 64)[32] == 92
    assert nearest_indices(186, 64)[31] == 90 and nearest_indices(186, 64)[33] == 95
    # non-square: rows and columns each by their own ratio
    mask = np.arange(4 * 6).reshape(4, 6)
    assert resize_mask(mask, 2).tolist() == [[0, 3], [12, 15]]


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


def test_small_annotations_become_ignore() -> None:
    mask = np.zeros((10, 10), np.int64)
    mask[0, :19] = 1  # 19 pixels: removed
    mask[1, :] = 2
    mask[2, :] = 2  # 20 pixels: kept
    mask[9, 9] = 255
    cleaned = remove_small_annotations(mask, 255)
    assert (cleaned[0, :19] == 255).all() and (cleaned[1:3] == 2).all() and cleaned[5, 5] == 0
    assert (mask[0, :19] == 1).all()  # input untouched


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
        summarize_split(split_dir(root, "test"), 2, 32, 3, 255, training=True)


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


# --- read_image on every PIL mode a user's files may have, against values computed here independently;
# and the pixel limit against decompression bombs.


RNG = np.random.default_rng(7)


SHAPE = (5, 6)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_raw_png(path, values: np.ndarray, colour_type: int, bit_depth: int = 16, size=None) -> None:
    """A minimal PNG encoder (PIL cannot write 16-bit-per-channel colour): big-endian samples, filter
    0 on every row. ``size`` overrides the declared width and height (for a header-only bomb)."""
    height, width = values.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\x00" + values[y].astype(dtype).tobytes() for y in range(height))
    width, height = size or (width, height)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
                     + png_chunk(b"IEND", b""))


def round_16_to_8(values: np.ndarray) -> np.ndarray:
    """round(v / 257), by exact integer arithmetic."""
    return ((values.astype(np.int64) * 2 + 257) // 514).astype(np.uint8)


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


def random_values(high: int, shape=SHAPE, dtype=np.int64) -> np.ndarray:
    return RNG.integers(0, high, size=shape).astype(dtype)


def saved(tmp_path, image: Image.Image, name: str):
    path = tmp_path / name
    image.save(path)
    return path


def test_8_bit_modes(tmp_path) -> None:
    bits = RNG.random(SHAPE) < 0.5
    assert (read_image(saved(tmp_path, Image.fromarray(bits), "one.png")) == grey(255 * bits.astype(np.uint8))).all()
    luminance = random_values(256, dtype=np.uint8)
    assert (read_image(saved(tmp_path, Image.fromarray(luminance), "l.png")) == grey(luminance)).all()
    luminance_alpha = random_values(256, SHAPE + (2,), np.uint8)
    path = saved(tmp_path, Image.fromarray(luminance_alpha, "LA"), "la.png")
    assert (read_image(path) == grey(luminance_alpha[..., 0])).all()  # alpha dropped
    rgb = random_values(256, SHAPE + (3,), np.uint8)
    assert (read_image(saved(tmp_path, Image.fromarray(rgb), "rgb.png")) == rgb).all()
    rgba = random_values(256, SHAPE + (4,), np.uint8)
    assert (read_image(saved(tmp_path, Image.fromarray(rgba), "rgba.png")) == rgba[..., :3]).all()


def palette_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    palette = random_values(256, (256, 3), np.uint8)
    indices = random_values(256, dtype=np.uint8)
    image = Image.fromarray(indices, "L").convert("P")
    image.putpalette(palette.tobytes())
    if mode == "PA":
        image = image.convert("PA")
    return image, palette[indices]


def test_palette_modes(tmp_path) -> None:
    image, expected = palette_image("P")
    assert (read_image(saved(tmp_path, image, "p.png")) == expected).all()
    from ddpmseg.data.datasets import image_to_rgb

    image, expected = palette_image("PA")  # no file format writes PA: the in-memory conversion
    assert image.mode == "PA"
    assert (image_to_rgb(image, "pa") == expected).all()


def test_cmyk_and_ycbcr(tmp_path) -> None:
    cmyk = random_values(256, SHAPE + (4,), np.uint8)
    path = saved(tmp_path, Image.frombytes("CMYK", SHAPE[::-1], cmyk.tobytes()), "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    c, m, y, k = (cmyk[..., i].astype(np.int64) for i in range(4))
    expected = np.stack([((255 - v) * (255 - k) * 2 + 255) // 510 for v in (c, m, y)], axis=-1)
    assert (read_image(path) == expected).all()
    ycbcr = random_values(256, SHAPE + (3,), np.uint8)
    path = saved(tmp_path, Image.frombytes("YCbCr", SHAPE[::-1], ycbcr.tobytes()), "ycbcr.tif")
    assert Image.open(path).mode == "YCbCr"
    y, cb, cr = (ycbcr[..., i].astype(np.float64) for i in range(3))
    expected = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], -1)
    assert np.abs(read_image(path) - np.clip(expected, 0, 255)).max() <= 1  # BT.601, PIL's fixed point


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path) -> None:
    values = random_values(65536, dtype=np.uint16)
    values[0, :4] = [0, 128, 129, 65535]  # 128 / 257 rounds down, 129 / 257 up
    path = saved(tmp_path, Image.fromarray(values), "i16.png")
    assert Image.open(path).mode == "I;16"
    rgb = read_image(path)
    assert (rgb == grey(round_16_to_8(values))).all()
    assert rgb[0, :4, 0].tolist() == [0, 0, 1, 255]
    path = saved(tmp_path, Image.fromarray(values.astype(">u2")), "i16b.tif")
    assert Image.open(path).mode == "I;16B"
    assert (read_image(path) == grey(round_16_to_8(values))).all()
    dark = random_values(200, dtype=np.uint16)  # a dark 16-bit PGM: PIL's mode I, still 16-bit
    path = saved(tmp_path, Image.fromarray(dark), "dark.pgm")
    assert Image.open(path).mode == "I"
    assert (read_image(path) == grey(round_16_to_8(dark))).all()


@pytest.mark.parametrize("colour_type,channels", [(2, 3), (6, 4), (4, 2)])
def test_16_bit_per_channel_pngs(tmp_path, colour_type: int, channels: int) -> None:
    values = random_values(65536, SHAPE + (channels,))
    values[0, 0, 0], values[0, 1, 0] = 128, 129  # the high byte alone would give 0 for both
    path = tmp_path / "deep.png"
    write_raw_png(path, values, colour_type)
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
    rgb = read_image(path)
    assert (rgb == round_16_to_8(colour)).all()
    assert rgb[0, :2, 0].tolist() == [0, 1]


def test_32_bit_integer_greyscale(tmp_path) -> None:
    small = random_values(256, dtype=np.int32)
    path = saved(tmp_path, Image.fromarray(small), "i8.tif")
    assert Image.open(path).mode == "I"
    assert (read_image(path) == grey(small.astype(np.uint8))).all()  # 0..255: 8-bit
    wide = random_values(65536, dtype=np.int32)
    wide[0, 0] = 300
    assert (read_image(saved(tmp_path, Image.fromarray(wide), "i16.tif")) == grey(round_16_to_8(wide))).all()
    for name, bad in (("negative", -1), ("large", 70000)):
        values = small.copy()
        values[1, 1] = bad
        path = saved(tmp_path, Image.fromarray(values), f"{name}.tif")
        with pytest.raises(DdpmsegError, match=rf"{name}\.tif: 32-bit integer image with values .*only 0\.\.255"):
            read_image(path)


def test_float_greyscale(tmp_path) -> None:
    unit = RNG.random(SHAPE).astype(np.float32)
    path = saved(tmp_path, Image.fromarray(unit), "unit.tif")
    assert Image.open(path).mode == "F"
    expected = np.floor(unit.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    assert (read_image(path) == grey(expected)).all()
    bytes_range = (RNG.random(SHAPE) * 255).astype(np.float32)
    bytes_range[0, 0] = 254.2
    expected = np.floor(bytes_range.astype(np.float64) + 0.5).astype(np.uint8)
    assert (read_image(saved(tmp_path, Image.fromarray(bytes_range), "bytes.tif")) == grey(expected)).all()
    for name, bad, pattern in (("negative", -0.5, r"values -0\.5\.\."), ("large", 300.0, r"\.\.300;"), ("nan", np.nan, "NaN")):
        values = unit.copy()
        values[1, 1] = bad
        with pytest.raises(DdpmsegError, match=rf"{name}\.tif: floating-point image .*{pattern}"):
            read_image(saved(tmp_path, Image.fromarray(values), f"{name}.tif"))


def test_decompression_bomb_is_one_error_naming_file_limit_and_setting(tmp_path, monkeypatch) -> None:
    bomb = tmp_path / "bomb.png"
    write_raw_png(bomb, np.zeros((1, 1), np.uint8), 0, 8, size=(13400, 13400))  # a header: nothing decoded
    assert bomb.stat().st_size < 100
    monkeypatch.delenv("DDPMSEG_MAX_IMAGE_PIXELS", raising=False)
    pattern = r"bomb\.png: image is 13400x13400 = 179,560,000 pixels, more than the limit of 178,956,970 .*DDPMSEG_MAX_IMAGE_PIXELS"
    with pytest.raises(DdpmsegError, match=pattern) as info:
        read_image(bomb)
    assert "\n" not in str(info.value)
    with pytest.raises(DdpmsegError, match=pattern):
        read_mask(bomb)
    image = saved(tmp_path, Image.fromarray(np.zeros((100, 100), np.uint8)), "small.png")
    monkeypatch.setenv("DDPMSEG_MAX_IMAGE_PIXELS", "9999")
    with pytest.raises(DdpmsegError, match=r"small\.png: image is 100x100 = 10,000 pixels, more than the limit of 9,999"):
        read_image(image)
    monkeypatch.setenv("DDPMSEG_MAX_IMAGE_PIXELS", "10000")
    assert read_image(image).shape == (100, 100, 3) and read_mask(image).shape == (100, 100)
    monkeypatch.setenv("DDPMSEG_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DdpmsegError, match=r"DDPMSEG_MAX_IMAGE_PIXELS='lots': must be a positive whole number"):
        read_image(image)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's own setting is restored
