"""Bilinear upsampling by gathered taps equals F.interpolate, per layer and grouped by resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddpmseg.features.upsample import (
    LayerGroups,
    bilinear_taps,
    gather_features,
    upsampling_taps,
)


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


def test_upsampling_taps_sum_the_interpolated_maps_row_by_row() -> None:
    generator = torch.Generator().manual_seed(3)
    sizes = [(4, 8), (16, 16), (9, 5)]  # non-square, the image size itself, a size that does not divide it
    maps = [torch.randn(h, w, 6, generator=generator) for h, w in sizes]
    expected = sum(
        F.interpolate(m.permute(2, 0, 1)[None], size=(16, 16), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        for m in maps
    )
    table = torch.cat([m.reshape(-1, 6) for m in maps])
    rows = torch.tensor([0, 5, 6, 15])
    indices, weights = upsampling_taps(sizes, rows, 16, 16)
    assert indices.shape == weights.shape == (4 * 16, 12)
    got = F.embedding_bag(indices, table, per_sample_weights=weights, mode="sum").reshape(4, 16, 6)
    torch.testing.assert_close(got, expected[rows], rtol=0, atol=1e-5)
