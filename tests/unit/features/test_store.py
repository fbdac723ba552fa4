"""The feature store's zarr format: native-resolution float16 layers chunked per image, refused when
incomplete, and its grouped loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FEATURE_BLOCKS, FEATURE_STEPS, TINY_FLAGS

from ddpmseg.diffusion.model import load_ddpm
from ddpmseg.features.extract import extract_to_store
from ddpmseg.features.store import FeatureStore
from ddpmseg.features.upsample import gather_features


def test_store_layers_are_native_resolution_float16_chunked_per_image(tmp_path, tiny_checkpoint) -> None:
    import zarr

    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    extract_to_store(model, diffusion, images, np.zeros((3, 32, 32)), ["a", "b", "c"], steps=FEATURE_STEPS, blocks=FEATURE_BLOCKS,
                     noise_seed=0, batch_size=2, out=tmp_path / "s.zarr", attrs={"checkpoint_sha256": "abc"}, progress=False)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group.metadata.zarr_format == 3
    attrs = dict(group.attrs)
    assert attrs["steps"] == FEATURE_STEPS and attrs["blocks"] == FEATURE_BLOCKS and attrs["noise_seed"] == 0
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


def test_incomplete_store_is_refused(tmp_path) -> None:
    import zarr

    from ddpmseg.base.errors import DdpmsegError

    zarr.open_group(str(tmp_path / "half.zarr"), mode="w", zarr_format=3)
    with pytest.raises(DdpmsegError, match="half.zarr"):
        FeatureStore(tmp_path / "half.zarr")


def test_store_load_groups_equals_load_all(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    images = np.random.default_rng(3).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    extract_to_store(model, diffusion, images, np.zeros((3, 32, 32)), ["a", "b", "c"], steps=FEATURE_STEPS, blocks=FEATURE_BLOCKS,
                     noise_seed=0, batch_size=2, out=tmp_path / "s.zarr", attrs={"checkpoint_sha256": "x"}, progress=False)
    store = FeatureStore(tmp_path / "s.zarr")
    grouped = store.load_groups([2, 0])
    image = torch.tensor([0, 1, 1, 0])
    ys, xs = torch.tensor([0, 5, 31, 17]), torch.tensor([3, 31, 0, 17])
    expected = gather_features(store.load_all([2, 0]), image, ys, xs, 32)
    torch.testing.assert_close(grouped.features(image, ys, xs), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_load_groups_fills_its_buffers_with_the_views_in_order_whatever_the_threads(tmp_path, workers) -> None:
    from conftest import write_identity_store

    from ddpmseg.features.upsample import LayerGroups

    write_identity_store(tmp_path / "s.zarr", views=5)
    store = FeatureStore(tmp_path / "s.zarr")
    expected = LayerGroups.from_layers(store.load_all([3, 0, 4]), store.image_size)
    buffers = [torch.full_like(buffer, float("nan")) for buffer in store.group_buffers(4)]
    grouped = store.load_groups([3, 0, 4], buffers, workers=workers)
    assert [group.data_ptr() for group in grouped.groups] == [buffer.data_ptr() for buffer in buffers]
    for got, want, buffer in zip(grouped.groups, expected.groups, buffers):
        assert torch.equal(got, want)
        assert buffer[3:].isnan().all()  # rows past the views are left alone
    assert grouped.runs == expected.runs
