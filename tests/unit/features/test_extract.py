"""Extraction into feature stores: stored activations equal the hooked, interpolated activations of the
DDPM, each noise seed gives its own, and blocks are stored in the model's order."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from conftest import FEATURE_BLOCKS, FEATURE_STEPS, TINY_FLAGS

from ddpmseg.diffusion.model import load_ddpm
from ddpmseg.features.extract import extract_to_store
from ddpmseg.diffusion.activations import shared_noise
from ddpmseg.features.store import FeatureStore


def _hooked_activations(model, diffusion, images: torch.Tensor, noise: torch.Tensor) -> dict:
    """Independent path: plain forward hooks on every decoder block, full forward pass."""
    out = {}
    for step in FEATURE_STEPS:
        captured = {}
        handles = [
            model.output_blocks[b].register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(b, o.detach().clone()))
            for b in FEATURE_BLOCKS
        ]
        t = torch.full((len(images),), step, dtype=torch.long)
        x_t = diffusion.q_sample(images, t, noise=noise.expand_as(images))
        with torch.no_grad():
            model(x_t, t)
        for handle in handles:
            handle.remove()
        for b in FEATURE_BLOCKS:
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
        model, diffusion, images, labels, [f"im{i}" for i in range(5)], steps=FEATURE_STEPS, blocks=FEATURE_BLOCKS, noise_seed=7,
        batch_size=2, out=out, attrs={"checkpoint_sha256": "x"}, progress=False,
    )
    store = FeatureStore(out)
    assert store.names == [f"im{i}" for i in range(5)]
    np.testing.assert_array_equal(store.all_labels(), labels)
    np.testing.assert_array_equal(store.image(3), images[3])

    x0 = torch.from_numpy((images.astype(np.float32) / 255 * 2 - 1).transpose(0, 3, 1, 2).copy())
    hooked = _hooked_activations(model, diffusion, x0, shared_noise(7, size))
    upsampled = torch.cat(
        [F.interpolate(hooked[(s, b)], size=(size, size), mode="bilinear", align_corners=False) for s in FEATURE_STEPS for b in FEATURE_BLOCKS],
        dim=1,
    )
    assert store.feature_dim == upsampled.shape[1]
    for index in (0, 2, 4):
        ys = rng.integers(0, size, 64)
        xs = rng.integers(0, size, 64)
        got = store.pixel_features(index, ys, xs)
        expected = upsampled[index][:, ys, xs].T
        torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)  # stored as float16


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
        extract_to_store(model, diffusion, images, np.zeros((2, size, size)), ["a", "b"], steps=FEATURE_STEPS, blocks=FEATURE_BLOCKS,
                         noise_seed=seed, batch_size=2, out=out, attrs={"checkpoint_sha256": "x"}, progress=False)
        stores[seed] = FeatureStore(out)
        assert stores[seed].attrs["noise_seed"] == seed
        noise = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))  # the reference's draw
        hooked = _hooked_activations(model, diffusion, x0, noise)
        expected = torch.cat(
            [F.interpolate(hooked[(s, b)], size=(size, size), mode="bilinear", align_corners=False)
             for s in FEATURE_STEPS for b in FEATURE_BLOCKS],
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
        extract_to_store(model, diffusion, images, np.zeros((1, size, size)), ["a"], steps=FEATURE_STEPS, blocks=blocks,
                         noise_seed=0, batch_size=1, out=tmp_path / f"{name}.zarr", attrs={"checkpoint_sha256": "x"},
                         progress=False)
    ordered, unordered = FeatureStore(tmp_path / "sorted.zarr"), FeatureStore(tmp_path / "unsorted.zarr")
    assert unordered.attrs["blocks"] == [0, 2, 3]
    torch.testing.assert_close(_store_features(unordered, 0), _store_features(ordered, 0), rtol=0, atol=0)

