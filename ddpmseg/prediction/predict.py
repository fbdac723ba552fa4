"""Ensemble prediction (docs/method.md §4): per-pixel mode of the members' labels and JS uncertainty.

The members' logits of every pixel are computed one of two exact ways. :func:`predict_image` works at
the activations' native resolution: a member's first layer is linear and bilinear upsampling is a fixed
linear map per channel, so W · upsample(a) = upsample(W · a); the first layers (all members stacked in
one product) are applied to each layer's native activations, the products of layers of equal size are
summed, upsampled to the image size and summed with the bias, and only the rest of each MLP runs per
pixel (docs/performance.md, "Prediction at native resolution"). At the paper's shapes the first layer
costs 3.2 instead of 70.9 GMAC per member and image, and no (S², D) feature matrix is built. :func:`predict_image_per_pixel` upsamples every pixel's features and runs the
whole MLP on them: the reference the tests compare with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..base.errors import DdpmsegError
from ..features.upsample import LayerGroups, LayerShape, upsampling_taps


def mode_vote(labels: torch.Tensor, number_class: int) -> torch.Tensor:
    """Per-column mode of (M, P) labels; ties go to the smallest label."""
    counts = torch.zeros((number_class, labels.shape[1]), dtype=torch.int32)
    counts.scatter_add_(0, labels.long(), torch.ones_like(labels, dtype=torch.int32))
    return counts.argmax(dim=0)  # argmax returns the first maximum, i.e. the smallest label


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats, with 0 log 0 = 0."""
    return torch.special.entr(probs).sum(dim=dim)


def js_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of (M, P, K) member probabilities: H(mean) - mean of H, per pixel, at
    least 0 (the difference of rounded entropies of agreeing members can fall a rounding error below)."""
    return (entropy(probs.mean(dim=0)) - entropy(probs).mean(dim=0)).clamp_(min=0.0)


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
    chunk: int = 2048,
    out_shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label one image with an ensemble, its first layers applied at the activations' native resolution.

    The labels are those of the model's ``image_size`` x ``image_size`` pixels (the features' grid, the
    paper's metric), or with ``out_shape`` (H, W) those of an H x W grid over the same image: each
    member's logits at the model's pixels are upsampled bilinearly to H x W and the vote is taken there
    (:func:`upsampled_logits`), so boundaries fall between the model's pixels where the members' scores
    cross, rather than on the model's grid scaled up.

    ``layers`` are the image's channel-last activations (h, w, C) in feature order (as
    :meth:`ddpmseg.features.store.FeatureStore.activations` returns them); the members are classifiers of
    :func:`ddpmseg.classifier.mlp.build_classifier` (an ``nn.Sequential`` whose first module is an
    ``nn.Linear``; other models go through :func:`predict_image_per_pixel`). The work runs on the
    members' device, the rest of the MLPs on ``chunk`` pixels (whole rows) at a time (2048: their
    first-layer units, 2048 x M x 128 floats, mostly stay in the CPU's cache; 8192 took 1.3x as long at
    the paper's shapes). Returns (labels int64, JS uncertainty float32) of the grid on the CPU, at the
    model's size equal to :func:`predict_image_per_pixel`'s up to float rounding (docs/performance.md).
    """
    shape = tuple(out_shape or (image_size, image_size))
    square = (image_size, image_size)
    if not all(_first_layer(model) is not None for model in models):
        if shape != square:
            raise DdpmsegError("labels at another size than the model's need members whose first layer is linear")
        return predict_image_per_pixel(models, layers, image_size, number_class, chunk)
    logits = native_logits(models, layers, square, chunk)
    if shape != square:
        logits = upsampled_logits(torch.cat(list(logits), dim=1), image_size, shape, chunk)
    return vote(logits, shape, number_class)


