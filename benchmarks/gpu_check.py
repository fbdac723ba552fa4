"""Checks and times ddpmseg's CUDA path on one GPU, in one run of a few minutes.

(a) fp16 features: the same random paper-size guided-diffusion UNet (``registry.paper_model_flags()``)
    extracts one image's activations on the CPU in float32 and on the GPU with its torso in float16
    (as ``ddpm.load_ddpm`` runs it); the relative error ||fp16 - fp32|| / ||fp32|| per layer.
(b) extraction speed: ``features.extract_activations`` images/s at batch 1, 8 and 16 (GPU, fp16 torso;
    --quick: 1, 2, 4 on the CPU in float32, as ``load_ddpm`` runs it there).
(c) member training: steps of the fused batched MLP (``stacked.StackedClassifiers``, the code
    ``training.train_ensemble`` runs) on the GPU, one member alone vs 10 fused, as member-steps/s.
(d) prediction of one paper-shaped image by 10 members: per pixel vs native resolution.
(e) DDPM training iterations/s, when ``ddpmseg.diffusion.training.loop`` provides ``ddpm_training_speed``.

``--quick`` runs every section on the CPU with a small UNet and small sizes (well under a minute): the
test of this script. Without CUDA and without ``--quick`` it says so in one line and exits 1. It ends
with a Markdown block for the README's performance section.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any

import common  # noqa: F401 - puts this checkout's ddpmseg on the path
import torch

from ddpmseg.classifier.mlp import random_members
from ddpmseg.diffusion.model import build_model_and_diffusion
from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.config.registry import paper_model_flags

STEPS = [50, 150, 250]
BLOCKS = [5, 6, 7, 8, 12]  # the paper's (docs/method.md §3)
QUICK_FLAGS: dict[str, Any] = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 2,
    "channel_mult": "1,1,2,2,4",
    "attention_resolutions": "4",
    "num_head_channels": 16,
    "learn_sigma": True,
    "resblock_updown": True,
    "use_scale_shift_norm": True,
}
MEMBERS = 10
NUMBER_CLASS = 21


class Report:
    """The results, printed as they come and as one Markdown table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add(self, check: str, result: str) -> None:
        print(f"  {check}: {result}", flush=True)
        self.rows.append((check, result))

    def markdown(self, device: str, command: str, seconds: float) -> str:
        lines = [
            "<!-- gpu_check -->",
            f"GPU check on {device} (`{command}`, {seconds:.0f} s):",
            "",
            "| check | result |",
            "|---|---|",
            *[f"| {check} | {result} |" for check, result in self.rows],
            "<!-- /gpu_check -->",
        ]
        return "\n".join(lines)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> float:
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def half_torso(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as ``load_ddpm`` runs it on CUDA: torso in float16."""
    model.convert_to_fp16()
    model.dtype = torch.float16
    return model.to(device).eval()


def random_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((count, 3, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def check_fp16_features(
    report: Report, flags: dict[str, Any], device: torch.device, quick: bool
) -> tuple[torch.nn.Module, Any]:
    """(a); returns the model (b) times, as ``load_ddpm`` runs it on ``device`` (the fp16 one on CUDA,
    the fp32 one on the CPU), and its diffusion."""
    print("(a) fp16 features vs CPU fp32 features", flush=True)
    torch.manual_seed(0)
    model, diffusion = build_model_and_diffusion(flags)
    model.eval()
    image = random_images(1, flags["image_size"])
    noise = shared_noise(0, flags["image_size"])
    fp32 = extract_activations(model, diffusion, image, steps=STEPS, blocks=BLOCKS, noise=noise)
    half = half_torso(copy.deepcopy(model) if quick else model, device)
    fp16 = extract_activations(half, diffusion, image, steps=STEPS, blocks=BLOCKS, noise=noise)
    errors = {key: float((fp16[key] - fp32[key]).norm() / fp32[key].norm()) for key in fp32}
    worst = max(errors, key=errors.get)
    mean = sum(errors.values()) / len(errors)
    report.add(
        "fp16 vs CPU fp32 features, relative error",
        f"mean {mean:.2e}, max {errors[worst]:.2e} (step {worst[0]}, block {worst[1]}) over {len(errors)} layers",
    )
    return (model if quick else half), diffusion


def check_extraction(
    report: Report, model: torch.nn.Module, diffusion: Any, flags: dict[str, Any], device: torch.device, quick: bool
) -> None:
    """(b) images/s of extract_activations at batch 1, 8, 16 (--quick: 1, 2, 4), after a warm-up batch of
    each size, best of 2 (--quick: neither)."""
    print("(b) extraction images/s", flush=True)
    noise = shared_noise(0, flags["image_size"])
    for batch in (1, 2, 4) if quick else (1, 8, 16):
        images = random_images(batch, flags["image_size"], seed=batch)

        def extract() -> None:
            extract_activations(model, diffusion, images, steps=STEPS, blocks=BLOCKS, noise=noise)

        if not quick:
            extract()
        seconds = min(timed(device, extract) for _ in range(1 if quick else 2))
        report.add(f"extraction, batch {batch}", f"{batch / seconds:.2f} images/s")


def check_member_training(report: Report, feature_dim: int, steps: int, device: torch.device) -> None:
    """(c) member-steps/s of StackedClassifiers training steps, 1 member vs MEMBERS fused."""
    from ddpmseg.classifier.mlp import build_classifier
    from ddpmseg.config.load import default_variant_settings
    from ddpmseg.classifier.stacked import StackedClassifiers
    from ddpmseg.classifier.training import make_optimizer
    from ddpmseg.classifier.settings import TrainSettings

    print("(c) member training steps/s, alone vs fused", flush=True)
    settings = TrainSettings.of(default_variant_settings())
    rates = {}
    for members in (1, MEMBERS):
        torch.manual_seed(0)
        stacked = StackedClassifiers([build_classifier(feature_dim, NUMBER_CLASS) for _ in range(members)], 0.0)
        stacked = stacked.to(device).train()
        optimizer = make_optimizer(stacked.parameters(), settings)
        generator = torch.Generator().manual_seed(members)
        features = torch.randn((members, settings.batch_size, feature_dim), generator=generator).to(device)
        labels = torch.randint(0, NUMBER_CLASS, (members, settings.batch_size), generator=generator).to(device)

        def train(count: int) -> None:
            for _ in range(count):
                logits = stacked(features)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, NUMBER_CLASS), labels.reshape(-1))
                stacked.zero_grad_but_first()
                loss.backward()
                optimizer.step()

        train(3)
        rates[members] = members * steps / timed(device, lambda: train(steps))
        report.add(f"member training, {members} member{'s fused' if members > 1 else ' alone'}",
                   f"{rates[members]:.0f} member-steps/s")
    report.add("member training, fused / alone", f"{rates[MEMBERS] / rates[1]:.2f}×")


def check_prediction(report: Report, quick: bool, device: torch.device) -> None:
    """(d) seconds per image, per pixel (features gathered on the CPU, MLPs on ``device``) vs native."""
    import bench_prediction

    from ddpmseg.prediction.predict import predict_image, predict_image_per_pixel

    print("(d) prediction per image, per pixel vs native resolution", flush=True)
    layers, image_size = bench_prediction.shapes(quick)
    feature_dim = sum(channels for channels, _ in layers)
    members = [m.to(device) for m in random_members(feature_dim, NUMBER_CLASS, MEMBERS, dropout=0.1)]
    activations = bench_prediction.random_activations(layers, 0)
    results, seconds = {}, {}
    for name, predict in (("per pixel", predict_image_per_pixel), ("native", predict_image)):
        predict(members, activations, image_size, NUMBER_CLASS)  # warm-up
        seconds[name] = timed(device, lambda: results.__setitem__(name, predict(members, activations, image_size,
                                                                                   NUMBER_CLASS)))
        report.add(f"prediction, {name}", f"{seconds[name]:.3f} s per image")
    disagree = int((results["native"][0] != results["per pixel"][0]).sum())
    report.add(
        "prediction, per pixel / native",
        f"{seconds['per pixel'] / seconds['native']:.1f}× ({MEMBERS} members, {feature_dim} features, "
        f"{image_size} px; {disagree} of {image_size**2} labels differ)",
    )


def check_ddpm_training(report: Report, flags: dict[str, Any], quick: bool, device: torch.device) -> None:
    """(e) the hook for DDPM training: ``ddpm_training.ddpm_training_speed`` when it exists."""
    print("(e) DDPM training iterations/s", flush=True)
    try:
        speed = importlib.import_module("ddpmseg.diffusion.training.loop").ddpm_training_speed
    except (ImportError, AttributeError):
        report.add("DDPM training iterations/s", "not available (no ddpmseg.diffusion.training.loop.ddpm_training_speed)")
        return
    batch, iterations = (2, 2) if quick else (8, 10)
    rate = speed(flags, batch, iterations, device, fp16=device.type == "cuda")
    report.add("DDPM training iterations/s", f"{rate:.2f} iterations/s (batch {batch}, {iterations} iterations)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every section on the CPU with a small UNet and small sizes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core; --quick: 1)")
    args = p.parse_args(argv)
    if not args.quick and not torch.cuda.is_available():
        print("gpu_check: no GPU (torch.cuda.is_available() is false); run with --quick for the CPU check", file=sys.stderr)
        return 1
    common.set_threads(args.threads or (1 if args.quick else None))
    device = torch.device("cpu" if args.quick else "cuda")
    name = "CPU (--quick)" if args.quick else torch.cuda.get_device_name(device)
    flags = QUICK_FLAGS if args.quick else paper_model_flags()
    print(f"gpu_check on {name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    report = Report()
    model, diffusion = check_fp16_features(report, flags, device, args.quick)
    check_extraction(report, model, diffusion, flags, device, args.quick)
    del model
    check_member_training(report, 352 if args.quick else 8448, 20 if args.quick else 200, device)
    check_prediction(report, args.quick, device)
    check_ddpm_training(report, flags, args.quick, device)
    print()
    print(report.markdown(name, common.command_line(), time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
