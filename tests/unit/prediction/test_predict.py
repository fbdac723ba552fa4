"""Ensemble vote and uncertainty against hand-worked values; native-resolution prediction against the
per-pixel reference."""

from __future__ import annotations

import math

import pytest
import torch

from ddpmseg.classifier.mlp import build_classifier, random_members
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.prediction.predict import (
    js_uncertainty,
    mode_vote,
    native_logits,
    predict_image,
    predict_image_per_pixel,
    uncertainty_score,
    vote,
)
from ddpmseg.features.upsample import LayerGroups, gather_features


def test_mode_vote_ties_go_to_smallest_label() -> None:
    labels = torch.tensor([[2, 1, 0, 3],
                           [2, 3, 0, 1],
                           [1, 3, 2, 1],
                           [1, 1, 2, 3]])
    # column 0: 2,2,1,1 tie -> 1; column 1: 1,3,3,1 tie -> 1; column 2: 0,0,2,2 tie -> 0; column 3: 3,1,1,3 -> 1
    assert mode_vote(labels, 4).tolist() == [1, 1, 0, 1]
    assert mode_vote(torch.tensor([[4], [4], [0]]), 5).tolist() == [4]


def test_js_hand_worked() -> None:
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two members, fully disagreeing, certain
    assert js_uncertainty(probs).item() == pytest_approx(math.log(2))
    same = torch.tensor([[[0.3, 0.7]], [[0.3, 0.7]]])
    assert abs(js_uncertainty(same).item()) < 1e-7
    mixed = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])
    # H(mean=[.75,.25]) - (H([.5,.5]) + 0) / 2
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - math.log(2) / 2
    assert js_uncertainty(mixed).item() == pytest_approx(expected)


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-6, abs=1e-7)


def test_uncertainty_score_is_mean_of_top_tenth() -> None:
    js = torch.arange(100, dtype=torch.float32)
    assert uncertainty_score(js) == pytest_approx(sum(range(90, 100)) / 10)
    assert uncertainty_score(torch.tensor([0.2, 0.9])) == pytest_approx(0.9)


def test_predict_image_matches_members_on_upsampled_features() -> None:
    torch.manual_seed(0)
    layers = [torch.randn(4, 4, 6).half(), torch.randn(8, 8, 3).half()]
    members = [build_classifier(9, 3).eval() for _ in range(3)]
    labels, js = predict_image(members, layers, 8, 3, chunk=10)
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    features = gather_features([layer[None] for layer in layers], torch.zeros(64, dtype=torch.long), ys.flatten(), xs.flatten(), 8)
    with torch.no_grad():
        votes = torch.stack([m(features).argmax(1) for m in members])
        probs = torch.stack([m(features).softmax(1) for m in members])
    assert torch.equal(labels.flatten(), mode_vote(votes, 3))
    torch.testing.assert_close(js.flatten(), js_uncertainty(probs))


# --------------------------------------------------------------------------------------------------
# native-resolution prediction against the per-pixel reference


def reference_logits(members, layers, image_size: int) -> torch.Tensor:
    """(M, S * S, K) logits of every pixel's exact float32 upsampled features (gather_features)."""
    ys, xs = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    features = gather_features(
        [layer[None] for layer in layers], torch.zeros(image_size**2, dtype=torch.long), ys.flatten(), xs.flatten(), image_size
    )
    with torch.no_grad():
        return torch.stack([member(features) for member in members])