def upsampled_logits(
    logits: torch.Tensor, image_size: int, out_shape: tuple[int, int], chunk: int = 2048
) -> Iterator[torch.Tensor]:
    """The members' logits (M, S * S, K) at the model's pixels, upsampled bilinearly (as
    ``F.interpolate``, align_corners=False) to an ``out_shape`` (H, W) grid over the same image: (M, P, K)
    for whole rows at a time, ``chunk`` pixels or so, so that a large photo never holds its (H * W, M, K)
    logits at once.

    Why the logits and not the first layer's outputs (the exact identity the model-size prediction
    uses, taken to H x W): the members learnt from features at the model's pixels, and features
    interpolated between two of them (a disc's edge and the background beside it) are mixtures they
    never saw; on the demo's scenes at 4x the model's size that lost 4 to 6 points of mIoU against
    labels scaled up by nearest neighbour, while upsampled logits gained 4 to 6
    (docs/performance.md, "Labels at the image's resolution")."""
    members, pixels, classes = logits.shape
    table = logits.permute(1, 0, 2).reshape(pixels, members * classes)  # one row per model pixel
    out_height, out_width = out_shape
    rows_per_chunk = max(1, chunk // out_width)
    for start in range(0, out_height, rows_per_chunk):
        rows = torch.arange(start, min(start + rows_per_chunk, out_height), device=logits.device)
        taps, weights = upsampling_taps([(image_size, image_size)], rows, out_height, out_width)
        upsampled = nn.functional.embedding_bag(taps, table, per_sample_weights=weights, mode="sum")
        yield upsampled.reshape(-1, members, classes).permute(1, 0, 2)


@torch.no_grad()
def native_logits(
    models: Sequence[nn.Sequential], layers: Sequence[torch.Tensor], out_shape: tuple[int, int], chunk: int = 2048
) -> Iterator[torch.Tensor]:
    """The members' logits (M, P, K) of an ``out_shape`` (H, W) grid of pixels over the image, row-major,
    whole rows (P a multiple of W) at a time, computed at native resolution (module docstring): the
    first layer's outputs upsampled to that grid. At the model's size these are the per-pixel path's
    logits; at another size, see :func:`upsampled_logits` for why labelling does not use them."""
    firsts = [_first_layer(model) for model in models]
    feature_dim = sum(layer.shape[2] for layer in layers)
    for first in firsts:
        if first.in_features != feature_dim:
            raise DdpmsegError(
                f"a member expects {first.in_features} features per pixel but the activations give {feature_dim}"
            )
    device = firsts[0].weight.device
    weight = torch.cat([first.weight for first in firsts])  # (M * H, D): every member's hidden units
    # one table of rows: the products of every resolution, flattened, then the bias (a tap of weight 1)
    sizes, table = _native_products(layers, weight, torch.cat([first.bias for first in firsts]))
    ends = torch.tensor([first.out_features for first in firsts]).cumsum(0).tolist()
    spans = list(zip([0, *ends[:-1]], ends))
    unitwise, first_other = _stacked_unitwise(models)
    rests = [model[first_other:] for model in models]
    out_height, out_width = out_shape
    rows_per_chunk = max(1, chunk // out_width)
    for start in range(0, out_height, rows_per_chunk):
        rows = torch.arange(start, min(start + rows_per_chunk, out_height), device=device)
        taps, tap_weights = upsampling_taps(sizes, rows, out_height, out_width)
        bias_tap = torch.full((len(taps), 1), len(table) - 1, device=device)
        hidden = nn.functional.embedding_bag(
            torch.cat([taps, bias_tap], 1),
            table,
            per_sample_weights=torch.cat([tap_weights, torch.ones_like(bias_tap, dtype=tap_weights.dtype)], 1),
            mode="sum",
        )  # (P, M * H): every member's first layer at these pixels
        for step in unitwise:
            hidden = step(hidden)
        yield torch.stack([rest(hidden[:, a:b]) for rest, (a, b) in zip(rests, spans)])


def _native_products(
    layers: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor
) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Resolutions (h, w) in order of first appearance, and one float32 table (rows, M * H): per
    resolution, its h * w rows hold the sum over its layers of the layer's activations (h, w, C_k)
    times the weight columns of that layer's features; the last row holds ``bias``."""
    shapes = [LayerShape(layer.shape[2], layer.shape[0], layer.shape[1]) for layer in layers]
    sizes, group_layers = LayerGroups.plan(shapes)
    table = torch.empty((sum(h * w for h, w in sizes) + 1, weight.shape[0]), dtype=torch.float32, device=weight.device)
    starts = torch.tensor([0] + [shape.channels for shape in shapes]).cumsum(0).tolist()
    offset = 0
    for (height, width), group in zip(sizes, group_layers):
        rows = table[offset : offset + height * width]
        for n, k in enumerate(group):
            flat = layers[k].to(device=weight.device, dtype=torch.float32).reshape(height * width, -1)
            columns = weight[:, starts[k] : starts[k + 1]].T  # the feature columns of layer k
            if n == 0:
                torch.mm(flat, columns, out=rows)
            else:
                rows.addmm_(flat, columns)
        offset += height * width
    table[offset] = bias
    return sizes, table


def _stacked_unitwise(models: Sequence[nn.Sequential]) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], int]:
    """The modules after the members' first layers that act on each hidden unit alone, as steps on all
    members' hidden units at once (P, M * H), and the index of the first module that does not.

    Taken while every member has, at the same place, a ReLU, a BatchNorm1d in eval mode with running
    statistics (the same ``eps``), or a Dropout in eval mode: one pass over the stacked units instead of
    one small kernel per member (the strided per-member slices made those 7x slower).
    """
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    index = 1
    while all(index < len(model) for model in models):
        modules = [model[index] for model in models]
        if all(isinstance(m, nn.ReLU) for m in modules):
            steps.append(torch.relu_)
        elif all(isinstance(m, nn.Dropout) and not m.training for m in modules):
            pass
        elif all(_eval_norm(m) for m in modules) and len({m.eps for m in modules}) == 1:
            steps.append(partial(nn.functional.batch_norm, **_stacked_norm(modules), training=False))
        else:
            break
        index += 1
    return steps, index


