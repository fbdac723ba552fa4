"""The RGB control's features: a store of each pixel's values scaled to [-1, 1], read back exactly by the
code that reads the DDPM's stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.prediction.predict import predict_image
from ddpmseg.features.rgb import RGB_LAYER, rgb_activations, write_rgb_store
from ddpmseg.features.store import FeatureStore

SIZE = 16


def _images(count: int, seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, size=(count, SIZE, SIZE, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 127, 255)  # both ends of the range and the value nearest the middle
    return images


def _scaled(image: np.ndarray) -> np.ndarray:
    """Independent path: x / 127.5 - 1 per value, channel-last, in float64."""
    return image.astype(np.float64) / 127.5 - 1.0


@pytest.fixture
def rgb_store(tmp_path):
    images = _images(3)
    labels = np.random.default_rng(1).integers(0, 4, size=(3, SIZE, SIZE))
    write_rgb_store(images, labels, ["a", "b", "c"], out=tmp_path / "shard0.zarr", attrs={"number_class": 4})
    return FeatureStore(tmp_path / "shard0.zarr"), images, labels


def test_the_store_holds_each_pixels_values_scaled_to_minus_one_one(rgb_store) -> None:
    store, images, labels = rgb_store
    assert store.names == ["a", "b", "c"] and store.feature_dim == 3 and store.image_size == SIZE
    np.testing.assert_array_equal(store.all_labels(), labels)
    for index in range(3):
        np.testing.assert_array_equal(store.image(index), images[index])
        (layer,) = store.activations(index)
        assert layer.dtype == torch.float16 and layer.shape == (SIZE, SIZE, 3)
        np.testing.assert_allclose(layer.float().numpy(), _scaled(images[index]), rtol=0, atol=1e-3)  # float16 rounding
    assert float(store.activations(0)[0][0, 0, 0]) == -1.0 and float(store.activations(0)[0][0, 0, 2]) == 1.0


def test_a_pixels_features_are_its_own_values_not_a_blend_of_neighbours(rgb_store) -> None:
    store, images, _ = rgb_store
    ys, xs = np.array([0, 5, 15, 7]), np.array([3, 5, 0, 15])
    features = store.pixel_features(1, ys, xs).numpy()
    np.testing.assert_allclose(features, _scaled(images[1])[ys, xs], rtol=0, atol=1e-3)


def test_the_store_says_it_is_the_rgb_control_with_no_noise_or_checkpoint(rgb_store) -> None:
    store, _, _ = rgb_store
    assert store.attrs["feature_source"] == "rgb" and store.attrs["number_class"] == 4
    assert store.attrs["noise_seed"] is None and store.attrs["checkpoint_sha256"] is None
    assert store.attrs["steps"] == [] and store.attrs["blocks"] == []


def rgb_layers(image: np.ndarray) -> list[torch.Tensor]:
    """One image's RGB features as a store gives them (channel-last float16), computed in memory."""
    return [rgb_activations(image[None])[RGB_LAYER][0].permute(1, 2, 0).to(torch.float16)]


def test_rgb_features_of_an_image_equal_the_stores_activations_bit_for_bit(rgb_store) -> None:
    store, images, _ = rgb_store
    for index in range(3):
        (expected,) = store.activations(index)
        (layer,) = rgb_layers(images[index])
        assert layer.dtype == torch.float16 and torch.equal(layer, expected)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    labels_from_image, _ = predict_image([model], rgb_layers(images[2]), SIZE, 4)
    labels_from_store, _ = predict_image([model], store.activations(2), SIZE, 4)
    assert torch.equal(labels_from_image, labels_from_store)


@pytest.mark.parametrize(
    "image",
    [np.zeros((SIZE, SIZE, 4), np.uint8), np.zeros((SIZE, SIZE, 3), np.float32), np.zeros((SIZE, SIZE), np.uint8),
     np.zeros((SIZE, SIZE + 2, 3), np.uint8)],
    ids=["rgba", "float", "grey", "not-square"],
)
def test_an_image_that_is_not_square_rgb_uint8_is_one_clear_error(image) -> None:
    with pytest.raises(DdpmsegError, match=r"RGB features need \(n, S, S, 3\) uint8 images, not"):
        rgb_activations(image[None])
