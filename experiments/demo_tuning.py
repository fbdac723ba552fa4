"""Demo tuning experiments (issue 14, "The demo shows the method working"): not shipped.

Measures, for one candidate demo (dataset size and counts, DDPM flags and training, feature steps and
blocks), the baseline variant's mIoU (the paper's MLP ensemble on DDPM features) and the RGB control's
(the same ensemble on each pixel's raw RGB in [-1, 1]) per seed and per class, and the time of each
stage, using the package directly:

    PYTHONPATH=. python experiments/demo_tuning.py --size 32 --iterations 300 --out /tmp/tune/a

Timings are process CPU time and wall time of each stage; on the shared machine the wall time is
inflated, the CPU time of a 2-thread torch process is close to (2 x) the clean wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ddpmseg
from ddpmseg.config import default_variant_settings
from ddpmseg.data import read_image, to_model_input
from ddpmseg.ddpm import build_model_and_diffusion, model_flags, train_ddpm
from ddpmseg.demo import CLASS_NAMES, IGNORE_LABEL, write_demo_dataset
from ddpmseg.features import extract_to_store
from ddpmseg.metrics import dataset_miou
from ddpmseg.predict import predict_image
from ddpmseg.sampler import PixelSampler
from ddpmseg.store import FeatureStore, StoreWriter
from ddpmseg.training import TrainSettings, train_ensemble

NUMBER_CLASS = len(CLASS_NAMES)


class Clock:
    """Wall and CPU seconds (this process and its threads) of a stage."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = resource.getrusage(resource.RUSAGE_SELF)

    def stop(self) -> dict[str, float]:
        now = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (now.ru_utime - self.cpu.ru_utime) + (now.ru_stime - self.cpu.ru_stime)
        return {"wall_s": round(time.perf_counter() - self.wall, 2), "cpu_s": round(cpu, 2)}


def demo_flags(size: int, channels: int, mult: str, attention: str, res_blocks: int) -> dict:
    return model_flags(
        {
            "image_size": size,
            "num_channels": channels,
            "num_res_blocks": res_blocks,
            "channel_mult": mult,
            "attention_resolutions": attention,
            "num_head_channels": 16,
            "learn_sigma": True,
            "diffusion_steps": 1000,
            "noise_schedule": "linear",
            "resblock_updown": True,
            "use_scale_shift_norm": True,
        }
    )


