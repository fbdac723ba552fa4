"""Ensemble vote and uncertainty against hand-worked values."""

from __future__ import annotations

import math

import torch

from ddpmseg.classifier import build_classifier
from ddpmseg.predict import js_uncertainty, mode_vote, predict_image, uncertainty_score
from ddpmseg.upsample import gather_features


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