def _eval_norm(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.BatchNorm1d)
        and not module.training
        and module.running_mean is not None
        and module.affine
    )


def _stacked_norm(norms: Sequence[nn.BatchNorm1d]) -> dict[str, Any]:
    return {
        "running_mean": torch.cat([m.running_mean for m in norms]),
        "running_var": torch.cat([m.running_var for m in norms]),
        "weight": torch.cat([m.weight for m in norms]),
        "bias": torch.cat([m.bias for m in norms]),
        "eps": norms[0].eps,
    }


def _first_layer(model: nn.Module) -> nn.Linear | None:
    """The first module of an ``nn.Sequential`` when it is an ``nn.Linear``, else None."""
    if isinstance(model, nn.Sequential) and len(model) > 0 and isinstance(model[0], nn.Linear):
        return model[0]
    return None


def vote(
    logits: Iterator[torch.Tensor], shape: int | tuple[int, int], number_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels int64, JS float32) of ``shape`` (S, or (H, W)) on the CPU from the members' logits (M, P, K)
    of consecutive pixel chunks in row-major order."""
    shape = (shape, shape) if isinstance(shape, int) else tuple(shape)
    labels, js = [], []
    for chunk_logits in logits:
        labels.append(mode_vote(chunk_logits.argmax(dim=2).cpu(), number_class))
        js.append(js_uncertainty(chunk_logits.softmax(dim=2)).cpu())
    return torch.cat(labels).reshape(shape), torch.cat(js).reshape(shape)


@torch.no_grad()
def predict_image_per_pixel(
    models: Sequence[nn.Module],
    layers: Sequence[torch.Tensor],
    image_size: int,
    number_class: int,
    chunk: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label one image with an ensemble, every pixel's upsampled features computed (the reference path).

    ``layers`` are the image's channel-last activations (h, w, C) in feature order (as
    :meth:`ddpmseg.features.store.FeatureStore.activations` returns them). Features are computed exactly for
    ``chunk`` pixels at a time on the CPU, the MLPs run on the members' device. Returns (labels (S, S)
    int64, JS uncertainty (S, S) float32) on the CPU.
    """
    grouped = LayerGroups.from_layers([layer[None].cpu() for layer in layers], image_size)
    pixels = torch.arange(image_size * image_size)
    device = next(iter(models[0].parameters()), torch.empty(0)).device

    def logits() -> Iterator[torch.Tensor]:
        for start in range(0, len(pixels), chunk):
            index = pixels[start : start + chunk]
            features = grouped.features(torch.zeros_like(index), index // image_size, index % image_size).to(device)
            yield torch.stack([model(features) for model in models])  # (M, P, K)

    return vote(logits(), image_size, number_class)
