"""What a configuration will cost: views to extract, disk for the stores, forward passes, training steps.

Run ``python -m ddpmseg.estimate config/paper.yaml`` for a table. Sizes come from the model: the
decoder activations' shapes are read from a forward pass on the meta device (no memory, no weights),
so they hold for any flags. Times are scaled from the measured figures given on the command line.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from .config import (
    augmentation_scale,
    augmentation_set,
    imageset_count,
    load_config,
    variant_settings,
    variant_tta_sets,
)
from .ddpm import build_model_and_diffusion, model_flags

BYTES_PER_VALUE = 2  # float16


def activation_values(flags: dict[str, Any], blocks: list[int]) -> int:
    """Values stored per image and diffusion step: sum of C*h*w over the chosen decoder blocks."""
    flags = model_flags(flags)
    with torch.device("meta"):
        model, _ = build_model_and_diffusion(flags)
        shapes: dict[int, tuple[int, ...]] = {}
        hooks = [
            model.output_blocks[b].register_forward_hook(lambda m, i, o, b=b: shapes.__setitem__(b, tuple(o.shape)))
            for b in blocks
        ]
        size = flags["image_size"]
        model(torch.empty(1, 3, size, size), torch.zeros(1, dtype=torch.long))
        for hook in hooks:
            hook.remove()
    return sum(math.prod(shapes[b][1:]) for b in blocks)


def plan(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset: views to extract (train, augmented copies, test, TTA views), store size, forward
    passes and training steps (an upper bound: every pixel labelled, the stopping rule firing right
    after ``epochs_before_stopping`` epochs)."""
    rows = []
    for name, dataset in config["datasets"].items():
        steps_count = len(config["features"]["steps"])
        values = activation_values(config["ddpms"][dataset["ddpm"]]["flags"], config["features"]["blocks"])
        sets = {"train", "test"}
        for variant in config["variants"]:
            if augmentation_scale(config, name, variant) > 1:
                sets.add(augmentation_set(config, name, variant))
            sets.update(variant_tta_sets(config, variant))
        views = {s: imageset_count(config, name, s) for s in sets}
        total_views = sum(views.values())
        size = model_flags(config["ddpms"][dataset["ddpm"]]["flags"])["image_size"]
        members = len(config["seeds"]) * config["ensemble_size"]
        training_steps = 0
        for variant in config["variants"]:
            settings = variant_settings(config, variant)
            per_epoch = dataset["training_number"] * size * size // settings["batch_size"]
            epochs = min(settings["max_epochs"], settings["epochs_before_stopping"] + 1)
            training_steps += members * per_epoch * epochs
        rows.append(
            {
                "dataset": name,
                "views": total_views,
                "train_views": views["train"] + sum(v for s, v in views.items() if s.startswith("aug-")),
                "test_views": views["test"] + sum(v for s, v in views.items() if s.startswith("tta-")),
                "store_gb": total_views * steps_count * values * BYTES_PER_VALUE / 1e9,
                "forward_passes": total_views * steps_count,
                "training_steps": training_steps,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--forward-s", type=float, default=8.0, help="seconds per forward pass (docs/method.md: 8 s on 2 CPU cores at 256 px)")
    parser.add_argument("--step-ms", type=float, default=10.0, help="milliseconds per training step of one member")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    rows = plan(config)
    print("| dataset | views (train+aug / test+TTA) | stores (GB) | forward passes | extraction (h) | training steps (M) | training (h) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows + [{"dataset": "total", **{k: sum(x[k] for x in rows) for k in rows[0] if k != "dataset"}}]:
        print(
            f"| {r['dataset']} | {r['views']} ({r['train_views']} / {r['test_views']}) | {r['store_gb']:.0f} | "
            f"{r['forward_passes']} | {r['forward_passes'] * args.forward_s / 3600:.1f} | "
            f"{r['training_steps'] / 1e6:.1f} | {r['training_steps'] * args.step_ms / 3.6e6:.0f} |"
        )


if __name__ == "__main__":
    main()