def load_split(root: Path, split: str, count: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folder = root / "real" / split
    names = sorted(p.stem for p in folder.glob("*.png"))[:count]
    images = np.stack([read_image(folder / f"{n}.png") for n in names])
    labels = np.stack([np.load(folder / f"{n}.npy") for n in names]).astype(np.int64)
    return images, labels, names


@torch.no_grad()
def _copy_weights(model: torch.nn.Module, values: list[torch.Tensor]) -> None:
    for p, value in zip(model.parameters(), values, strict=True):
        p.copy_(value)


def train_demo_model(flags: dict, unlabelled: np.ndarray, *, iterations: int, batch_size: int, lr: float,
                     ema_rates: list[float], checkpoints: list[int], on_checkpoint, seed: int = 0,
                     init: Path | None = None):
    """The demo DDPM trained with ddpmseg.ddpm.train_ddpm. At each of ``checkpoints`` (iterations) and at
    the end, ``on_checkpoint(iteration, name, model)`` is called with the raw weights (name "raw") and
    with an EMA of the weights per rate in ``ema_rates`` (name "ema<rate>", guided-diffusion style: the
    shadow starts at the initial weights and is updated after every optimiser step)."""
    torch.manual_seed(seed)
    model, diffusion = build_model_and_diffusion(flags)
    if init is not None:  # a saved DDPM (e.g. --iterations 0 scores it on other images or features)
        model.load_state_dict(torch.load(init, weights_only=True))
    shadows = {rate: [p.detach().clone() for p in model.parameters()] for rate in ema_rates}
    started = time.perf_counter()
    paused = [0.0]

    def evaluate_now(iteration: int) -> None:
        pause = time.perf_counter()
        model.eval()
        on_checkpoint(iteration, "raw", model, diffusion)
        if shadows:
            raw = [p.detach().clone() for p in model.parameters()]
            for rate, shadow in shadows.items():
                _copy_weights(model, shadow)
                on_checkpoint(iteration, f"ema{rate}", model, diffusion)
            _copy_weights(model, raw)
        model.train()
        paused[0] += time.perf_counter() - pause

    def progress(iteration: int, loss: float) -> None:
        with torch.no_grad():
            for rate, shadow in shadows.items():
                for value, p in zip(shadow, model.parameters()):
                    value.mul_(rate).add_(p.detach(), alpha=1 - rate)
        if iteration % 100 == 99:
            print(f"  ddpm it {iteration + 1} loss {loss:.4f} {time.perf_counter() - started - paused[0]:.0f}s train",
                  flush=True)
        if iteration + 1 in checkpoints and iteration + 1 < iterations:
            evaluate_now(iteration + 1)

    images = np.stack([to_model_input(image) for image in unlabelled])
    losses = train_ddpm(model, diffusion, images, iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                        progress=progress)
    print(f"  ddpm trained: {time.perf_counter() - started - paused[0]:.0f}s wall without evaluations", flush=True)
    evaluate_now(iterations)
    return losses


def rgb_store(images: np.ndarray, labels: np.ndarray, names: list[str], out: Path, patch: int = 1) -> None:
    """A store whose one layer is each pixel's RGB scaled to [-1, 1] (3 features), or with ``patch`` > 1
    the RGB of the patch x patch neighbourhood (a diagnostic: what local context alone gives)."""
    writer = StoreWriter(out, names, images.shape[1], {"steps": [0], "blocks": [0], "noise_seed": 0})
    rgb = torch.from_numpy(np.stack([to_model_input(image) for image in images]))
    if patch > 1:
        size = images.shape[1]
        rgb = torch.nn.functional.unfold(rgb, patch, padding=patch // 2).reshape(len(images), -1, size, size)
    writer.write(0, {(0, 0): rgb}, images, labels)
    writer.close()


def evaluate(train_path: Path, test_path: Path, settings: dict, seed: int, members: int) -> dict:
    clock = Clock()
    train = FeatureStore([train_path])
    sampler = PixelSampler(train, IGNORE_LABEL)
    results = train_ensemble(sampler, NUMBER_CLASS, TrainSettings.of(settings), seed, list(range(members)),
                             show_progress=False)
    train_time = clock.stop()
    models = [model.eval() for model, _ in results]
    test = FeatureStore([test_path])
    preds, gts = [], []
    for index in range(len(test)):
        labels, _ = predict_image(models, test.activations(index), test.image_size, NUMBER_CLASS)
        preds.append(labels.numpy())
        gts.append(test.labels(index))
    miou, per_class = dataset_miou(preds, gts, NUMBER_CLASS, IGNORE_LABEL)
    return {
        "miou": round(100 * miou, 2),
        "per_class": {name: round(100 * float(v), 2) for name, v in zip(CLASS_NAMES, per_class)},
        "epochs": [log["epochs"] for _, log in results],
        "train_pixels": len(sampler),
        "feature_dim": train.feature_dim,
        "train": train_time,
        "total": clock.stop(),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=12)
    parser.add_argument("--test-images", type=int, default=12)
    parser.add_argument("--unlabelled", type=int, default=300)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--mult", default="1,2,2")
    parser.add_argument("--attention", default="16")
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", default="", help="comma-separated EMA rates of the weights, also evaluated")
    parser.add_argument("--keep", default="raw", help="weights saved as ddpm.pt: raw or ema<rate>")
    parser.add_argument("--checkpoints", default="", help="comma-separated iterations evaluated on seed 0")
    parser.add_argument("--steps", default="50,150,250")
    parser.add_argument("--blocks", default="1,2,3,4")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--patch", type=int, default=0, help="also score a patch x patch RGB diagnostic")
    parser.add_argument("--init", type=Path, default=None, help="state_dict the DDPM starts from")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("ddpmseg from", ddpmseg.__file__, flush=True)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    clock = Clock()
    dataset = out / "dataset"
    write_demo_dataset(dataset, seed=0, image_size=args.size, train=args.train_images, test=args.test_images,
                       unlabelled=args.unlabelled)
    report["generate"] = clock.stop()
    train_images, train_labels, train_names = load_split(dataset, "train", args.train_images)
    test_images, test_labels, test_names = load_split(dataset, "test", args.test_images)
    unlabelled = np.stack([read_image(p) for p in sorted((dataset / "unlabelled").glob("*.png"))])

    flags = demo_flags(args.size, args.channels, args.mult, args.attention, args.res_blocks)
    steps = [int(s) for s in args.steps.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    settings = dict(default_variant_settings())
    seeds = [int(s) for s in args.seeds.split(",")]
    train_split = (train_images, train_labels, train_names)
    test_split = (test_images, test_labels, test_names)
    rgb_store(*train_split, out / "rgb_train")
    rgb_store(*test_split, out / "rgb_test")
    report["rgb"] = {}
    for seed in seeds:
        report["rgb"][seed] = evaluate(out / "rgb_train", out / "rgb_test", copy.deepcopy(settings), seed, args.members)
        print(f"rgb seed {seed}", json.dumps(report["rgb"][seed]), flush=True)
    if args.patch:
        rgb_store(*train_split, out / "patch_train", patch=args.patch)
        rgb_store(*test_split, out / "patch_test", patch=args.patch)
        patch = evaluate(out / "patch_train", out / "patch_test", copy.deepcopy(settings), 0, args.members)
        report["patch"] = patch
        print("patch seed 0", json.dumps(patch), flush=True)
    report["rgb_mean"] = round(float(np.mean([r["miou"] for r in report["rgb"].values()])), 2)
    report["checkpoints"] = {}

    def on_checkpoint(iteration: int, name: str, model, diffusion) -> None:
        final = iteration == args.iterations
        runs = {}
        for seed in seeds if final else seeds[:1]:
            clock = Clock()
            for split, (images, labels, names) in (("train", train_split), ("test", test_split)):
                target = out / f"features_{seed}_{split}"
                if target.exists():
                    shutil.rmtree(target)
                extract_to_store(model, diffusion, images, labels, names, steps=steps, blocks=blocks,
                                 noise_seed=seed, batch_size=8, out=target, attrs={}, progress=False)
            extraction = clock.stop()
            runs[seed] = {"extract": extraction,
                          **evaluate(out / f"features_{seed}_train", out / f"features_{seed}_test",
                                     copy.deepcopy(settings), seed, args.members)}
        key = f"{iteration}/{name}"
        report["checkpoints"][key] = {"runs": runs, "mean": round(float(np.mean([r["miou"] for r in runs.values()])), 2)}
        print(f"CHECKPOINT {key} mean {report['checkpoints'][key]['mean']}", json.dumps(runs), flush=True)
        if final and name == args.keep:
            torch.save(model.state_dict(), out / "ddpm.pt")

    clock = Clock()
    checkpoints = [int(c) for c in args.checkpoints.split(",")] if args.checkpoints else []
    ema_rates = [float(r) for r in args.ema.split(",")] if args.ema else []
    losses = train_demo_model(flags, unlabelled, iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
                              ema_rates=ema_rates, checkpoints=checkpoints, on_checkpoint=on_checkpoint,
                              init=args.init)
    report["ddpm_and_evaluations"] = clock.stop()
    report["ddpm_losses"] = {"first": losses[0] if losses else None,
                             "final": float(np.mean(losses[-20:])) if losses else None}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print("SUMMARY rgb", report["rgb_mean"], json.dumps({k: v["mean"] for k, v in report["checkpoints"].items()}))


if __name__ == "__main__":
    main(sys.argv[1:])
