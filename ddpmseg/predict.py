"""Ensemble prediction (docs/method.md §4): per-pixel mode of the members' labels and JS uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .upsample import LayerGroups


def mode_vote(labels: torch.Tensor, number_class: int) -> torch.Tensor:
    """Per-column mode of (M, P) labels; ties go to the smallest label."""
    counts = torch.zeros((number_class, labels.shape[1]), dtype=torch.int32)
    counts.scatter_add_(0, labels.long(), torch.ones_like(labels, dtype=torch.int32))
    return counts.argmax(dim=0)  # argmax returns the first maximum, i.e. the smallest label


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats, with 0 log 0 = 0."""
    return torch.special.entr(probs).sum(dim=dim)


def js_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of (M, P, K) member probabilities: H(mean) - mean of H, per pixel."""
    return entropy(probs.mean(dim=0)) - entropy(probs).mean(dim=0)


def uncertainty_score(js: torch.Tensor, fraction: float = 0.1) -> float:
    """An image's uncertainty: the mean of its top ``fraction`` of per-pixel JS values."""
    values = js.flatten()
    count = max(1, int(values.numel() * fraction))
    return float(values.topk(count).values.mean())


@torch.no_grad()
def predict_image(
    models: Sequence[nn.Module],
    layers: Sequence[torch.Tensor],
    image_size: int,
    number_class: int,
    chunk: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label one image with an ensemble.

    ``layers`` are the image's channel-last activations (h, w, C) in feature order (as
    :meth:`ddpmseg.store.FeatureStore.activations` returns them). Features are computed exactly for
    ``chunk`` pixels at a time. Returns (labels (S, S) int64, JS uncertainty (S, S) float32).
    """
    grouped = LayerGroups.from_layers([layer[None] for layer in layers], image_size)
    pixels = torch.arange(image_size * image_size)
    labels, js = [], []
    for start in range(0, len(pixels), chunk):
        index = pixels[start : start + chunk]
        features = grouped.features(torch.zeros_like(index), index // image_size, index % image_size)
        logits = torch.stack([model(features) for model in models])  # (M, P, K)
        labels.append(mode_vote(logits.argmax(dim=2), number_class))
        js.append(js_uncertainty(logits.softmax(dim=2)))
    return torch.cat(labels).reshape(image_size, image_size), torch.cat(js).reshape(image_size, image_size)
