"""The demo with a diffusers DDPM beside the guided-diffusion one and the RGB control (issue 22's demo row).

A small ``UNet2DModel`` (the demo UNet's size: 3 levels of 32, 64, 64 channels, attention at 16 px, one
resnet per level) is trained here on the demo's unlabelled scenes with a short DDPM loop of its own
(epsilon prediction, MSE, uniform steps, the linear 1000-step ``DDPMScheduler``, AdamW, an EMA of the
weights, random horizontal flips) under the demo DDPM's budget (``config.yaml``: 600 iterations of 8
images, lr 3e-4, EMA 0.99), and saved with ``save_pretrained`` as a diffusers folder. Then the real
``snakemake`` runs the demo config with a second dataset, ``demo_shapes_unet2d`` (the same generated
scenes: same ``demo:`` settings), whose DDPM is that folder (``source: diffusers``), and the variants
``baseline`` and ``rgb_control`` on both datasets, in its own working directory. It prints three rows:
the baseline on the guided-diffusion DDPM's features, the baseline on the UNet2DModel's, and the RGB
control (it runs on both datasets, the same scenes: both numbers are printed).

Outside CI (11 min on a quiet 2-core CPU: the UNet2DModel's 600 iterations 73 s, then the workflow, with
the guided-diffusion demo DDPM's training and 24 member trainings, 410 s; docs/diffusers.md has the rows):

    python benchmarks/demo_diffusers.py                       # --workdir /tmp/ddpmseg-demo-diffusers
    python benchmarks/demo_diffusers.py --quick               # the same path in a few minutes, numbers mean nothing

``--quick`` cuts the demo to 20 training and 6 test images, one seed and one member (a smoke run of the
script). A rerun reuses the trained folder and what Snakemake finished; ``--retrain`` trains it again.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np
import torch
import yaml
from PIL import Image

from ddpmseg.config.load import load_config
from ddpmseg.data.demo import write_demo_dataset
from ddpmseg.data.listing import IMAGE_SUFFIXES, files_with_suffixes
from ddpmseg.data.preprocess import to_model_input

GUIDED = "demo_shapes"
UNET2D = "demo_shapes_unet2d"
FOLDER = "unet2d-ddpm"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def demo_unet():
    """A UNet2DModel of the demo UNet's size (docs/diffusers.md: blocks 3, 4, 5 are its 32 px layers)."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=16,
    )


