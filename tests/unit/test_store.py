"""Features read back from a store equal F.interpolate of the hooked activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_FLAGS

from ddpmseg.ddpm import load_ddpm
from ddpmseg.features import extract_to_store, shared_noise
from ddpmseg.sampler import PixelSampler
from ddpmseg.store import FeatureStore, LayerGroups, bilinear_taps, gather_features

STEPS = [10, 400]
BLOCKS = [0, 2, 3]


@pytest.mark.parametrize("in_size,out_size", [(4, 32), (8, 32), (16, 32), (32, 32), (5, 64), (32, 256)])
def test_gather_equals_interpolate_float32(in_size: int, out_size: int) -> None:
    generator = torch.Generator().manual_seed(in_size * out_size)
    act = torch.randn(3, 7, in_size, in_size, generator=generator)
    reference = F.interpolate(act, size=(out_size, out_size), mode="bilinear", align_corners=False)
    image = torch.randint(0, 3, (500,), generator=generator)
    ys = torch.randint(0, out_size, (500,), generator=generator)
    xs = torch.randint(0, out_size, (500,), generator=generator)
    ys[:4], xs[:4] = torch.tensor([0, 0, out_size - 1, out_size - 1]), torch.tensor([0, out_size - 1, 0, out_size - 1])
    got = gather_features([act.permute(0, 2, 3, 1).contiguous()], image, ys, xs, out_size)
    expected = reference[image, :, ys, xs]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_taps_of_identity_size_are_the_pixel_itself() -> None:
    lo, hi, frac = bilinear_taps(torch.arange(16), 16, 16)
    assert torch.equal(lo, torch.arange(16)) and torch.all(frac == 0)


def _hooked_activations(model, diffusion, images: torch.Tensor, noise: torch.Tensor) -> dict:
    """Independent path: plain forward hooks on every decoder block, full forward pass."""
    out = {}
    for step in STEPS:
        captured = {}
        handles = [
            model.output_blocks[b].register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(b, o.detach().clone()))
            for b in BLOCKS
        ]
        t = torch.full((len(images),), step, dtype=torch.long)
        x_t = diffusion.q_sample(images, t, noise=noise.expand_as(images))
        with torch.no_grad():
            model(x_t, t)
        for handle in handles:
            handle.remove()
        for b in BLOCKS:
            out[(step, b)] = captured[b]
    return out


def test_store_features_equal_interpolated_hooked_activations(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    rng = np.random.default_rng(1)
    size = TINY_FLAGS["image_size"]
    images = rng.integers(0, 256, size=(5, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=(5, size, size))
    out = tmp_path / "shard0.zarr"
    extract_to_store(
        model, diffusion, images, labels, [f"im{i}" for i in range(5)], STEPS, BLOCKS, 7, 2, out,
        {"checkpoint_sha256": "x"}, progress=False,
    )
    store = FeatureStore(out)
    assert store.names == [f"im{i}" for i in range(5)]
    np.testing.assert_array_equal(store.all_labels(), labels)
    np.testing.assert_array_equal(store.image(3), images[3])

    x0 = torch.from_numpy((images.astype(np.float32) / 255 * 2 - 1).transpose(0, 3, 1, 2).copy())
    hooked = _hooked_activations(model, diffusion, x0, shared_noise(7, size))
    upsampled = torch.cat(
        [F.interpolate(hooked[(s, b)], size=(size, size), mode="bilinear", align_corners=False) for s in STEPS for b in BLOCKS],
        dim=1,
    )
    assert store.feature_dim == upsampled.shape[1]
    for index in (0, 2, 4):
        ys = rng.integers(0, size, 64)
        xs = rng.integers(0, size, 64)
        got = store.pixel_features(index, ys, xs)
        expected = upsampled[index][:, ys, xs].T
        torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)  # stored as float16


def test_store_layers_are_native_resolution_float16_chunked_per_image(tmp_path, tiny_checkpoint) -> None:
    import zarr

    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    extract_to_store(model, diffusion, images, np.zeros((3, 32, 32)), ["a", "b", "c"], STEPS, BLOCKS, 0, 2,
                     tmp_path / "s.zarr", {"checkpoint_sha256": "abc"}, progress=False)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group.metadata.zarr_format == 3
    attrs = dict(group.attrs)
    assert attrs["steps"] == STEPS and attrs["blocks"] == BLOCKS and attrs["noise_seed"] == 0
    assert attrs["names"] == ["a", "b", "c"] and attrs["checkpoint_sha256"] == "abc"
    assert "ddpmseg_version" in attrs
    for layer in attrs["layers"]:
        array = group[f"act_t{layer['step']}_b{layer['block']}"]
        assert array.dtype == np.float16
        assert array.shape == (3, layer["channels"], layer["height"], layer["width"])
        assert array.chunks == (1, layer["channels"], layer["height"], layer["width"])
        assert array.compressors  # compressed
    heights = {layer["block"]: layer["height"] for layer in attrs["layers"]}
    assert heights[0] < 32  # the first decoder block is below image resolution: not stored upsampled


def test_sampler_features_equal_store_features(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    labels = np.full((2, 32, 32), 255)
    labels[0, :10, :] = 1
    labels[1, 5:25, 3:9] = 0
    labels[1, 0, 0] = 2  # a 1-pixel class: removed as a small annotation
    extract_to_store(model, diffusion, images, labels, ["a", "b"], STEPS, BLOCKS, 0, 2, tmp_path / "s.zarr",
                     {"checkpoint_sha256": "x"}, progress=False)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, ignore_label=255)
    assert len(sampler) == 10 * 32 + 20 * 6
    assert set(sampler.labels.tolist()) == {0, 1}
    pixels = torch.arange(0, len(sampler), 37)
    got = sampler.features(pixels)
    for row, p in enumerate(pixels.tolist()):
        image, y, x = int(sampler.image[p]), int(sampler.ys[p]), int(sampler.xs[p])
        torch.testing.assert_close(got[row], store.pixel_features(image, [y], [x])[0], rtol=1e-3, atol=1e-3)


def test_incomplete_store_is_refused(tmp_path) -> None:
    import zarr

    from ddpmseg.errors import DdpmsegError

    zarr.open_group(str(tmp_path / "half.zarr"), mode="w", zarr_format=3)
    with pytest.raises(DdpmsegError, match="half.zarr"):
        FeatureStore(tmp_path / "half.zarr")


def test_grouped_layers_equal_per_layer_gather_to_float16_rounding() -> None:
    generator = torch.Generator().manual_seed(0)
    # feature order mixes resolutions: 8, 16 (= image size), 8, 4, 16
    layers = [torch.randn(3, s, s, c, generator=generator).half() for s, c in [(8, 5), (16, 3), (8, 2), (4, 7), (16, 4)]]
    grouped = LayerGroups.from_layers(layers, 16)
    assert len(grouped.groups) == 3
    image = torch.randint(0, 3, (300,), generator=generator)
    ys = torch.randint(0, 16, (300,), generator=generator)
    xs = torch.randint(0, 16, (300,), generator=generator)
    got, expected = grouped.features(image, ys, xs), gather_features(layers, image, ys, xs, 16)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)  # one float16 rounding of the sum
    full_resolution = slice(5, 8)  # layer 2 (16 px = the image size): rows copied, no rounding
    assert torch.equal(got[:, full_resolution], expected[:, full_resolution])


def test_store_load_groups_equals_load_all(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    images = np.random.default_rng(3).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    extract_to_store(model, diffusion, images, np.zeros((3, 32, 32)), ["a", "b", "c"], STEPS, BLOCKS, 0, 2,
                     tmp_path / "s.zarr", {"checkpoint_sha256": "x"}, progress=False)
    store = FeatureStore(tmp_path / "s.zarr")
    grouped = store.load_groups([2, 0])
    image = torch.tensor([0, 1, 1, 0])
    ys, xs = torch.tensor([0, 5, 31, 17]), torch.tensor([3, 31, 0, 17])
    expected = gather_features(store.load_all([2, 0]), image, ys, xs, 32)
    torch.testing.assert_close(grouped.features(image, ys, xs), expected, rtol=1e-3, atol=1e-3)


def _store_features(store: FeatureStore, index: int) -> torch.Tensor:
    size = store.image_size
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return store.pixel_features(index, ys.ravel(), xs.ravel())


def test_each_noise_seed_gives_its_own_features_equal_to_a_recomputation(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    size = TINY_FLAGS["image_size"]
    images = np.random.default_rng(2).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)
    x0 = torch.from_numpy((images.astype(np.float32) / 255 * 2 - 1).transpose(0, 3, 1, 2).copy())
    stores = {}
    for seed in (0, 1):
        out = tmp_path / f"noise{seed}.zarr"
        extract_to_store(model, diffusion, images, np.zeros((2, size, size)), ["a", "b"], STEPS, BLOCKS, seed, 2, out,
                         {"checkpoint_sha256": "x"}, progress=False)
        stores[seed] = FeatureStore(out)
        assert stores[seed].attrs["noise_seed"] == seed
        noise = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))  # the reference's draw
        hooked = _hooked_activations(model, diffusion, x0, noise)
        expected = torch.cat(
            [F.interpolate(hooked[(s, b)], size=(size, size), mode="bilinear", align_corners=False)
             for s in STEPS for b in BLOCKS],
            dim=1,
        )
        for index in range(2):
            got = _store_features(stores[seed], index)
            torch.testing.assert_close(got, expected[index].flatten(1).T, rtol=2e-3, atol=2e-3)
    first, second = _store_features(stores[0], 0), _store_features(stores[1], 0)
    relative = (first - second).norm() / first.norm()
    assert relative > 0.05, relative  # other noise, other features


def test_blocks_are_taken_in_the_models_order_whatever_the_listed_order(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    size = TINY_FLAGS["image_size"]
    images = np.random.default_rng(3).integers(0, 256, size=(1, size, size, 3), dtype=np.uint8)
    for name, blocks in (("sorted", [0, 2, 3]), ("unsorted", [3, 0, 2])):
        extract_to_store(model, diffusion, images, np.zeros((1, size, size)), ["a"], STEPS, blocks, 0, 1,
                         tmp_path / f"{name}.zarr", {"checkpoint_sha256": "x"}, progress=False)
    ordered, unordered = FeatureStore(tmp_path / "sorted.zarr"), FeatureStore(tmp_path / "unsorted.zarr")
    assert unordered.attrs["blocks"] == [0, 2, 3]
    torch.testing.assert_close(_store_features(unordered, 0), _store_features(ordered, 0), rtol=0, atol=0)


def test_a_block_listed_twice_is_refused() -> None:
    from ddpmseg.errors import DdpmsegError
    from ddpmseg.features import model_order

    assert model_order([5, 0, 3]) == [0, 3, 5]
    with pytest.raises(DdpmsegError, match=r"^features.blocks: block 3 is listed twice$"):
        model_order([3, 0, 3])
