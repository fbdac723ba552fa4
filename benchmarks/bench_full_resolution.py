"""Labels at the image's own resolution against the model's labels scaled up, on scenes with finer truth.

The demo's scenes are drawn analytically, so they can be rendered with their masks at ``--scale`` times
the model's size (128 px for the demo's 32 px DDPM): ground truth finer than the model. A finished
demo run (``--run``, default this checkout, where the README's demo command runs; ``--variant`` baseline,
``--seed`` 0, test-split scenes never trained on) labels each scene three ways, each in its own process:
*nearest*, the model's S x S labels scaled up by nearest neighbour (how new images were labelled before);
*first layer*, the members' first-layer outputs upsampled to the image's pixels (the exact identity of the
model-size prediction taken to the image's size) and the rest of the MLPs and the vote run there; *logits*,
each member's logits at the model's pixels upsampled to the image's pixels and the vote taken there (what
``ddpmseg.use.labelling`` does: ``predict_image(..., out_shape=...)``). Reported: mIoU at full size over the scenes (I and U summed over them, the
paper's rule, outlines ignored), seconds per image (DDPM features and labels; the first image, which
loads the models, is not timed) and peak RSS.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import performance_doc
import workers
from performance_doc import fmt

NAME = "full_resolution"
DATASET = "demo_shapes"
TIME_GOAL = 2.0  # full resolution at most this many times the nearest path's time per image
PATHS = {  # way -> its row's name
    "nearest": "nearest: the model's {model} px labels scaled up",
    "first_layer": "first layer: its outputs upsampled to {size} px",
    "logits": "logits: upsampled to {size} px (labelling)",
}


def load_run(payload: dict[str, Any]):
    """(config, segmenter) of the finished run the payload names."""
    from ddpmseg.config.load import load_config
    from ddpmseg.use.run import exported_run

    run = Path(payload["run"])
    config = load_config(run / "config.yaml")
    segmenter, _ = exported_run(config, dataset=DATASET, variant=payload["variant"], seed=payload["seed"], workdir=run)
    return config, segmenter


def scenes(config: dict[str, Any], count: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The demo's first ``count`` test scenes rendered at ``size`` px: (image, mask) pairs."""
    from ddpmseg.data.demo import render_scene, scene_rng

    return [render_scene(scene_rng(config["demo"]["seed"], "test", index), size) for index in range(count)]


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    from ddpmseg.data.preprocess import to_original_size
    from ddpmseg.prediction.predict import native_logits, vote
    from ddpmseg.use.labelling import EnsembleLabeller, image_layers, model_square

    config, segmenter = load_run(payload)
    settings = segmenter.settings
    size = settings.image_size * payload["scale"]
    labeller = EnsembleLabeller(segmenter, tta=False, batch_size=1)

    def label(image: np.ndarray) -> np.ndarray:
        layers = image_layers(segmenter, [model_square(image, segmenter, "scene")])[0]
        if payload["path"] == "logits":
            return labeller.label(layers, image.shape[:2])[0]
        if payload["path"] == "first_layer":
            shape = image.shape[:2]
            return vote(native_logits(labeller.ensemble, layers, shape), shape, settings.number_class)[0].numpy()
        coarse, _ = labeller.label(layers, (settings.image_size, settings.image_size))
        return to_original_size(coarse, *image.shape[:2], settings.non_square, settings.ignore_label)[0]

    images = [image for image, _ in scenes(config, payload["images"], size)]
    label(images[0])  # loads the DDPM and the members: not timed
    seconds, labels = [], []
    for image in images:
        started = time.perf_counter()
        labels.append(label(image))
        seconds.append(time.perf_counter() - started)
    np.save(Path(payload["out"]) / f"{payload['path']}.npy", np.stack(labels))
    return {"seconds": seconds, "size": size, "model_size": settings.image_size}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=common.REPO, help="a finished demo run's working directory")
    p.add_argument("--variant", default="baseline", help="the demo's variant whose seed-s run labels")
    p.add_argument("--seed", type=int, default=0, help="the run's seed")
    p.add_argument("--scale", type=int, default=4, help="scenes at this many times the model's size")
    p.add_argument("--images", type=int, default=None, help="scenes labelled (default 12, --quick 3)")
    args = common.parse_args(p)
    if args.worker:
        return workers.serve_worker(worker, args.worker)
    threads = common.set_threads(args.threads)
    out = args.workdir / NAME
    out.mkdir(parents=True, exist_ok=True)
    payload = {"run": str(args.run.resolve()), "variant": args.variant, "seed": args.seed, "scale": args.scale,
               "images": args.images or (3 if args.quick else 12), "threads": threads, "out": str(out)}
    from ddpmseg.config.load import load_config
    from ddpmseg.prediction.metrics import dataset_miou

    if not (args.run / "config.yaml").is_file():
        raise SystemExit(f"{args.run}: no config.yaml; give --run the folder of a finished demo run")
    results = {}
    for path in PATHS:
        print(f"{path} ...", flush=True)
        results[path] = workers.run_worker(__file__, {**payload, "path": path})
    config = load_config(args.run / "config.yaml")
    entry = config["datasets"][DATASET]
    size, model_size = results["logits"]["size"], results["logits"]["model_size"]
    masks = [mask for _, mask in scenes(config, payload["images"], size)]
    miou, seconds = {}, {}
    for path in results:
        labels = np.load(out / f"{path}.npy")
        miou[path] = 100 * dataset_miou(list(labels), masks, entry["number_class"], entry["ignore_label"])[0]
        seconds[path] = float(np.mean(results[path]["seconds"]))
    rows = [
        [PATHS[path].format(model=model_size, size=size), fmt(miou[path]), f"{miou[path] - miou['nearest']:+.2f}",
         fmt(seconds[path], 3), f"{seconds[path] / seconds['nearest']:.2f}×", fmt(results[path]["peak_rss_bytes"] / 2**30)]
        for path in PATHS
    ]
    table = performance_doc.markdown_table(
        [f"{payload['images']} demo test scenes at {size} px", "mIoU at full size (%)", "vs nearest (points)",
         "s per image", "time vs nearest", "peak RSS (GiB)"],
        rows,
    )
    gain, ratio = miou["logits"] - miou["nearest"], seconds["logits"] / seconds["nearest"]
    better = "met" if gain > 0 else "NOT met"
    fast = "met" if ratio <= TIME_GOAL else "NOT met"
    notes = f"""
Run `{args.run.name or args.run}`: {DATASET} / {args.variant} / seed {args.seed}, labels without TTA. Scenes: the
demo's test scenes (seed {config['demo']['seed']}) drawn at {size} px with their masks, outlines 1 px wide at that size
carrying the ignore label; the model sees each one resized to {model_size} px. s per image: the DDPM's features
and the labels, mean over the scenes after one untimed scene. Peak RSS: `VmHWM` of each way's own process.

Goals of labelling (logits): better mIoU at full size than nearest, **{better}** ({gain:+.2f} points); at most
{TIME_GOAL:g}× the time, **{fast}** ({ratio:.2f}×).
"""
    performance_doc.report(NAME, "Labels at the image's resolution", table + "\n" + notes, threads,
                           not args.print_only)


if __name__ == "__main__":
    main()
