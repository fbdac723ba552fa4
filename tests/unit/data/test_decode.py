"""Reading image files of every mode and bit depth as 8-bit RGB, and refusing what cannot be read faithfully."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.data.decode import check_image, read_image, read_mask


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


def test_palette_modes(tmp_path) -> None:
    image, expected = palette_image("P")
    assert (read_image(saved(tmp_path, image, "p.png")) == expected).all()
    from ddpmseg.data.decode import image_to_rgb

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


def palette_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    palette = random_values(256, (256, 3), np.uint8)
    indices = random_values(256, dtype=np.uint8)
    image = Image.fromarray(indices, "L").convert("P")
    image.putpalette(palette.tobytes())
    if mode == "PA":
        image = image.convert("PA")
    return image, palette[indices]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_exif_orientation_is_applied_as_viewers_apply_it(tmp_path, orientation) -> None:
    """A phone's upright photo is stored sideways with EXIF orientation 6: read as shown (24 x 48, not 48 x 24),
    for every orientation as PIL's own exif_transpose turns it."""
    from PIL import ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (24, 48, 3), dtype=np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    image.save(path, exif=exif.tobytes())
    with Image.open(path) as reopened:
        expected = np.asarray(ImageOps.exif_transpose(reopened).convert("RGB"))
    read = read_image(path)
    assert read.shape == expected.shape and np.array_equal(read, expected)
    assert read.shape[:2] == ((48, 24) if orientation >= 5 else (24, 48))
    assert sorted(check_image(path)) == sorted(read.shape[:2])  # as stored: the header only


# --- check_image: what read_image would refuse, from the header where the header decides.


def files_of_every_kind(tmp_path) -> list:
    """Files read_image reads (8-bit modes, palettes, CMYK, 16-bit, 32-bit integer and float greyscale, a
    PNG without its end chunk) and files it refuses (not an image, a bomb, values out of range)."""
    arrays = {
        "l.png": random_values(256, dtype=np.uint8), "rgba.png": random_values(256, SHAPE + (4,), np.uint8),
        "i16.png": random_values(65536, dtype=np.uint16), "i16b.tif": random_values(65536, dtype=np.uint16).astype(">u2"),
        "dark.pgm": random_values(200, dtype=np.uint16), "i8.tif": random_values(256, dtype=np.int32),
        "i32.tif": np.full(SHAPE, 70000, np.int32), "unit.tif": RNG.random(SHAPE).astype(np.float32),
        "nan.tif": np.full(SHAPE, np.nan, np.float32), "large.tif": np.full(SHAPE, 300.0, np.float32),
    }
    paths = [saved(tmp_path, Image.fromarray(array), name) for name, array in arrays.items()]
    paths.append(saved(tmp_path, palette_image("P")[0], "p.png"))
    paths.append(saved(tmp_path, Image.frombytes("CMYK", SHAPE[::-1], random_values(256, SHAPE + (4,), np.uint8).tobytes()), "cmyk.tif"))
    write_raw_png(tmp_path / "deep.png", random_values(65536, SHAPE + (3,)), 2)
    write_raw_png(tmp_path / "bomb.png", np.zeros((1, 1), np.uint8), 0, 8, size=(13400, 13400))
    (tmp_path / "text.png").write_bytes(b"not a png")
    (tmp_path / "endless.png").write_bytes((tmp_path / "l.png").read_bytes()[:-12])  # no IEND: PIL reads it
    return [*paths, *(tmp_path / name for name in ("deep.png", "bomb.png", "text.png", "endless.png"))]


def test_check_image_refuses_exactly_what_read_image_refuses_with_the_same_line(tmp_path) -> None:
    read, refused = 0, 0
    for path in files_of_every_kind(tmp_path):
        try:
            height, width, _ = read_image(path).shape
        except DdpmsegError as error:
            refused += 1
            with pytest.raises(DdpmsegError) as info:
                check_image(path)
            assert str(info.value) == str(error)
        else:
            read += 1
            assert check_image(path) == (width, height), path.name
    assert (read, refused) == (11, 5)


def test_check_image_decodes_no_pixels_so_data_cut_short_is_found_only_by_read_image(tmp_path, monkeypatch) -> None:
    for name in ("photo.jpg", "photo.png"):
        path = saved(tmp_path, Image.fromarray(random_values(256, (64, 48, 3), np.uint8)), name)
        with monkeypatch.context() as patched:
            patched.setattr(Image.Image, "load", lambda self: pytest.fail("check_image decoded the pixels"))
            assert check_image(path) == (48, 64)
        path.write_bytes(path.read_bytes()[:-500])
        assert check_image(path) == (48, 64)
        with pytest.raises(DdpmsegError, match=rf"{name}: unreadable image \(.*truncated"):
            read_image(path)
