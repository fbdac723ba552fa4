"""Feature extraction speed: images per second with batch 1 against a larger batch.

A mid-size guided-diffusion UNet (random weights, built by ``ddpmseg.diffusion.model.build_model_and_diffusion``)
runs 3 diffusion steps on random images; the whole ``ddpmseg.features.extract.extract_to_store`` into a
temporary store is timed, and separately the forward passes alone (``extract_activations``), giving
the forward passes' share of the time. On CPU in float32; when CUDA is available, also on the GPU with
the model's torso in float16 as ``ddpmseg.diffusion.model.load_ddpm`` runs it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import performance_doc
import torch
from performance_doc import fmt

from ddpmseg.data.preprocess import to_model_input
from ddpmseg.diffusion.model import build_model_and_diffusion
from ddpmseg.diffusion.activations import extract_activations, shared_noise
from ddpmseg.features.extract import extract_to_store

NAME = "extraction"
FLAGS: dict[str, Any] = {
    "image_size": 128,
    "num_channels": 64,
    "num_res_blocks": 2,
    "channel_mult": "1,1,2,3,4",
    "attention_resolutions": "16,8",
    "num_head_channels": 32,
    "learn_sigma": True,
    "resblock_updown": True,
    "use_scale_shift_norm": True,
}
STEPS = [50, 150, 250]
BLOCKS = [5, 6, 7, 8, 12]  # the paper's indices: the same decoder levels, below the last one


def for_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """The model as ``load_ddpm`` runs it: on CUDA with its torso in float16, on CPU in float32."""
    if device == "cuda":
        model.convert_to_fp16()
        model.dtype = torch.float16
    return model.to(device).eval()


def forward_passes(model: torch.nn.Module, diffusion: Any, images: np.ndarray, batch: int) -> None:
    noise = shared_noise(0, images.shape[1])
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.stack([to_model_input(im) for im in images[start : start + batch]]))
        extract_activations(model, diffusion, x, steps=STEPS, blocks=BLOCKS, noise=noise)


def measure(
    model: torch.nn.Module,
    diffusion: Any,
    images: np.ndarray,
    labels: np.ndarray,
    batch: int,
    scratch: Path,
    repeats: int,
) -> tuple[float, float]:
    """Best of ``repeats`` (seconds of extract_to_store, seconds of the forward passes alone) for all
    images at ``batch``, the two measured alternately."""
    forward_passes(model, diffusion, images[:batch], batch)  # warm-up (allocator, kernels, cuDNN)
    names = [f"image{i:04d}" for i in range(len(images))]
    whole, forward = [], []
    for repeat in range(repeats):
        started = time.perf_counter()
        out = scratch / f"batch{batch}-{repeat}.zarr"
        extract_to_store(
            model, diffusion, images, labels, names, steps=STEPS, blocks=BLOCKS, noise_seed=0, batch_size=batch, out=out,
            attrs={}, progress=False,
        )
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        forward_passes(model, diffusion, images, batch)
        forward.append(time.perf_counter() - started)
    return min(whole), min(forward)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="images per measurement (default 16, --quick 2)")
    p.add_argument("--batch", type=int, default=None, help="the larger batch (default 8, --quick 2)")
    p.add_argument("--repeats", type=int, default=None, help="measurements, best taken (default 2, --quick 1)")
    args = common.parse_args(p)
    count = args.images or (2 if args.quick else 16)
    batch = args.batch or (2 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 2)
    threads = common.set_threads(args.threads)

    torch.manual_seed(0)
    model, diffusion = build_model_and_diffusion(FLAGS)
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    every_block = list(range(len(model.output_blocks)))
    probe = extract_activations(
        model, diffusion, torch.zeros((1, 3, 128, 128)), steps=STEPS[:1], blocks=every_block, noise=shared_noise(0, 128)
    )
    shapes = ", ".join(f"{b}: {t.shape[1]}×{t.shape[2]}²" for (_, b), t in probe.items())
    print(f"{len(model.output_blocks)} decoder blocks (channels × size²): {shapes}")
    print(f"kept blocks {BLOCKS}, steps {STEPS}")

    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (count, 128, 128, 3), dtype=np.uint8)
    labels = generator.integers(0, 21, (count, 128, 128)).astype(np.int32)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="extraction-", dir=args.workdir) as scratch:
        for device in devices:
            model, diffusion = build_model_and_diffusion(FLAGS)
            model = for_device(model, device)
            label = "CPU float32" if device == "cpu" else f"CUDA fp16 torso ({torch.cuda.get_device_name()})"
            for size in (1, batch):
                print(f"{label}, batch {size} ...", flush=True)
                whole, forward = measure(model, diffusion, images, labels, size, Path(scratch), repeats)
                rows.append([label, size, fmt(count / whole), fmt(count / forward), f"{100 * forward / whole:.0f} %"])
    table = performance_doc.markdown_table(
        ["device", "batch", "images/s (extract_to_store)", "images/s (forward passes only)", "forward share"], rows
    )
    cpu_gain = float(rows[1][2]) / float(rows[0][2])
    kept = ", ".join(f"{b}: {probe[(STEPS[0], b)].shape[1]}×{probe[(STEPS[0], b)].shape[2]}²" for b in BLOCKS)
    gpu = (
        "CUDA was available: the GPU rows run the model's torso in float16 (`convert_to_fp16()`, "
        "`model.dtype = torch.float16`), as `load_ddpm` does."
        if "cuda" in devices
        else "No GPU here (`torch.cuda.is_available()` is false): on a machine with one, the script also "
        "measures CUDA with the model's torso in float16, as `load_ddpm` runs it."
    )
    flags = ", ".join(f"{key}={value}" for key, value in FLAGS.items())
    notes = f"""
UNet `{flags}` ({parameters / 1e6:.1f} M parameters, random weights, image size 128),
{len(model.output_blocks)} decoder blocks; kept blocks {BLOCKS} (channels × size²: {kept}), the paper's
indices at the same decoder levels; steps {STEPS}; {count} random images per measurement, after one
warm-up batch, best of {repeats}. *extract_to_store*: preprocessing, the forward passes (stopping after block
{max(BLOCKS)}), float16 conversion and zstd compression into a new zarr store; *forward passes only*:
`extract_activations` on the same batches; *forward share*: their time over the whole. Batch {batch}
vs 1 on CPU: {cpu_gain:.2f}×.

{gpu}
"""
    performance_doc.report(NAME, "Feature extraction", table + "\n" + notes, threads, not args.print_only)


if __name__ == "__main__":
    main()