def unlabelled_scenes(workdir: Path, demo: dict) -> torch.Tensor:
    """The demo's unlabelled scenes in [-1, 1], (N, 3, S, S): written by the workflow's own generator with the
    config's demo settings, so they are the scenes the workflow generates."""
    folder = workdir / "scenes"
    if not folder.exists():
        write_demo_dataset(folder, seed=demo["seed"], image_size=demo["image_size"], train=demo["train_images"],
                           test=demo["test_images"], unlabelled=demo["unlabelled_images"])
    paths = files_with_suffixes(folder / "unlabelled", IMAGE_SUFFIXES)
    images = np.stack([to_model_input(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
    return torch.from_numpy(images).float()


def train_unet2d(images: torch.Tensor, out: Path, *, iterations: int, batch_size: int, lr: float, ema_rate: float,
                 seed: int) -> dict:
    """Train the UNet2DModel as a DDPM on ``images`` and save the EMA weights and the scheduler into ``out``
    (unet/ and scheduler/, safetensors); returns the loss log."""
    from diffusers import DDPMScheduler

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = demo_unet()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses, started = [], time.monotonic()
    model.train()
    for iteration in range(iterations):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        x0 = images[index]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        predicted = model(scheduler.add_noise(x0, noise, t), t, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(predicted, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for averaged, weight in zip(ema.parameters(), model.parameters(), strict=True):
                averaged.mul_(ema_rate).add_(weight, alpha=1 - ema_rate)
        losses.append(float(loss.detach()))
        if (iteration + 1) % 50 == 0 or iteration + 1 == iterations:
            print(f"  iteration {iteration + 1}/{iterations}: loss {np.mean(losses[-50:]):.4f}", flush=True)
    ema.save_pretrained(out / "unet")  # safetensors
    scheduler.save_pretrained(out / "scheduler")
    return {"iterations": iterations, "seconds": time.monotonic() - started, "final_loss": float(np.mean(losses[-50:])),
            "parameters": sum(p.numel() for p in model.parameters())}


def comparison_config(base: dict, *, quick: bool) -> dict:
    """The demo config with the UNet2DModel's dataset beside the guided-diffusion one, baseline and RGB control."""
    config = copy.deepcopy(base)
    config["datasets"][UNET2D] = {**config["datasets"][GUIDED], "ddpm": "demo_unet2d"}
    config["ddpms"]["demo_unet2d"] = {"source": "diffusers", "path": FOLDER}
    config["variants"] = {name: config["variants"][name] for name in ("baseline", "rgb_control")}
    if quick:
        config["demo"].update(train_images=20, test_images=6)
        for name in (GUIDED, UNET2D):
            config["datasets"][name].update(training_number=20, testing_number=6)
        config["features"]["shard_size"] = 20
        config["seeds"], config["ensemble_size"] = [0], 1
        config["ddpms"]["demo_ddpm"]["training"]["iterations"] = 20
        config["ddpms"]["demo_ddpm"]["training"]["save_every"] = 10
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ddpmseg-demo-diffusers"))
    parser.add_argument("--iterations", type=int, default=None, help="UNet2DModel training (default: the demo DDPM's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small demo, one seed, one member")
    parser.add_argument("--retrain", action="store_true", help="train the UNet2DModel again")
    parser.add_argument("--cores", default="all", help="snakemake --cores")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the training (default: every core)")
    args = parser.parse_args()
    common.set_threads(args.threads)
    base = load_config(common.REPO / "config.yaml")  # validated, defaults filled in
    config = comparison_config(yaml.safe_load((common.REPO / "config.yaml").read_text()), quick=args.quick)
    training = base["ddpms"]["demo_ddpm"]["training"]
    iterations = args.iterations or (20 if args.quick else training["iterations"])
    workdir = args.workdir.resolve()
    folder = workdir / FOLDER
    workdir.mkdir(parents=True, exist_ok=True)

    if args.retrain or not (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        demo = {**base["demo"], **config["demo"]}
        images = unlabelled_scenes(workdir, demo)
        print(f"training the UNet2DModel on {len(images)} unlabelled scenes, {iterations} iterations of "
              f"{training['batch_size']}", flush=True)
        log = train_unet2d(images, folder, iterations=iterations, batch_size=training["batch_size"],
                           lr=training["lr"], ema_rate=training["ema_rate"], seed=training.get("seed", 0))
        print(f"trained: {log['parameters'] / 1e6:.2f} M parameters, {log['seconds']:.0f} s, "
              f"final loss {log['final_loss']:.4f}", flush=True)
        (workdir / "unet2d-training.yaml").write_text(yaml.safe_dump(log))

    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    done = subprocess.run([SNAKEMAKE, "-s", str(common.REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                           str(config_path), "--cores", args.cores, "results/tables/miou.csv"])
    if done.returncode != 0:
        print(f"snakemake failed ({done.returncode}); its log is under {workdir}/.snakemake/log/", file=sys.stderr)
        return done.returncode
    print(f"workflow: {time.monotonic() - started:.0f} s")

    import pandas as pd

    table = pd.read_csv(workdir / "results/tables/miou.csv").set_index(["dataset", "variant"])
    rows = [("baseline, guided-diffusion DDPM (source: train)", GUIDED, "baseline"),
            ("baseline, diffusers UNet2DModel (source: diffusers)", UNET2D, "baseline"),
            ("rgb_control", GUIDED, "rgb_control")]
    print("\n| features | demo mIoU % (mean ± std over seeds) |\n|---|---|")
    for label, dataset, variant in rows:
        row = table.loc[(dataset, variant)]
        print(f"| {label} | {row['mean']:.2f} ± {0 if pd.isna(row['std']) else row['std']:.2f} |")
    print(f"\nrgb_control on {GUIDED} / {UNET2D} (the same scenes): {table.loc[(GUIDED, 'rgb_control'), 'mean']:.2f}"
          f" / {table.loc[(UNET2D, 'rgb_control'), 'mean']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
