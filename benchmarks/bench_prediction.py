"""Prediction of one image by a 10-member ensemble: per-pixel features against native resolution.

Per pixel (``ddpmseg.prediction.predict.predict_image_per_pixel``, the code before native-resolution prediction):
every pixel's 8448 upsampled features, then each member's whole MLP. Native resolution
(``ddpmseg.prediction.predict.predict_image``): the members' first layers applied to the activations at their
native resolution, upsampled, then the rest of the MLPs. Both on the same random paper-shaped
activations (float16, channel-last, as ``FeatureStore.activations`` returns them) and the same random
members, each path in its own process (its peak RSS); the labels and JS maps of the two are compared.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import performance_doc
import synthetic
import torch
import workers
from performance_doc import fmt
from synthetic import GB

from ddpmseg.classifier.mlp import random_members

NAME = "prediction"
MEMBERS = 10
GOAL = 10.0


def shapes(quick: bool) -> tuple[list[tuple[int, int]], int]:
    """Per layer (channels, size) in feature order (steps outer, blocks inner), and the image size:
    the paper's (docs/method.md §3), or for ``quick`` channels / 8 and sizes / 4."""
    if quick:
        return [(c // 8, r // 4) for _ in synthetic.PAPER_STEPS for _, c, r in synthetic.PAPER_BLOCKS], synthetic.IMAGE_SIZE // 4
    return [(c, r) for _ in synthetic.PAPER_STEPS for _, c, r in synthetic.PAPER_BLOCKS], synthetic.IMAGE_SIZE


def random_activations(layers: list[tuple[int, int]], seed: int) -> list[torch.Tensor]:
    """One image's activations: N(0, 1) float16, channel-last (h, w, C) per layer."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((size, size, channels), generator=generator).half() for channels, size in layers]


def time_prediction(path: str, members: list[torch.nn.Module], images: list[list[torch.Tensor]], image_size: int,
                    number_class: int) -> tuple[list[float], tuple[torch.Tensor, torch.Tensor]]:
    """Seconds per image of ``path`` ("native" or "per_pixel") and the first image's (labels, JS)."""
    from ddpmseg.prediction.predict import predict_image, predict_image_per_pixel

    predict = predict_image if path == "native" else predict_image_per_pixel
    seconds, first = [], None
    for layers in images:
        started = time.perf_counter()
        result = predict(members, layers, image_size, number_class)
        seconds.append(time.perf_counter() - started)
        if first is None:
            first = result
    return seconds, first


def closest_logit_gaps(quick: bool, members: int, pixels: np.ndarray) -> list[float]:
    """At each of ``pixels`` ((row, column) pairs) of the first image, the smallest gap between a
    member's two best logits, from exact float32 upsampled features (``upsample.gather_features``)."""
    from ddpmseg.features.upsample import gather_features

    if len(pixels) == 0:
        return []
    layers, image_size = shapes(quick)
    models = random_members(sum(c for c, _ in layers), synthetic.NUMBER_CLASS, members, dropout=0.1)
    activations = [layer[None] for layer in random_activations(layers, 0)]
    ys, xs = torch.as_tensor(pixels[:, 0]), torch.as_tensor(pixels[:, 1])
    features = gather_features(activations, torch.zeros_like(ys), ys, xs, image_size)
    with torch.no_grad():
        top = torch.stack([model(features) for model in models]).topk(2, dim=2).values
    return (top[..., 0] - top[..., 1]).min(dim=0).values.tolist()


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    layers, image_size = shapes(payload["quick"])
    feature_dim = sum(channels for channels, _ in layers)
    members = random_members(feature_dim, synthetic.NUMBER_CLASS, payload["members"], dropout=0.1)
    images = [random_activations(layers, seed) for seed in range(payload["images"])]
    seconds, (labels, js) = time_prediction(payload["path"], members, images, image_size, synthetic.NUMBER_CLASS)
    out = Path(payload["out"])
    np.save(out / f"{payload['path']}-labels.npy", labels.numpy())
    np.save(out / f"{payload['path']}-js.npy", js.numpy())
    return {"seconds": seconds, "feature_dim": feature_dim, "image_size": image_size}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="images timed per path (default 2, --quick 2)")
    args = common.parse_args(p)
    if args.worker:
        return workers.serve_worker(worker, args.worker)
    images = args.images or 2
    members = 3 if args.quick else MEMBERS
    threads = common.set_threads(args.threads)
    out = args.workdir / "prediction"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"threads": threads, "quick": args.quick, "members": members, "images": images, "out": str(out)}
    results = {}
    for path in ("per_pixel", "native"):
        print(f"{path} ...", flush=True)
        results[path] = workers.run_worker(__file__, {**payload, "path": path})
    idle = workers.run_worker(__file__, {**payload, "idle": True})
    per_pixel, native = results["per_pixel"], results["native"]
    labels = {path: np.load(out / f"{path}-labels.npy") for path in results}
    js = {path: np.load(out / f"{path}-js.npy") for path in results}
    differ = np.argwhere(labels["native"] != labels["per_pixel"])
    disagreements = len(differ)
    gaps = closest_logit_gaps(args.quick, members, differ)
    gap_text = (
        f"at each of them some member's two best logits (exact float32 features) are within "
        f"{max(gaps):.1e} of each other" if gaps else "none"
    )
    js_gap = float(np.abs(js["native"] - js["per_pixel"]).max())
    mean = {path: float(np.mean(r["seconds"])) for path, r in results.items()}
    ratio = mean["per_pixel"] / mean["native"]
    size, dim = native["image_size"], native["feature_dim"]
    rows = [
        ["per pixel: upsampled features, whole MLP (`predict_image_per_pixel`)", fmt(mean["per_pixel"]),
         " / ".join(fmt(s) for s in per_pixel["seconds"]), fmt(per_pixel["peak_rss_bytes"] / GB)],
        ["native resolution (`predict_image`)", fmt(mean["native"]), " / ".join(fmt(s) for s in native["seconds"]),
         fmt(native["peak_rss_bytes"] / GB)],
        ["speedup (per pixel / native)", f"{ratio:.1f}×", "", ""],
    ]
    table = performance_doc.markdown_table(["prediction of one image", "s per image (mean)", "each image (s)",
                                            "peak RSS (GB)"], rows)
    ok = "met" if ratio >= GOAL else "NOT met"
    native_gmac = sum(c * r * r for c, r in shapes(args.quick)[0]) * 128 / 1e9
    notes = f"""
{members} members (`build_classifier({dim}, 21, dropout=0.1)` in eval mode, random weights scaled like
trained ones: Linear N(0, 1/fan-in), random biases and BatchNorm statistics), {images} image(s) of random
N(0, 1) float16 channel-last activations at the paper's shapes (docs/method.md §3: blocks of 1024, 512,
512, 512, 256 channels at 32, 32, 32, 64, 128 px, steps 50, 150, 250; {dim} features), image {size} px,
every pixel predicted (nothing extrapolated), each path in its own process with the same data.
*Peak RSS*: `VmHWM` of that process, which includes {idle['peak_rss_bytes'] / GB:.2f} GB for an
interpreter that only imports torch, zarr and ddpmseg. The first layer costs
{size * size * dim * 128 / 1e9:.1f} GMAC per member and image per pixel, {native_gmac:.1f} GMAC at native
resolution.

Labels of the first image that differ between the two paths: **{disagreements}** of {size * size:,} pixels;
{gap_text} (the per-pixel path rounds each pixel's upsampled features to float16, the native path
does not: a member's label can differ only where its two best logits are within that rounding).
Largest JS difference {js_gap:.1e}.

Goal: native ≥ {GOAL:g}× faster per image on CPU: **{ok}** ({ratio:.1f}×).
"""
    performance_doc.report(NAME, "Prediction: per pixel vs native resolution", table + "\n" + notes, threads,
                           not args.print_only)


if __name__ == "__main__":
    main()