def per_pixel_logits(members, layers, image_size: int) -> torch.Tensor:
    """(M, S * S, K) logits as predict_image_per_pixel computes them (features rounded to float16)."""
    grouped = LayerGroups.from_layers([layer[None] for layer in layers], image_size)
    pixels = torch.arange(image_size**2)
    features = grouped.features(torch.zeros_like(pixels), pixels // image_size, pixels % image_size)
    with torch.no_grad():
        return torch.stack([member(features) for member in members])


def assert_labels_agree_but_at_near_ties(members, layers, image_size: int, labels: torch.Tensor, reference: torch.Tensor) -> None:
    """Labels may differ only at pixels where some member's best two exact logits are closer than twice
    the per-pixel path's largest logit error (there its float16-rounded features may flip the member's
    argmax); such differences must be a handful."""
    exact = reference_logits(members, layers, image_size)
    tolerance = 2 * float((per_pixel_logits(members, layers, image_size) - exact).abs().max()) + 1e-5
    top = exact.topk(2, dim=2).values
    ties = ((top[..., 0] - top[..., 1]) < tolerance).any(dim=0).reshape(image_size, image_size)
    differ = labels != reference
    assert not (differ & ~ties).any(), "labels differ where no member's top two logits are close"
    assert int(differ.sum()) <= max(2, image_size**2 // 1000), f"{int(differ.sum())} labels differ"


# feature order mixes resolutions and puts two 8 px layers apart: 16, 8, 32 (= image size), 8
MIXED = [(16, 5), (8, 6), (32, 4), (8, 3)]


def mixed_layers(seed: int, shapes=MIXED) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, size, channels, generator=generator).half() for size, channels in shapes]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_native_logits_equal_the_exact_per_pixel_logits(dropout: float) -> None:
    layers = mixed_layers(1)
    members = random_members(18, 5, 4, dropout, seed=2)
    native = torch.cat(list(native_logits(members, layers, (32, 32), chunk=100)), dim=1)  # 3 rows per chunk
    torch.testing.assert_close(native, reference_logits(members, layers, 32), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_native_labels_equal_the_per_pixel_paths_but_at_near_ties(dropout: float) -> None:
    layers = mixed_layers(3)
    members = random_members(18, 5, 5, dropout, seed=4)
    labels, js = predict_image(members, layers, 32, 5)
    reference_labels, reference_js = predict_image_per_pixel(members, layers, 32, 5)
    assert_labels_agree_but_at_near_ties(members, layers, 32, labels, reference_labels)
    assert labels.dtype == torch.int64 and js.dtype == torch.float32 and labels.shape == js.shape == (32, 32)
    torch.testing.assert_close(js, reference_js, rtol=0, atol=2e-3)  # the reference rounds features to float16


def test_native_prediction_follows_the_feature_order_of_the_layers() -> None:
    """Layers listed in another order with the weight columns permuted the same way give the same
    labels; with the weights left as they were they do not (the test can see a wrong column order)."""
    shapes = [(8, 4), (16, 4), (8, 4)]  # equal channel counts: a wrong column mapping would not fail on shapes
    layers = mixed_layers(5, shapes)
    members = random_members(12, 6, 3, 0.0, seed=6)
    labels, js = predict_image(members, layers, 16, 6)
    reference_labels, _ = predict_image_per_pixel(members, layers, 16, 6)
    assert torch.equal(labels, reference_labels)
    order = [2, 0, 1]
    columns = torch.cat([torch.arange(4 * k, 4 * k + 4) for k in order])
    permuted = random_members(12, 6, 3, 0.0, seed=6)
    with torch.no_grad():
        for member in permuted:
            member[0].weight.copy_(member[0].weight[:, columns])
    reordered = [layers[k] for k in order]
    same_labels, same_js = predict_image(permuted, reordered, 16, 6)
    assert torch.equal(same_labels, labels)
    torch.testing.assert_close(same_js, js, rtol=1e-4, atol=1e-5)
    assert (predict_image(members, reordered, 16, 6)[0] != labels).float().mean() > 0.2


def test_native_prediction_on_paper_like_shapes() -> None:
    """The paper's five blocks (channels / 16, sizes / 2) at two steps, image 128 px, 3 members."""
    blocks = [(64, 16), (32, 16), (32, 16), (32, 32), (16, 64)]
    generator = torch.Generator().manual_seed(7)
    layers = [torch.randn(size, size, channels, generator=generator).half() for _ in range(2) for channels, size in blocks]
    members = random_members(352, 21, 3, 0.1, seed=8)
    labels, js = predict_image(members, layers, 128, 21)
    reference_labels, reference_js = predict_image_per_pixel(members, layers, 128, 21)
    assert_labels_agree_but_at_near_ties(members, layers, 128, labels, reference_labels)
    torch.testing.assert_close(js, reference_js, rtol=0, atol=2e-3)


def test_members_that_do_not_fit_the_activations_are_one_clear_error() -> None:
    members = random_members(17, 5, 2, 0.0, seed=9)
    with pytest.raises(DdpmsegError, match="expects 17 features per pixel but the activations give 18"):
        predict_image(members, mixed_layers(1), 32, 5)


def test_models_without_a_first_linear_layer_take_the_per_pixel_path() -> None:
    class Wrapped(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    members = [Wrapped(m) for m in random_members(18, 5, 2, 0.0, seed=10)]
    layers = mixed_layers(11)
    labels, js = predict_image(members, layers, 32, 5)
    reference_labels, reference_js = predict_image_per_pixel(members, layers, 32, 5)
    assert torch.equal(labels, reference_labels) and torch.equal(js, reference_js)


@pytest.mark.parametrize("shape", [(45, 70), (90, 30), (20, 20)])
def test_first_layer_outputs_at_another_size_are_those_of_features_interpolated_to_it(shape) -> None:
    """native_logits on an H x W grid instead of S x S: the logits of the features that F.interpolate gives
    at H x W, computed independently here (larger, smaller and non-square grids)."""
    layers = mixed_layers(12)
    members = random_members(18, 5, 3, 0.0, seed=13)
    labels, js = vote(native_logits(members, layers, shape), shape, 5)
    assert labels.shape == js.shape == shape
    features = torch.cat([
        torch.nn.functional.interpolate(layer.float().permute(2, 0, 1)[None], size=shape, mode="bilinear",
                                        align_corners=False)[0]
        for layer in layers
    ]).permute(1, 2, 0).reshape(-1, 18)
    with torch.no_grad():
        logits = torch.stack([member(features) for member in members])
    reference = mode_vote(logits.argmax(dim=2), 5).reshape(shape)
    top = logits.topk(2, dim=2).values
    ties = ((top[..., 0] - top[..., 1]) < 1e-4).any(dim=0).reshape(shape)
    assert not ((labels != reference) & ~ties).any()
    torch.testing.assert_close(js, js_uncertainty(logits.softmax(dim=2)).reshape(shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(45, 70), (90, 30), (20, 20), (128, 128)])
def test_labels_at_the_images_own_size_vote_on_the_members_logits_interpolated_to_it(shape) -> None:
    """predict_image with out_shape: each member's logits at the model's 32 x 32 pixels (the per-pixel
    path's), interpolated by F.interpolate to H x W, then each member's label and the mode; JS of the
    interpolated logits' softmax. Computed independently here; small chunks cut the rows."""
    layers = mixed_layers(14)
    members = random_members(18, 5, 3, 0.0, seed=15)
    labels, js = predict_image(members, layers, 32, 5, out_shape=shape, chunk=100)
    assert labels.shape == js.shape == shape
    pixels = torch.arange(32 * 32)
    with torch.no_grad():
        grid = torch.stack([member(gather_features([layer[None] for layer in layers], torch.zeros_like(pixels),
                                                   pixels // 32, pixels % 32, 32)) for member in members])
    interpolated = torch.nn.functional.interpolate(grid.reshape(3, 32, 32, 5).permute(0, 3, 1, 2), size=shape,
                                                   mode="bilinear", align_corners=False)  # (M, K, H, W)
    logits = interpolated.permute(0, 2, 3, 1).reshape(3, -1, 5)
    reference = mode_vote(logits.argmax(dim=2), 5).reshape(shape)
    top = logits.topk(2, dim=2).values
    ties = ((top[..., 0] - top[..., 1]) < 1e-4).any(dim=0).reshape(shape)
    assert not ((labels != reference) & ~ties).any() and (~ties).float().mean() > 0.99
    torch.testing.assert_close(js, js_uncertainty(logits.softmax(dim=2)).reshape(shape), rtol=1e-4, atol=1e-5)
