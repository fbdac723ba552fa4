"""One function per workflow stage, over plain paths and values; the Snakemake scripts call these."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from .progress import progress_bar

from .classifier import TrainSettings, load_ensemble, save_member, train_member
from .data import list_samples, load_sample, read_image, resize_image, split_dir, summarize_split, to_model_input
from .ddpm import (
    build_model_and_diffusion,
    check_feature_settings,
    check_state_dict,
    load_ddpm,
    model_flags,
    read_checkpoint,
    select_device,
    train_ddpm,
)
from .errors import DdpmsegError
from .features import extract_to_store
from .files import load_json, save_json, save_npy, save_png, save_torch, sha256_file
from .predict import predict_image, uncertainty_score
from .report import collect_tables, score_run, write_csv
from .sampler import PixelSampler
from .store import FeatureStore
from .visualize import colourise, default_palette, panel


def train_demo_ddpm(
    dataset_root: str | Path,
    checkpoint: str | Path,
    log_json: str | Path,
    flags: dict[str, Any],
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Train the small demo UNet on the demo's unlabelled images; save a plain state_dict."""
    flags = model_flags(flags)
    folder = Path(dataset_root) / "unlabelled"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise DdpmsegError(f"{folder}: no unlabelled images to train the demo DDPM on")
    images = np.stack([to_model_input(resize_image(read_image(p), flags["image_size"])) for p in paths])
    torch.manual_seed(seed)
    model, diffusion = build_model_and_diffusion(flags)
    device = select_device()
    model.to(device)
    started = time.perf_counter()
    bar = progress_bar(total=iterations, desc="train demo DDPM", unit="it")

    def progress(_iteration: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    losses = train_ddpm(model, diffusion, images, iterations, batch_size, lr, seed, progress)
    bar.close()
    save_torch(checkpoint, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    save_json(
        log_json,
        {
            "images": len(images),
            "iterations": iterations,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "losses": losses,
            "device": str(device),
            "wall_time_s": time.perf_counter() - started,
        },
    )


def validate_dataset(
    dataset_root: str | Path,
    summary_json: str | Path,
    image_size: int,
    number_class: int,
    ignore_label: int,
    training_number: int,
    testing_number: int,
) -> None:
    """Check both splits (masks, sizes, labels, readability, stems) and write a summary."""
    summary = {
        split: summarize_split(split_dir(dataset_root, split), count, image_size, number_class, ignore_label)
        for split, count in (("train", training_number), ("test", testing_number))
    }
    save_json(summary_json, {"number_class": number_class, "ignore_label": ignore_label, **summary})


def validate_ddpm(
    checkpoint: str | Path, check_json: str | Path, flags: dict[str, Any], steps: Sequence[int], blocks: Sequence[int]
) -> None:
    """Check that the checkpoint fits the flags and the feature settings fit the model; record its sha256."""
    flags = model_flags(flags)
    check_feature_settings(flags, steps, blocks)
    model, _ = build_model_and_diffusion(flags)
    check_state_dict(model, read_checkpoint(checkpoint), checkpoint, flags)
    save_json(
        check_json,
        {"checkpoint": str(checkpoint), "sha256": sha256_file(checkpoint), "flags": flags, "decoder_blocks": len(model.output_blocks)},
    )


def load_split(
    dataset_root: str | Path, split: str, count: int, start: int, stop: int, image_size: int, number_class: int, ignore_label: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, images (n, S, S, 3) uint8 and masks (n, S, S) of images ``start:stop`` of a split."""
    samples = list_samples(split_dir(dataset_root, split), count)[start:stop]
    loaded = [load_sample(s, image_size, number_class, ignore_label) for s in samples]
    return [s.name for s in samples], np.stack([im for im, _ in loaded]), np.stack([m for _, m in loaded])


def extract_features(
    dataset_root: str | Path,
    split: str,
    count: int,
    start: int,
    stop: int,
    checkpoint: str | Path,
    check_json: str | Path,
    flags: dict[str, Any],
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int,
    batch_size: int,
    number_class: int,
    ignore_label: int,
    out: str | Path,
) -> None:
    """Extract one shard (images ``start:stop`` of a split) into a zarr store."""
    flags = model_flags(flags)
    names, images, masks = load_split(
        dataset_root, split, count, start, stop, flags["image_size"], number_class, ignore_label
    )
    model, diffusion = load_ddpm(checkpoint, flags)
    print(f"device: {next(model.parameters()).device}, model dtype: {model.dtype}")
    attrs = {
        "model_flags": flags,
        "checkpoint_sha256": load_json(check_json)["sha256"],
        "split": split,
        "number_class": number_class,
        "ignore_label": ignore_label,
    }
    extract_to_store(model, diffusion, images, masks, names, steps, blocks, noise_seed, batch_size, out, attrs)


def train_classifier(
    stores: Sequence[str | Path],
    model_path: str | Path,
    log_json: str | Path,
    number_class: int,
    ignore_label: int,
    settings: dict[str, Any],
    seed: int,
    member: int,
) -> None:
    """Train one ensemble member on the training stores; save its weights and JSON log."""
    train_settings = TrainSettings(**settings)
    store = FeatureStore(stores)
    sampler = PixelSampler(store, ignore_label)
    if len(sampler) < train_settings.batch_size:
        raise DdpmsegError(f"{store.paths[0]}: only {len(sampler)} labelled training pixels, fewer than one batch")
    model, log = train_member(sampler, number_class, train_settings, seed, member)
    print(f"steps {log['steps']}, epochs {log['epochs']}, final loss {log['final_loss']:.4f}")
    save_member(model_path, model, store.feature_dim, number_class, train_settings.dropout)
    save_json(log_json, log)


def predict_split(
    stores: Sequence[str | Path],
    members: Sequence[str | Path],
    out_dir: str | Path,
    number_class: int,
    ignore_label: int,
    palette: Sequence[Sequence[int]] | None = None,
) -> None:
    """Label every image of the test stores with the ensemble; write label maps, masks, panels, uncertainty."""
    out_dir = Path(out_dir)
    store = FeatureStore(stores)
    ensemble = load_ensemble(members)
    palette = palette or default_palette(number_class)
    rows = []
    for index in progress_bar(range(len(store)), desc="predict", unit="image"):
        name = store.names[index]
        labels, js = predict_image(ensemble, store.activations(index), store.image_size, number_class)
        labels = labels.numpy().astype(np.int32)
        save_npy(out_dir / "labels" / f"{name}.npy", labels)
        prediction_rgb = colourise(labels, palette, ignore_label)
        save_png(out_dir / "masks" / f"{name}.png", prediction_rgb)
        truth_rgb = colourise(store.labels(index), palette, ignore_label)
        save_png(out_dir / "panels" / f"{name}.png", panel(store.image(index), truth_rgb, prediction_rgb))
        rows.append({"image": name, "uncertainty": uncertainty_score(js)})
    write_csv(out_dir / "uncertainty.csv", pd.DataFrame(rows))


def score_predictions(
    predictions: str | Path,
    stores: Sequence[str | Path],
    out_dir: str | Path,
    number_class: int,
    ignore_label: int,
    class_names: Sequence[str] | None = None,
) -> None:
    """Score one run's predictions against the test labels: summary, per-class and per-image tables."""
    predictions, out_dir = Path(predictions), Path(out_dir)
    store = FeatureStore(stores)
    uncertainty = pd.read_csv(predictions / "uncertainty.csv", dtype={"image": str}).set_index("image")["uncertainty"]
    preds = [np.load(predictions / "labels" / f"{name}.npy") for name in store.names]
    gts = [store.labels(i) for i in range(len(store))]
    miou, per_class, per_image = score_run(
        preds, gts, store.names, [uncertainty[n] for n in store.names], number_class, ignore_label, class_names
    )
    write_csv(out_dir / "per_class.csv", per_class)
    write_csv(out_dir / "per_image.csv", per_image)
    write_csv(out_dir / "summary.csv", pd.DataFrame([{"miou": miou, "images": len(preds)}]))


def make_tables(runs: Sequence[dict], out_dir: str | Path, variants: Sequence[str], datasets: Sequence[str]) -> None:
    collect_tables(runs, out_dir, variants, datasets)
